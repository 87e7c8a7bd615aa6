"""Render the outcome mail and the follow-up as their reader sees them: the PNGs under docs/ that README shows.

A real mail2sms (the test harness's `ThreadServer`, on 127.0.0.1) with fake KwtSMS and Cellcast over loopback
HTTP gets two mails by smtplib: one SMS, and three numbers of which Cellcast refuses one. Each outcome mail is
taken from the maildir as written. Then the fakes' receipt switches answer the server's status calls (the one
KwtSMS SMS delivered; of the two Cellcast accepted, one delivered and one failed at the handset), and the
follow-up the three-number submission gets is taken from the maildir too. A text part is opened in mutt inside
tmux and captured with `tmux capture-pane -e` (colours kept; the follow-up with mutt's thread index above it,
under its outcome mail); an HTML part is opened in headless Chromium, on a desktop and, for the mixed outcome,
dark on a phone. Every picture is a Chromium screenshot (the terminal capture is drawn as a coloured `<pre>`).

Needs mutt, tmux and chromium (`apt-get install -y mutt tmux chromium`), and ImageMagick's `convert` to trim the
HTML screenshots (optional). Not run by CI. Run from the repository: `python3 docs/render_outcome_mail.py`.
It must never reach beyond 127.0.0.1: Chromium runs with networking features off and opens local files only.
"""

# ruff: noqa: S603, S607  (a developer's tool: it runs mutt, tmux, chromium and convert from PATH on local files)
from __future__ import annotations

import email
import email.policy
import html
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.cellcast import FakeCellcast  # noqa: E402  (the repository root must be importable first)
from tests.fakes.kwtsms import FakeKwtSms  # noqa: E402
from tests.harness import message, send, thread_server, wait_until, write_config  # noqa: E402

COLUMNS, MAX_ROWS = 100, 48  # the terminal mutt runs in: as tall as the mail needs, up to MAX_ROWS
INDEX_LINES = 3  # mutt's index above a follow-up: the outcome mail, the follow-up under it, one spare line
CELLCAST_KEY = "render-cellcast-key"
CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{kwt}"
username = "kwtuser"
password = "render-kwt-password"
sender = "KWT-MESSAGE"
rate = 50

[providers.cellcast]
type = "cellcast"
url = "{cellcast}"
key = "{cellcast_key}"
sender = "Clinic"
rate = 50

[receipts]
# Short, so the last status ask (when the window closes) comes soon: the fakes have answered by then.
window = "8s"

[[routes]]
match = "*@sms.example.org"
format = "address"
provider = "kwt"
region = "KW"

[[routes]]
match = "sms@clinic.example.org"
format = "keyvalue"
provider = "cellcast"
region = "AU"
"""
MUTTRC = """
set mbox_type=Maildir
set folder={maildir}
set spoolfile={maildir}
set postponed={maildir}
set record=""
set header_cache=""
set read_only=yes
set charset=utf-8
set pager_index_lines={index_lines}
set sort=threads
set index_format="%4C %-26.26F %s"
set pager_stop=yes
set markers=no
set help=no
ignore *
unignore from: to: date: subject:
hdr_order from: to: date: subject:
alternative_order text/plain text/html
color normal default default
color hdrdefault cyan default
color header brightwhite default "^Subject:"
color attachment yellow default
color status black cyan
"""
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# xterm's 16 colours, softened a little for a dark theme; 39/49 (default) are the theme's own.
PALETTE = [
    "#1e1e1e", "#e06c75", "#98c379", "#e5c07b", "#61afef", "#c678dd", "#56b6c2", "#d4d4d4",
    "#5c6370", "#ff7b86", "#b5e890", "#ffd58a", "#82c4ff", "#e09cf0", "#7fd8e2", "#ffffff",
]  # fmt: skip
FG, BG = "#d4d4d4", "#1e1e1e"


def _accepted(spool: Path) -> dict[str, str]:
    """number → provider id of every SMS the spool holds as accepted."""
    with sqlite3.connect(spool) as db:
        return {str(n): str(i) for n, i in db.execute("SELECT number, provider_id FROM jobs WHERE state = 'sent'")}


def _kind(path: Path) -> str:
    """`report` or `followup`, from the fixed Message-ID mail2sms gives each."""
    mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return "followup" if ".followup@" in str(mail["Message-ID"]) else "report"


def mails() -> tuple[bytes, bytes, bytes]:
    """The two outcome mails and the mixed submission's follow-up, exactly as mail2sms wrote them."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeKwtSms(
            accounts={"kwtuser": ("render-kwt-password", 500.0)}, senders=("KWT-MESSAGE",), same_number_interval=0
        ) as kwt,
    ):
        cellcast = FakeCellcast(keys={CELLCAST_KEY: 500.0}).start()
        try:
            body = CONFIG.format(kwt=kwt.url, cellcast=cellcast.url, cellcast_key=CELLCAST_KEY)
            path, _ = write_config(Path(tmp), body)
            text = path.read_text(encoding="utf-8").replace('"sms.test"', '"sms.example.org"')
            path.write_text(text.replace("mail2sms@sms.test", "mail2sms@sms.example.org"), encoding="utf-8")
            maildir = Path(tmp) / "reports" / "new"
            with thread_server(path) as server:
                one = message(
                    "96550000001@sms.example.org", "Server room door open (rack B2)\n", subject="Server room door open"
                )
                assert send(server.port, one)[0] == 250
                wait_until(lambda: maildir.is_dir() and len(list(maildir.iterdir())) == 1, timeout=30)
                numbers = "61400100001,61400100002,+447700900123"
                mixed = message(
                    "sms@clinic.example.org",
                    f"mobile:{numbers}\ntext:Reminder: your appointment is tomorrow at 9:00.\n",
                    subject="Appointment reminders",
                )
                assert send(server.port, mixed)[0] == 250
                wait_until(lambda: len(list(maildir.iterdir())) == 2, timeout=30)
                by_time = sorted(maildir.iterdir(), key=lambda p: p.stat().st_mtime_ns)
                one_raw, mixed_raw = (p.read_bytes() for p in by_time)
                # The receipts: what each provider's status call answers from now on.
                ids = wait_until(lambda: (found := _accepted(Path(tmp) / "spool.db")) and len(found) == 3 and found)
                for number, provider_id in ids.items():
                    if number.endswith("96550000001"):
                        kwt.set_report(provider_id, "DELIVERED", number.lstrip("+"))
                    else:
                        cellcast.set_status(provider_id, "Delivered" if number.endswith("0001") else "Failed")
                # The one delivered KwtSMS SMS gets no follow-up (reports.receipts = "failures"); the mixed one does.
                [followup] = wait_until(
                    lambda: [p for p in maildir.iterdir() if _kind(p) == "followup"] or None, timeout=120
                )
                return one_raw, mixed_raw, followup.read_bytes()
        finally:
            cellcast.stop()


def _sgr(params: list[int], state: dict[str, object]) -> None:
    """Apply one SGR escape (`ESC [ … m`) to the current style."""
    i = 0
    while i < len(params):
        p = params[i]
        if p == 0:
            state.update(fg=None, bg=None, bold=False, reverse=False)
        elif p == 1:
            state["bold"] = True
        elif p == 22:
            state["bold"] = False
        elif p == 7:
            state["reverse"] = True
        elif p == 27:
            state["reverse"] = False
        elif 30 <= p <= 37 or 90 <= p <= 97:
            state["fg"] = PALETTE[p - 30 if p < 90 else p - 82]
        elif p == 39:
            state["fg"] = None
        elif 40 <= p <= 47 or 100 <= p <= 107:
            state["bg"] = PALETTE[p - 40 if p < 100 else p - 92]
        elif p == 49:
            state["bg"] = None
        elif p in (38, 48) and i + 2 < len(params) and params[i + 1] == 5 and params[i + 2] < 16:
            state["fg" if p == 38 else "bg"] = PALETTE[params[i + 2]]
            i += 2
        i += 1


def ansi_to_html(screen: str) -> str:
    """A terminal capture with SGR colours as HTML spans (only what mutt uses: 16 colours, bold, reverse)."""
    state: dict[str, object] = {"fg": None, "bg": None, "bold": False, "reverse": False}
    out: list[str] = []
    for chunk in re.split(r"(\x1b\[[0-9;]*m)", screen):
        if chunk.startswith("\x1b["):
            _sgr([int(p) if p else 0 for p in chunk[2:-1].split(";")], state)
            continue
        if not chunk:
            continue
        fg, bg = state["fg"] or FG, state["bg"] or BG
        if state["reverse"]:
            fg, bg = bg, fg
        weight = "font-weight:bold;" if state["bold"] else ""
        out.append(f'<span style="color:{fg};background:{bg};{weight}">{html.escape(chunk)}</span>')
    return "".join(out)


def mutt_screen(raw: bytes, work: Path, rows: int, parent: bytes | None = None) -> str:
    """The text part as mutt shows it in a COLUMNS x `rows` terminal, captured with its colours. With `parent`
    (the outcome mail a follow-up answers) both are in the folder, threaded, and mutt's index above the pager
    shows the follow-up under its parent."""
    maildir = work / "maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    (maildir / "new" / "2.shown").write_bytes(raw)
    if parent is not None:
        (maildir / "new" / "1.parent").write_bytes(parent)
    muttrc = work / "muttrc"
    index_lines = INDEX_LINES if parent is not None else 0
    muttrc.write_text(MUTTRC.format(maildir=maildir, index_lines=index_lines), encoding="utf-8")
    session = f"outcome-{work.name}"
    # In thread order the follow-up is the last entry (the reply under its parent).
    command = f"mutt -n -F {muttrc} -f {maildir} -e 'push <last-entry><display-message>'"
    env = {"HOME": str(work), "TERM": "xterm-256color", "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", str(COLUMNS), "-y", str(rows), command], check=True, env=env
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            plain = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], check=True, capture_output=True, text=True
            ).stdout
            if "Subject:" in plain and "automatic reply" in plain:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("mutt did not show the mail:\n" + plain)
            time.sleep(0.1)
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-e", "-t", session], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def screenshot(page: Path, png: Path, width: int, height: int, *extra: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                "chromium",
                *CHROMIUM_FLAGS,
                *extra,
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def trim(png: Path, border: str) -> None:
    """Cut the empty space below the content, keeping a margin (ImageMagick; skipped when it is missing)."""
    convert = shutil.which("convert")
    if convert is None:
        return
    subprocess.run(
        [
            convert,
            str(png),
            "-trim",
            "+repage",
            "-bordercolor",
            border,
            "-border",
            "14",
            "-strip",
            "-define",
            "png:compression-level=9",
            str(png),
        ],
        check=False,
        capture_output=True,
    )


def render(raw: bytes, name: str, work: Path, parent: bytes | None = None) -> list[Path]:
    """The PNGs of one mail: `<kind>-text.png`, `<kind>-html.png` (and a dark phone one for the mixed outcome);
    `name` is `one`, `mixed` (outcome mails) or `followup` (with `parent`, the outcome mail it answers)."""
    stem = "followup" if name == "followup" else f"outcome-{name}"
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    made: list[Path] = []

    plain = mail.get_body(("plain",))
    assert plain is not None
    # Headers, MIME markers and the attachment notes around the text take about 16 lines.
    rows = min(MAX_ROWS, len(str(plain.get_content()).splitlines()) + 16 + (INDEX_LINES + 1 if parent else 0))
    screen = mutt_screen(raw, work, rows, parent)
    terminal = work / f"{name}-text.html"
    terminal.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        f'<body style="margin:0;background:{BG}"><pre style="margin:0;padding:12px 14px;'
        "font:14px/1.3 'DejaVu Sans Mono',monospace;color:" + FG + '">' + ansi_to_html(screen) + "</pre></body></html>",
        encoding="utf-8",
    )
    png = DOCS / f"{stem}-text.png"
    screenshot(terminal, png, COLUMNS * 9 + 28, rows * 18 + 24)
    trim(png, BG)
    made.append(png)

    part = mail.get_body(("html",))
    assert part is not None
    page = work / f"{name}.html"
    page.write_text(str(part.get_content()), encoding="utf-8")
    png = DOCS / f"{stem}-html.png"
    screenshot(page, png, 760, 900)
    trim(png, "white")
    made.append(png)
    if name == "mixed":  # the same mail on a phone in dark mode
        png = DOCS / f"outcome-{name}-phone-dark.png"
        screenshot(page, png, 390, 900, "--force-dark-mode", "--blink-settings=preferredColorScheme=0")
        trim(png, "#121212")
        made.append(png)
    return made


def main() -> None:
    for tool in ("mutt", "tmux", "chromium"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install -y mutt tmux chromium")
    one, mixed, followup = mails()
    with tempfile.TemporaryDirectory() as tmp:
        for name, raw, parent in (("one", one, None), ("mixed", mixed, None), ("followup", followup, mixed)):
            work = Path(tmp) / name
            work.mkdir()
            for png in render(raw, name, work, parent):
                print(f"{png.relative_to(ROOT)}: {png.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
