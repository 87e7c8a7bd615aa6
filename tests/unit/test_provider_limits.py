"""Provider limits that depend on the encoding, checked before anything is sent."""

from __future__ import annotations

import pytest

from mail2sms.config import RouteConfig
from mail2sms.errors import ContentError
from mail2sms.model import Job, SmsOptions
from mail2sms.parse.fit import fit_text
from mail2sms.parse.text import analyze
from mail2sms.providers.base import Limits, check_job, parts_limit

BULK = Limits(max_recipients=100, max_parts=3, max_parts_ucs2=1, flash=True)
KOBO = Limits(max_recipients=500, max_chars=905, flash=True, flash_unicode=False)
ROUTE = RouteConfig(match="sms@x.test", format="keyvalue", provider="p")


def _job(text: str, flash: bool = False) -> Job:
    shape = analyze(text)
    return Job(number="447700900001", text=text, provider="p", options=SmsOptions(flash=flash),
               parts=shape.parts, encoding=shape.encoding)


def test_ucs2_has_its_own_parts_limit() -> None:
    """BulkSMS with concatenation on: 3 parts of GSM-7, but 16-bit text is one part only."""
    assert parts_limit(BULK, "gsm7") == 3
    assert parts_limit(BULK, "ucs2") == 1
    assert check_job(_job("x" * 400), BULK, "bulksms") is None
    problem = check_job(_job("مرحبا" * 15), BULK, "bulksms")
    assert problem == "the text needs 2 SMS parts (UCS2); bulksms takes at most 1"


def test_fit_refuses_or_truncates_with_the_ucs2_limit() -> None:
    """fit_text applies the UCS-2 limit at DATA: refused, or cut to one part when the route truncates."""
    with pytest.raises(ContentError, match="bulksms takes at most 1"):
        fit_text("مرحبا" * 15, ROUTE, BULK, "bulksms")
    fitted = fit_text("مرحبا" * 15, ROUTE.model_copy(update={"truncate": True}), BULK, "bulksms")
    assert (fitted.parts, fitted.encoding) == (1, "ucs2")
    assert fitted.text.endswith("\u2026")


def test_flash_with_unicode_is_refused_where_the_provider_cannot() -> None:
    """KoboMobile's type is flash or Unicode, never both: such a job is refused before sending."""
    assert check_job(_job("Wake up", flash=True), KOBO, "kobomobile") is None
    assert check_job(_job("Привет", flash=True), KOBO, "kobomobile") == (
        "kobomobile cannot send a flash SMS whose text needs UCS-2 (Unicode): send it as a normal SMS")
