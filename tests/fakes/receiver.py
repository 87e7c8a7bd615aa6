"""A stand-in for mail2sms's own receipt endpoint (`/receipts/<name>/<token>`) in provider-level tests: it records
every callback a fake provider (or a test posting a provider's body) makes, over real HTTP on 127.0.0.1, and answers
200 `OK`. It decides nothing about the receipts: the adapter's push parser reads the recorded requests."""

from __future__ import annotations

from tests.fakes.server import FakeProvider, RecordedRequest, Reply


class ReceiptReceiver(FakeProvider):
    """Records callbacks at `http://127.0.0.1:PORT/receipts/…`; anything else is 404."""

    base_path = "/receipts/"

    def handle(self, request: RecordedRequest) -> Reply:
        if not request.path.startswith(self.base_path):
            return Reply(404, "Not Found")
        return Reply(200, "OK", content_type="text/plain")
