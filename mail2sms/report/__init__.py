"""Outcome reports: who may get one (backscatter), what it says (compose) and how it leaves (send)."""
