"""Prometheus metrics: what mail2sms counts, and the registry `/metrics` renders (web.py).

Components count with one-line calls (`metrics.SMS.labels(provider, state).inc()`); gauges that describe the
spool and the listeners are set when `/metrics` is scraped. Labels are bounded sets only — reply names from
`smtp.replies`, provider names from the config, job states — never an address, a number, a text or anything
a client chose, and never a secret.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mail2sms.smtp import replies

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
CONTENT_TYPE = CONTENT_TYPE_LATEST

MAILS_RECEIVED = Counter("mail2sms_mails_received", "Mails whose DATA was read to the end", registry=REGISTRY)
MAILS_ACCEPTED = Counter("mail2sms_mails_accepted", "Mails answered 250 at DATA (queued or duplicate)",
                         ["result"], registry=REGISTRY)
SMTP_REFUSED = Counter("mail2sms_smtp_refused", "SMTP commands refused, by command and reply name",
                       ["command", "reason"], registry=REGISTRY)
AUTH = Counter("mail2sms_smtp_auth", "SMTP AUTH attempts by result", ["result"], registry=REGISTRY)
SMS = Counter("mail2sms_sms", "Provider results recorded for SMS, by provider and the job's new state",
              ["provider", "state"], registry=REGISTRY)
PROVIDER_LATENCY = Histogram("mail2sms_provider_request_seconds", "Time of one provider send() call",
                             ["provider"], registry=REGISTRY,
                             buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
QUEUE = Gauge("mail2sms_queue_jobs", "Jobs in the spool by state", ["state"], registry=REGISTRY)
SESSIONS = Gauge("mail2sms_smtp_sessions", "Open SMTP sessions", registry=REGISTRY)


def smtp_reply(command: str, status: str) -> None:
    """Count one reply to MAIL, RCPT, DATA or AUTH: 250s at DATA as accepted, 4xx/5xx as refused by name."""
    if status[:1] == "2":
        if command == "DATA":
            MAILS_ACCEPTED.labels("duplicate" if status.startswith(str(replies.DUPLICATE)) else "queued").inc()
        return
    if status[:1] in ("4", "5"):
        SMTP_REFUSED.labels(command.lower(), replies.reason(status)).inc()


def set_queue(counts: dict[str, int], states: list[str]) -> None:
    """Set the queue gauge from `spool.counts()`; states with no job read 0 rather than vanish."""
    for state in states:
        QUEUE.labels(state).set(counts.get(state, 0))


def render() -> bytes:
    return generate_latest(REGISTRY)
