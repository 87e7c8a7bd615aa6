"""Route number rules and quotas (smtp.policy, smtp.quota, spool.quotas): pure decisions with the clock passed in."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from mail2sms.config import RouteConfig
from mail2sms.errors import LimitError, PolicyError
from mail2sms.model import Job, JobState
from mail2sms.parse.submission import Envelope
from mail2sms.smtp import replies
from mail2sms.smtp.policy import Client, RoutePolicy, check_access, number_problem, policy_reply
from mail2sms.smtp.quota import counted, limits
from mail2sms.spool import quotas


def route(**kw: object) -> RouteConfig:
    return RouteConfig.model_validate({"match": "*@sms.test", "format": "address", "provider": "p", **kw})


def test_blocked_prefixes() -> None:
    """A number under a blocked prefix is refused, naming the prefix; others pass."""
    r = route(blocked_prefixes=["+44 909", "001900"])
    assert r.blocked_prefixes == ["+44909", "+1900"]
    assert "+44909" in (number_problem(r, "449098790000") or "")
    assert number_problem(r, "19005550123") is not None
    assert number_problem(r, "447700900123") is None


def test_allowed_countries_by_region_or_calling_code() -> None:
    """Regions match valid numbers of that region; calling codes match any number with that code."""
    r = route(allowed_countries=["kw", "44"])
    assert r.allowed_countries == ["KW", "+44"]
    assert number_problem(r, "96550000000") is None
    assert number_problem(r, "447700900123") is None
    problem = number_problem(r, "12125550123")
    assert problem is not None
    assert "US" in problem
    assert "KW, +44" in problem


def test_region_entry_does_not_admit_a_shared_calling_code() -> None:
    """'US' is not '+1': a Canadian number is refused on a US-only route, admitted on a +1 route."""
    assert number_problem(route(allowed_countries=["US"]), "14165550123") is not None
    assert number_problem(route(allowed_countries=["+1"]), "14165550123") is None


@pytest.mark.parametrize(("field", "value"), [
    ("allowed_countries", ["Kuwait"]), ("allowed_countries", ["+999"]),
    ("blocked_prefixes", ["44909"]), ("blocked_prefixes", ["+0909"]), ("blocked_prefixes", ["+44x"]),
    ("allow", ["authenticaed"]), ("allow", ["user:"]), ("allow", ["a b@example.org"]),
])
def test_bad_policy_entries_are_config_errors(field: str, value: list[str]) -> None:
    """A typo in a number rule or an allow entry is an error, not a rule that silently matches nothing."""
    with pytest.raises(ValueError, match=field):
        route(**{field: value})


def test_bare_ip_allow_entry_is_one_host() -> None:
    """An allow entry that is a bare IP address admits that client only."""
    r = route(allow=["192.0.2.7"])
    assert check_access(r, Client("192.0.2.7", None, ""), []).allowed
    assert not check_access(r, Client("192.0.2.8", None, ""), []).allowed


def _used(charges: list[tuple[str, float, int]]) -> Callable[[str, float], int]:
    """A sum over charge rows, as the spools compute it in SQL."""
    return lambda key, since: sum(n for k, at, n in charges if k == key and at > since)


def test_quota_windows_slide() -> None:
    """Charges count inside the window before `now`; the hourly window forgets what the daily one remembers."""
    r = route(quota_per_hour=3, quota_per_day=5)
    rows = [("k", 1000.0, 2), ("k", 5000.0, 3)]
    hour_full = quotas.QuotaCharge("k", 1, limits(r))
    assert quotas.problem(hour_full, _used(rows), 5000.0) is not None
    later = quotas.problem(hour_full, _used(rows), 5000.0 + 3601)
    assert later is not None
    assert not later.temporary  # the day still holds 5
    assert quotas.problem(hour_full, _used(rows), 1000.0 + 86401) is None


def test_hourly_quota_is_temporary_and_daily_is_not() -> None:
    """Over the hourly quota: temporary (450); over the daily one, or bigger than a quota: permanent (550)."""
    r = route(quota_per_hour=3, quota_per_day=5)
    one = quotas.QuotaCharge("user:a", 1, limits(r))
    hourly = quotas.problem(one, _used([("user:a", 0.0, 3)]), 10.0)
    assert hourly is not None
    assert hourly.temporary
    assert policy_reply(hourly).startswith(str(replies.QUOTA_REACHED))
    assert quotas.problem(one, _used([("user:a", 0.0, 3)]), 3700.0) is None
    daily = quotas.problem(one, _used([("user:a", 0.0, 3), ("user:a", 3700.0, 2)]), 7400.0)
    assert daily is not None
    assert not daily.temporary
    assert policy_reply(daily).startswith(str(replies.QUOTA_EXCEEDED))
    too_big = quotas.problem(quotas.QuotaCharge("user:b", 4, limits(r)), _used([]), 0.0)
    assert too_big is not None
    assert not too_big.temporary


def test_unauthenticated_mail_counts_by_sender_and_client_network() -> None:
    """Without AUTH a mail counts against its sender and its client network (IPv6 by /64), unless trusted."""
    assert [c.key for c in counted("Alarm", "x@y.example", "192.0.2.1", trusted=False)] == ["user:alarm"]
    assert [c.key for c in counted(None, "X@y.example", "192.0.2.1", trusted=False)] == [
        "sender:x@y.example", "peer:192.0.2.1"]
    assert [c.key for c in counted(None, "x@y.example", "2001:db8::1", trusted=False)][1] == "peer:2001:db8::/64"
    assert [c.key for c in counted(None, "x@y.example", "10.0.0.1", trusted=True)] == ["sender:x@y.example"]
    assert [c.key for c in counted(None, "", "10.0.0.1", trusted=True)] == ["peer:10.0.0.1"]


def job(number: str, row: int | None = None) -> Job:
    return Job(number=number, text="t", provider="p", row=row)


def test_mail_check_refuses_body_numbers_and_csv_rows() -> None:
    """At DATA, a bad number in a body refuses the mail; in a CSV row it refuses only that row."""
    policy = RoutePolicy()
    r = route(allowed_countries=["KW"], quota_per_hour=10)
    check = policy.for_mail(Envelope(mail_from="a@b.example", recipients=()), 0.0)
    with pytest.raises(PolicyError):
        check(r, [job("96550000000"), job("12125550123")])
    rows = [job("96550000000", row=2), job("12125550123", row=3)]
    check = policy.for_mail(Envelope(mail_from="a@b.example", recipients=()), 0.0)
    check(r, rows)
    assert rows[0].state is JobState.QUEUED
    assert rows[1].state is JobState.REJECTED
    assert check.counts == {r.match: (r, 1)}


def test_mail_check_limits_numbers_and_charges_nothing_for_a_dry_run() -> None:
    """More numbers than max_recipients is a LimitError; charges() names the mail's SMS, a dry run none."""
    from mail2sms.model import Submission

    policy = RoutePolicy()
    r = route(max_recipients=2, quota_per_hour=3)
    check = policy.for_mail(Envelope(mail_from="a@b.example", recipients=(), peer="192.0.2.9"), 0.0)
    with pytest.raises(LimitError):
        check(r, [job("96550000001"), job("96550000002"), job("96550000003")])
    check(r, [job("96550000001"), job("96550000002")])
    assert check.charges(Submission("a@b.example", [], [], r.match, dry_run=True)) == []
    made = check.charges(Submission("a@b.example", [], [], r.match))
    assert [(c.key, c.count) for c in made] == [(f"{r.match}|sender:a@b.example", 2),
                                                (f"{r.match}|peer:192.0.2.9", 2)]


def test_reports_go_to_the_sender_only_when_something_vouches_for_it() -> None:
    """An authenticated user's own address, a listed sender or a trusted network vouch; a forged sender does not."""
    r = route(allow=["authenticated", "@partner.example"])
    forged = check_access(r, Client("192.0.2.1", "alarm", "victim@else.example", "owner@example.org"), [])
    assert forged.allowed
    assert not forged.trusted
    assert forged.to_user
    own = check_access(r, Client("192.0.2.1", "alarm", "Owner@example.org", "owner@example.org"), [])
    assert own.trusted
    listed = check_access(r, Client("192.0.2.1", "alarm", "ops@partner.example"), [])
    assert listed.trusted
    lan = check_access(r, Client("10.0.0.5", "alarm", "victim@else.example"),
                       [ipaddress.ip_network("10.0.0.0/8")])
    assert lan.trusted
    assert not lan.to_user
