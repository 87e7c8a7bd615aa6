"""The `[http] listen` endpoint: /healthz and /metrics in the app's loop, answering only what it should."""

from __future__ import annotations

import json
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ThreadServer, message, thread_server, wait_until
from tests.secure import KWT_ADDRESS, config, http_get

BODY = KWT_ADDRESS


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-config-secret", 100.0)}, same_number_interval=0) as fake:
        yield fake


@pytest.fixture
def served(tmp_path: Path, kwt: FakeKwtSms) -> Iterator[tuple[ThreadServer, int]]:
    path, _, http = config(tmp_path, BODY.format(url=kwt.url), http=True)
    assert http is not None
    with thread_server(path) as srv:
        yield srv, http


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_healthz_reports_ok_and_the_queue(served: tuple[ThreadServer, int]) -> None:
    """GET /healthz is 200 with a JSON status and job counts by state."""
    _, http = served
    status, body = http_get(http, "/healthz")
    assert status == 200
    data = json.loads(body)
    assert data["status"] == "ok"
    assert isinstance(data["queue"], dict)


def test_metrics_count_mail_refusals_sms_and_queue(served: tuple[ThreadServer, int], kwt: FakeKwtSms) -> None:
    """After one accepted mail and one relay attempt, /metrics shows them, the SMS, its latency and the queue."""
    srv, http = served
    before = samples(http_get(http, "/metrics")[1])
    with smtplib.SMTP("127.0.0.1", srv.port, timeout=30) as client:
        assert not client.send_message(message("96550000401@sms.test", "metrics"))
        client.mail("alice@example.org")
        assert client.rcpt("someone@elsewhere.example")[0] == 550
    wait_until(lambda: kwt.sent)
    assert srv.app is not None

    def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        now = samples(http_get(http, "/metrics")[1])
        return now if now.get(("mail2sms_queue_jobs", (("state", "sent"),))) == 1.0 else None

    after = wait_until(settled)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("mail2sms_mails_received_total") == 1
    assert grew("mail2sms_mails_accepted_total", result="queued") == 1
    assert grew("mail2sms_smtp_refused_total", command="rcpt", reason="relay_denied") == 1
    assert grew("mail2sms_sms_total", provider="kwt", state="sent") == 1
    assert grew("mail2sms_provider_request_seconds_count", provider="kwt") == 1
    assert after[("mail2sms_queue_jobs", (("state", "queued"),))] == 0.0


def test_unknown_paths_methods_and_garbage(served: tuple[ThreadServer, int]) -> None:
    """Other paths are 404, other methods 405, and a request that is not HTTP gets 400."""
    _, http = served
    assert http_get(http, "/")[0] == 404
    assert http_get(http, "/metrics/../etc/passwd")[0] == 404
    with socket.create_connection(("127.0.0.1", http), timeout=30) as sock:
        sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 405 ")
    with socket.create_connection(("127.0.0.1", http), timeout=30) as sock:
        sock.sendall(b"EHLO not-http\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")


def test_healthz_says_draining_during_shutdown(served: tuple[ThreadServer, int]) -> None:
    """While the SMTP side drains for a shutdown, /healthz answers 503 so a load balancer stops sending."""
    srv, http = served
    assert srv.app is not None
    srv.loop.call_soon_threadsafe(setattr, srv.app.gate, "draining", True)
    wait_until(lambda: http_get(http, "/healthz")[0] == 503)
    assert json.loads(http_get(http, "/healthz")[1])["status"] == "draining"


def test_endpoint_closes_on_stop(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """After the app stops, the HTTP port no longer accepts connections."""
    path, _, http = config(tmp_path, BODY.format(url=kwt.url), http=True)
    assert http is not None
    with thread_server(path):
        assert http_get(http, "/healthz")[0] == 200
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", http), timeout=5):
        pass
