"""Backscatter rules: who may get an outcome mail, and the per-sender report rate limit."""

from __future__ import annotations

import pytest

from mail2sms.report.backscatter import SenderRateLimit, address_problem, report_decision


def decide(
    envelope_from: str = "alice@example.org",
    headers: dict[str, list[str]] | None = None,
    trusted: bool = True,
) -> tuple[str | None, str | None]:
    return report_decision(envelope_from=envelope_from, headers=headers or {}, trusted=trusted)


def test_trusted_ordinary_sender_gets_a_report() -> None:
    """A trusted sender of an ordinary mail is the report address, with no suppression reason."""
    assert decide() == ("alice@example.org", None)


def test_angle_brackets_around_the_sender_are_removed() -> None:
    """An envelope sender given as `<addr>` is reported to as the bare address."""
    assert decide("<alice@example.org>") == ("alice@example.org", None)


@pytest.mark.parametrize("sender", ["", "<>"])
def test_null_sender_never_gets_a_report(sender: str) -> None:
    """The null sender (a bounce) never gets a report, and the reason says so."""
    assert decide(sender) == (None, "the sender is <> (a bounce)")


@pytest.mark.parametrize(
    "sender",
    [
        "alice@example.org\r\nRCPT TO:<victim@example.net>",
        "alice@example.org\n",
        "alice\r@example.org",
        "alice\0@example.org",
        "alice smith@example.org",
        "alice@example.org\t",
        "alice.example.org",
        "@example.org",
        "alice@",
        "a@b@example.org",
        "alice@example.org>,<bob@example.net",
        '"alice"@example.org',
        "alice@exa(mple).org",
        "alice@\u200bexample.org",
        "a" * 250 + "@example.org",
    ],
)
def test_unusable_sender_addresses_are_refused(sender: str) -> None:
    """Senders that could inject a command or a header, or are not local@domain, never get mail."""
    report_to, reason = decide(sender)
    assert report_to is None
    assert reason is not None
    assert reason.startswith("the sender address is not usable")


@pytest.mark.parametrize("address", ["alice@example.org", "a.b+tag@sub.example.org", "user@[192.0.2.1]",
                                     "user@[IPv6:2001:db8::1]", "jörg@exämple.de"])
def test_ordinary_addresses_are_usable(address: str) -> None:
    """Plain, tagged, domain-literal and internationalised addresses pass the address check."""
    assert address_problem(address) is None


@pytest.mark.parametrize(
    "value", ["auto-replied", "auto-generated", "Auto-Notified", "auto-generated; owner-email=x@y", ""]
)
def test_auto_submitted_mail_gets_no_report(value: str) -> None:
    """Any Auto-Submitted value other than `no` (even an empty one) suppresses the report."""
    assert decide(headers={"auto-submitted": [value]}) == (None, "the mail is auto-submitted")


@pytest.mark.parametrize("value", ["no", "No", " no (a person wrote this)"])
def test_auto_submitted_no_still_gets_a_report(value: str) -> None:
    """`Auto-Submitted: no` (any case, with a comment) marks a person's mail, so a report goes."""
    assert decide(headers={"auto-submitted": [value]}) == ("alice@example.org", None)


@pytest.mark.parametrize("value", ["bulk", "list", "junk", "Bulk", " junk "])
def test_bulk_list_and_junk_precedence_get_no_report(value: str) -> None:
    """Precedence bulk, list or junk (any case) suppresses the report and names the value."""
    report_to, reason = decide(headers={"precedence": [value]})
    assert report_to is None
    assert reason == f"the mail has Precedence: {value.strip().lower()}"


def test_other_precedence_values_still_get_a_report() -> None:
    """A Precedence such as `first-class` is not automatic mail and does not suppress."""
    assert decide(headers={"precedence": ["first-class"]}) == ("alice@example.org", None)


def test_mailing_list_mail_gets_no_report() -> None:
    """A List-Id header marks mailing-list traffic, which never gets a report."""
    headers = {"list-id": ["<team.lists.example.org>"]}
    assert decide(headers=headers) == (None, "the mail came from a mailing list")


def test_header_names_are_matched_case_insensitively() -> None:
    """Headers given with their usual capitalisation are honoured too."""
    assert decide(headers={"Auto-Submitted": ["auto-replied"]})[0] is None


def test_untrusted_sender_gets_no_report() -> None:
    """A sender the route does not trust may be forged, so it gets no report."""
    assert decide(trusted=False) == (None, "the sender is not trusted on this route")


def test_null_sender_wins_over_other_reasons() -> None:
    """When several rules apply, the reason given is the most basic one: a bounce."""
    assert decide("", {"list-id": ["x"]}, trusted=False) == (None, "the sender is <> (a bounce)")


def test_rate_limit_allows_up_to_the_limit_per_hour() -> None:
    """A sender gets `per_hour` reports in an hour and the next one is refused."""
    limit = SenderRateLimit(3)
    assert [limit.allow("alice@example.org", 100.0 + i) for i in range(4)] == [True, True, True, False]


def test_rate_limit_window_slides() -> None:
    """Once the oldest report is an hour old, one more report is allowed."""
    limit = SenderRateLimit(2)
    assert limit.allow("a@example.org", 0.0)
    assert limit.allow("a@example.org", 1800.0)
    assert not limit.allow("a@example.org", 3599.0)
    assert limit.allow("a@example.org", 3600.0)
    assert not limit.allow("a@example.org", 3601.0)


def test_rate_limit_is_per_sender_and_ignores_case() -> None:
    """Senders are counted separately, and one sender's spelling in another case counts as the same sender."""
    limit = SenderRateLimit(1)
    assert limit.allow("Alice@Example.org", 0.0)
    assert not limit.allow("alice@example.org", 1.0)
    assert limit.allow("bob@example.org", 1.0)


def test_refused_reports_do_not_count() -> None:
    """A refused report does not use up the allowance, so a noisy sender is not locked out forever."""
    limit = SenderRateLimit(1, window=10.0)
    assert limit.allow("a@example.org", 0.0)
    assert not all(limit.allow("a@example.org", t) for t in (1.0, 2.0, 9.0))
    assert limit.allow("a@example.org", 10.0)


def test_zero_means_no_limit() -> None:
    """`per_hour = 0` never refuses."""
    limit = SenderRateLimit(0)
    assert all(limit.allow("a@example.org", float(i)) for i in range(1000))


def test_idle_senders_are_forgotten() -> None:
    """Memory is bounded by recent senders: senders idle for a whole window are swept."""
    limit = SenderRateLimit(5, window=60.0)
    for i in range(1000):
        limit.allow(f"user{i}@example.org", 0.0)
    assert len(limit) == 1000
    limit.allow("late@example.org", 61.0)
    assert len(limit) == 1


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@example.org", "owner-alarms@lists.example.org",
                                    "alarms-request@lists.example.org", "listserv@lists.example.org"])
def test_mail_robots_never_get_a_report(sender: str) -> None:
    """RFC 3834 2: MAILER-DAEMON, owner-*, *-request and list servers get no automatic reply."""
    report_to, reason = decide(sender)
    assert report_to is None
    assert reason is not None


@pytest.mark.parametrize(("name", "value"), [("List-Unsubscribe", "<mailto:u@lists.example.org>"),
                                             ("X-Mailing-List", "alarms@lists.example.org"),
                                             ("Precedence", "auto_reply")])
def test_list_and_auto_reply_headers_suppress_the_report(name: str, value: str) -> None:
    """Mail with List-Unsubscribe, X-Mailing-List or Precedence: auto_reply gets no report."""
    report_to, reason = decide(headers={name: [value]})
    assert report_to is None
    assert reason is not None


def test_report_goes_to_the_given_address_instead_of_the_sender() -> None:
    """An authenticated user's own address replaces an unvouched sender; the rules about the mail still apply."""
    result = report_decision(envelope_from="forged@victim.example", headers={}, trusted=False,
                             report_to="alarm-owner@example.org")
    assert result == ("alarm-owner@example.org", None)
    auto = report_decision(envelope_from="forged@victim.example", headers={"Auto-Submitted": ["auto-generated"]},
                           trusted=False, report_to="alarm-owner@example.org")
    assert auto[0] is None


def test_a_report_to_an_sms_route_is_suppressed() -> None:
    """A sender address that is one of the gateway's SMS routes never gets a report (it would become an SMS)."""
    report_to, reason = report_decision(envelope_from="96550000001@sms.example.org", headers={}, trusted=True,
                                        is_sms_address=lambda a: a.endswith("@sms.example.org"))
    assert report_to is None
    assert reason is not None
    assert "SMS route" in reason
