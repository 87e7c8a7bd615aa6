"""Prometheus metrics: what mail2sms counts, and the registry `/metrics` renders (web.py).

Components count with one-line calls (`metrics.SMS.labels(provider, state).inc()`); gauges that describe the
spool and the listeners are set when `/metrics` is scraped. Labels are bounded sets only — reply names from
`smtp.replies`, provider names from the config, job states — never an address, a number, a text or anything
a client chose, and never a secret.

With `server.workers > 1` every worker counts in files under `$PROMETHEUS_MULTIPROC_DIR` (the supervisor makes
one when the operator did not: workers.py), and `render()` sums every worker's files, so `/metrics` is the whole
service whichever worker the kernel hands the scrape to. In that mode there are no `process_*` metrics (they
would describe one worker only).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from mail2sms.smtp import replies

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when it is imported
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
# Receipt pushes refused for a bad or missing token (web.py), by configured provider name ("" for a name no
# provider has, so a scanner's guesses cannot grow the label set).
RECEIPT_PUSH_REFUSED = Counter("mail2sms_receipt_push_refused", "Receipt pushes refused: unknown provider or bad token",
                               ["provider"], registry=REGISTRY)
RECEIPT_PUSHES = Counter("mail2sms_receipt_pushes", "Receipt pushes accepted, by provider",
                         ["provider"], registry=REGISTRY)
# Two-way replies (issue 17): counted where a reply takes a state — pending, throttled or dropped when it is stored
# (reply poller, push door), mailed or dropped when its mail is settled (report/replier.py).
REPLIES = Counter("mail2sms_replies", "SMS replies by provider and the state they took", ["provider", "state"],
                  registry=REGISTRY)
PROVIDER_LATENCY = Histogram("mail2sms_provider_request_seconds", "Time of one provider send() call",
                             ["provider"], registry=REGISTRY,
                             buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
# The spool is shared, so every worker sees the same queue: the latest reading is the answer, not a sum.
QUEUE = Gauge("mail2sms_queue_jobs", "Jobs in the spool by state", ["state"], registry=REGISTRY,
              multiprocess_mode="mostrecent")
SESSIONS = Gauge("mail2sms_smtp_sessions", "Open SMTP sessions", registry=REGISTRY, multiprocess_mode="livesum")


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
    """The metrics text: this process's registry, or every worker's files summed in multiprocess mode."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return generate_latest(REGISTRY)
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(combined)
