"""`/metrics` with `server.workers = 2` counts the whole service, whichever worker the kernel hands a scrape to
(Prometheus multiprocess mode: the supervisor gives the workers one metrics directory)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ProcessServer, message, send, wait_until
from tests.secure import KWT_ADDRESS, config, http_get

MAILS = 12


def metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_every_scrape_sums_every_worker(tmp_path: Path) -> None:
    """Twelve mails over twelve connections to two workers: every one of several scrapes says twelve received,
    twelve queued and twelve SMS sent, and the supervisor's metrics directory is gone after it stops."""
    with FakeKwtSms(accounts={"kwtuser": ("kwt-config-secret", 1000.0)}, same_number_interval=0) as kwt:
        path, port, http = config(tmp_path, KWT_ADDRESS.format(url=kwt.url), server="workers = 2", http=True)
        assert http is not None
        server = ProcessServer(path, port, tmp_path / "server.log").start()
        try:
            log = tmp_path / "server.log"
            wait_until(lambda: log.read_text(encoding="utf-8").count('"event": "listening"') == 2, timeout=60)
            for i in range(MAILS):
                assert send(port, message(f"965500001{i:02d}@sms.test", f"mail {i}"))[0] == 250
            wait_until(lambda: len(kwt.sent) == MAILS, timeout=60)

            def summed() -> bool:
                text = http_get(http, "/metrics")[1].decode()
                sent = metric(text, 'mail2sms_sms_total{provider="kwt",state="sent"}') == MAILS
                return sent and metric(text, "mail2sms_smtp_sessions") == 0  # the last QUIT may still be in hand

            wait_until(summed, timeout=120)  # the last result is recorded a moment after the fake answered
            scrapes = [http_get(http, "/metrics")[1].decode() for _ in range(8)]
            workers_dir = _multiproc_dir(server)
        finally:
            assert server.terminate() == 0, (tmp_path / "server.log").read_text(encoding="utf-8")[-6000:]
    for text in scrapes:
        assert metric(text, "mail2sms_mails_received_total") == MAILS
        assert metric(text, 'mail2sms_mails_accepted_total{result="queued"}') == MAILS
        assert metric(text, 'mail2sms_sms_total{provider="kwt",state="sent"}') == MAILS
        assert metric(text, "mail2sms_smtp_sessions") == 0
    assert workers_dir is not None
    assert not Path(workers_dir).exists()


def _multiproc_dir(server: ProcessServer) -> str | None:
    """The metrics directory the supervisor gave its workers, read from a worker's environment."""
    assert server.proc is not None
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    for pid in children:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for item in env:
            if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return item.split(b"=", 1)[1].decode()
    return None
