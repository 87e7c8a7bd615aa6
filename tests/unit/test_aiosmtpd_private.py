"""The aiosmtpd private members `smtp/server.py` overrides or uses still exist, with the shapes it relies on.

`Mail2SmsSMTP` subclasses `aiosmtpd.smtp.SMTP` and overrides or calls members aiosmtpd does not promise to keep
(`_create_envelope`, `_getaddr`, `_call_handler_hook`, `_timeout_cb`, `_set_post_data_state`, `_tls_protocol`,
`_reader`, and the reader's `_buffer`). pyproject pins aiosmtpd below its next minor; this test is what must pass
before that pin moves: an override of a method that was renamed would silently never run.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import aiosmtpd
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mail2sms.smtp.server import Mail2SmsSMTP
from tests.harness import ROOT

# The overridden methods: our signature must accept every call aiosmtpd (or asyncio) makes. Those calls pass
# arguments by position, so the parameters' number and kinds must match (a name may differ: `exc` for `error`).
OVERRIDDEN = (
    "_create_envelope",
    "_getaddr",
    "_call_handler_hook",
    "_timeout_cb",
    "connection_made",
    "connection_lost",
    "smtp_DATA",
    "smtp_AUTH",
    "auth_PLAIN",
    "auth_LOGIN",
    "push",
    "smtp_EHLO",
)
# Called, not overridden: (name, parameter names after self).
CALLED = {
    "_set_post_data_state": (),
    "check_helo_needed": ("helo",),
    "check_auth_needed": ("caller_method",),
    "challenge_auth": ("challenge", "encode_to_b64", "log_client_response"),
}
# aiosmtpd's own code must still call our overrides and set the attributes we read (a needle in its source each).
CALLS_IN_AIOSMTPD = (
    "self._create_envelope()",
    "self._getaddr(",
    "await self._call_handler_hook(",
    "self._timeout_cb",
    "self._tls_protocol =",
    "self._reader =",
    "original_content",
)


def parameters(function: Callable[..., Any]) -> list[tuple[str, Any]]:
    """(name, kind) of each parameter, annotations left out."""
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def test_installed_aiosmtpd_is_in_the_pinned_and_tested_range() -> None:
    """The installed aiosmtpd is 1.4.x (≥ 1.4.6), the range pyproject pins and this test was written against."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("aiosmtpd")]
    assert pins == ["aiosmtpd>=1.4.6,<1.5"]
    installed = tuple(int(part) for part in re.findall(r"\d+", version("aiosmtpd"))[:3])
    assert (1, 4, 6) <= installed < (1, 5, 0)
    assert aiosmtpd.__version__ == version("aiosmtpd")


@pytest.mark.parametrize("name", OVERRIDDEN)
def test_overridden_members_exist_with_the_same_parameters(name: str) -> None:
    """Each method Mail2SmsSMTP overrides is still on aiosmtpd's SMTP: same arguments, sync or async alike."""
    theirs = getattr(SMTP, name, None)
    assert theirs is not None, f"aiosmtpd.smtp.SMTP.{name} is gone: our override would never be called"
    ours = Mail2SmsSMTP.__dict__[name]
    assert [kind for _, kind in parameters(ours)] == [kind for _, kind in parameters(theirs)]
    assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(theirs)


@pytest.mark.parametrize("name", sorted(CALLED))
def test_called_members_exist_with_the_parameters_we_pass(name: str) -> None:
    """Each aiosmtpd method smtp/server.py calls is still there and takes the parameters it passes."""
    member = getattr(SMTP, name, None)
    assert member is not None, f"aiosmtpd.smtp.SMTP.{name} is gone"
    assert tuple(n for n, _ in parameters(member))[1:] == CALLED[name]


@pytest.mark.parametrize("needle", CALLS_IN_AIOSMTPD)
def test_aiosmtpd_still_calls_our_overrides_and_sets_what_we_read(needle: str) -> None:
    """aiosmtpd's SMTP source still calls each overridden hook and assigns each private attribute we read."""
    assert needle in inspect.getsource(SMTP)


async def test_a_session_has_the_private_state_we_read() -> None:
    """A fresh session has `_tls_protocol` (None before STARTTLS) and the AUTH challenges; Envelope and Session keep
    the fields we set or read; a StreamReader's `_buffer` is a bytearray we can put pipelined bytes back into."""
    session = SMTP(handler=object())
    assert session._tls_protocol is None
    assert isinstance(session.AuthLoginUsernameChallenge, str)
    assert isinstance(session.AuthLoginPasswordChallenge, str)
    assert isinstance(session.data_size_limit, int)
    assert isinstance(session.local_part_limit, int)
    envelope = Envelope()
    assert hasattr(envelope, "original_content")
    assert hasattr(envelope, "content")
    assert hasattr(Session(asyncio.get_running_loop()), "extended_smtp")
    reader = asyncio.StreamReader()
    reader.feed_data(b"QUIT\r\n")
    reader._buffer[:0] = b"RSET\r\n"
    assert await reader.readline() == b"RSET\r\n"
