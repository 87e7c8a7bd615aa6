"""Fold an unstructured header (the outcome mail's Subject) the way people's mail clients expect.

The standard library's folder may break a line right after `Subject:`, turns a long ASCII word (a URL) into
encoded words, and doubles spaces around encoded words. This folder keeps ASCII words as they are, encodes only
runs of non-ASCII words (RFC 2047, UTF-8, Q for mostly-Latin text, B otherwise), breaks lines only between
words, and always puts the first word on the header's own line. The result is stored with `Message.set_raw`, so
every generator policy (SMTP, SMTPUTF8) emits it unchanged while `message["Subject"]` still reads decoded.

It must never emit a line over 78 characters when a shorter one is possible, nor split a character across
encoded words (RFC 2047 section 5: each encoded word must decode on its own).
"""

from __future__ import annotations

import base64

LINE = 78  # RFC 5322 2.1.1: lines SHOULD be no more than 78 characters
WORD = 75  # RFC 2047 2: an encoded word is at most 75 characters
_PREFIX_B = "=?utf-8?b?"
_PREFIX_Q = "=?utf-8?q?"
_SUFFIX = "?="
_Q_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")


def _plain(word: str) -> bool:
    """A word that can stay as it is: printable ASCII, not mistakable for an encoded word, not over-long."""
    return word.isascii() and word.isprintable() and "=?" not in word and len(word) <= LINE - 2


def _q(char: str) -> str:
    if char == " ":
        return "_"
    if char in _Q_SAFE:
        return char
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))


def _encoded_words(run: str, first_room: int) -> list[str]:
    """`run` as encoded words: the first fits in `first_room` characters if it can, the rest in a line each."""
    latin = sum(1 for ch in run if ch.isascii()) * 2 >= len(run)
    prefix = _PREFIX_Q if latin else _PREFIX_B
    overhead = len(prefix) + len(_SUFFIX)
    words: list[str] = []
    whole = len("".join(map(_q, run))) if latin else 4 * -(-len(run.encode("utf-8")) // 3)
    # A run that fits one encoded word stays one (on the next line if need be) rather than split to fill a gap.
    room = WORD if overhead + whole <= WORD else max(first_room, overhead + 8)
    chunk = ""
    for char in run:
        candidate = chunk + char
        size = len("".join(map(_q, candidate))) if latin else 4 * -(-len(candidate.encode("utf-8")) // 3)
        if chunk and overhead + size > min(room, WORD):
            words.append(chunk)
            chunk, room = char, LINE - 1
        else:
            chunk = candidate
    if chunk:
        words.append(chunk)
    if latin:
        return [prefix + "".join(map(_q, w)) + _SUFFIX for w in words]
    return [prefix + base64.b64encode(w.encode("utf-8")).decode("ascii") + _SUFFIX for w in words]


def fold(name: str, value: str) -> str:
    """The header's value, folded with CRLF + space, ready for `Message.set_raw(name, ...)`.

    Whitespace in `value` collapses to single spaces (a subject is one line). Spaces between two encoded words
    vanish when decoded (RFC 2047 6.2), so consecutive non-ASCII words are encoded as one run, spaces inside.
    """
    words = value.split()
    tokens: list[tuple[bool, str]] = []  # (plain, text); neighbouring non-plain words merge into one run
    for word in words:
        if not _plain(word) and tokens and not tokens[-1][0]:
            tokens[-1] = (False, tokens[-1][1] + " " + word)
        else:
            tokens.append((_plain(word), word))
    lines: list[str] = []
    line = f"{name}:"
    for is_plain, text in tokens:
        pieces = [text] if is_plain else _encoded_words(text, LINE - len(line) - 1)
        for piece in pieces:
            first_on_line = line == f"{name}:"
            if not first_on_line and len(line) + 1 + len(piece) > LINE:
                lines.append(line)
                line = ""
            line = f"{line} {piece}"
    lines.append(line)
    folded = "\r\n".join(lines)
    return folded[len(name) + 2 :]  # set_raw takes the value without "Name: "
