"""Receipts configuration (issue 15): `[receipts]` public_url, token and window, per-provider receipt tokens in the
usual secret forms, Kapow's receipt address from public_url, `reports.receipts`, and tokens never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from mail2sms import config
from mail2sms.errors import ConfigError

TOKEN = "rcpt-t0k3n-4711"
KAPOW = """
[providers.kapow1]
type = "kapow"
username = "user"
password = "pa55-w0rd"
"""
CELLCAST = """
[providers.cell]
type = "cellcast"
key = "cellcast-key-1"
"""


def parse(text: str, base: Path | None = None) -> config.Config:
    return config.parse(text, base=base)


def test_public_url_gives_kapow_its_receipt_address() -> None:
    """With public_url and a token, Kapow sends `<public_url>/receipts/<name>/<token>` as its dlr address."""
    conf = parse(f'[receipts]\npublic_url = "https://sms.example.org/"\ntoken = "{TOKEN}"\n{KAPOW}{CELLCAST}')
    assert conf.providers["kapow1"].options["receipt_url"] == f"https://sms.example.org/receipts/kapow1/{TOKEN}"
    assert "receipt_url" not in conf.providers["cell"].options  # its webhook is set in Cellcast's dashboard
    assert conf.receipts.public_url == "https://sms.example.org"


def test_a_providers_own_token_wins_and_may_come_from_env_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`providers.<name>.receipt_token` (or its _env / _file form) overrides `receipts.token` for that provider."""
    monkeypatch.setenv("RCPT_TOKEN", TOKEN)
    (tmp_path / "cell.token").write_text("cell-t0k3n-99\n")
    text = (
        '[receipts]\npublic_url = "https://sms.example.org"\ntoken_env = "RCPT_TOKEN"\n'
        f'{KAPOW}receipt_token = "own-t0k3n-1"\n{CELLCAST}receipt_token_file = "cell.token"\n'
    )
    conf = parse(text, base=tmp_path)
    assert conf.receipt_token("kapow1") == "own-t0k3n-1"
    assert conf.receipt_token("cell") == "cell-t0k3n-99"
    assert conf.providers["kapow1"].options["receipt_url"].endswith("/receipts/kapow1/own-t0k3n-1")
    assert {TOKEN, "own-t0k3n-1", "cell-t0k3n-99"} <= set(conf.secrets())


def test_no_token_no_receipt_address() -> None:
    """Without a token Kapow gets no receipt address: a push URL without a secret would admit anyone."""
    conf = parse(f'[receipts]\npublic_url = "https://sms.example.org"\n{KAPOW}')
    assert "receipt_url" not in conf.providers["kapow1"].options
    assert conf.receipt_token("kapow1") == ""


def test_an_explicit_dlr_is_kept() -> None:
    """A Kapow account that names its own dlr address keeps it."""
    conf = parse(
        f'[receipts]\npublic_url = "https://sms.example.org"\ntoken = "{TOKEN}"\n{KAPOW}'
        'options = {dlr = "alerts@example.org"}\n'
    )
    assert conf.providers["kapow1"].options == {"dlr": "alerts@example.org"}


def test_tokens_are_secrets_and_never_shown() -> None:
    """The tokens are in the log redactor's list, and show-config masks them, also inside Kapow's receipt_url."""
    conf = parse(f'[receipts]\npublic_url = "https://sms.example.org"\ntoken = "{TOKEN}"\n{KAPOW}')
    assert TOKEN in conf.secrets()
    shown = config.show(conf)
    assert TOKEN not in shown
    assert 'receipt_url = "https://sms.example.org/receipts/kapow1/***"' in shown


def test_window_and_reports_receipts_defaults_and_values() -> None:
    """The window is 48 h unless set (any duration); reports.receipts is `failures` unless set."""
    conf = parse("")
    assert (conf.receipts.window, conf.reports.receipts) == (48 * 3600.0, "failures")
    conf = parse('[receipts]\nwindow = "24h"\n[reports]\nreceipts = "always"\n')
    assert (conf.receipts.window, conf.reports.receipts) == (24 * 3600.0, "always")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[receipts]\npublic_url = "sms.example.org"\n', "receipts.public_url"),
        ('[receipts]\npublic_url = "https://sms.example.org/?a=1"\n', "receipts.public_url"),
        ('[receipts]\nwindow = "0s"\n', "receipts.window"),
        ('[reports]\nreceipts = "sometimes"\n', "reports.receipts"),
        ('[receipts]\ntoken_env = "NO_SUCH_VARIABLE_4711"\n', "receipts.token_env"),
    ],
)
def test_wrong_values_name_their_key(text: str, where: str) -> None:
    """A wrong receipts setting is a ConfigError naming its key."""
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert any(problem.startswith(where) for problem in caught.value.problems), caught.value.problems
