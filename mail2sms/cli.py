"""The `mail2sms` command line: serve, check-config, show-config, queue, balance, hash-password.

Exit codes: 0 success, 1 a problem the user can fix (config errors are listed by key path; with
`check-config --strict` also unsafe settings, which are otherwise warnings: mail2sms.checks), 2 usage error.
Nothing here prints a secret: `show-config` renders them as ***.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import getpass
import sys
from collections.abc import Sequence

from mail2sms import __version__
from mail2sms import config as configmod
from mail2sms.errors import ConfigError, Mail2SmsError
from mail2sms.observability import SECRETS, setup

FIRST_MESSAGE_HINT = (
    "mail2sms is running on the embedded default config. Send a first SMS with: "
    "swaks --server 127.0.0.1:8025 --from you@example.org --to 96550000000@sms.localhost --body 'Hello' "
    "— the SMS lands in {data}/outbox.jsonl and the outcome mail in {data}/reports/new/"
)


def _load(path: str | None) -> configmod.Config:
    return configmod.load(path)


def cmd_serve(args: argparse.Namespace) -> int:
    from mail2sms.app import serve

    config = _load(args.config)
    if config.server.workers > 1 and not args.worker:
        from mail2sms.workers import Supervisor, worker_command

        command = worker_command(args.config, args.log_level)
        return Supervisor(command, config.server.workers, config.server.shutdown_deadline).run()
    if args.worker:
        from mail2sms.workers import exit_with_supervisor

        exit_with_supervisor()
    hint = FIRST_MESSAGE_HINT.format(data="mail2sms-data") if args.config is None else None
    asyncio.run(serve(config, hint))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from mail2sms.checks import warnings

    config = _load(args.config)
    asyncio.run(_build_providers_once(config))  # adapter options are checked when adapters are built
    found = warnings(config)
    for warning in found:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{config.source}: ok ({len(config.providers)} providers, {len(config.routes)} routes, "
          f"{len(config.users)} users)" + (f", {len(found)} warnings" if found else ""))
    return 1 if found and args.strict else 0


async def _build_providers_once(config: configmod.Config) -> None:
    """Build every adapter (no network I/O) so their option errors surface, then close their clients."""
    from mail2sms.app import build_providers

    _, clients = build_providers(config)
    for client in clients:
        await client.aclose()


def cmd_show_config(args: argparse.Namespace) -> int:
    print(configmod.show(_load(args.config)), end="")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    from mail2sms.smtp.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("empty password refused", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


async def _queue(args: argparse.Namespace) -> int:
    from mail2sms.spool import open_spool

    config = _load(args.config)
    spool = open_spool(config.spool.url)
    await spool.open()
    try:
        import time

        if args.action == "list":
            entries = await spool.queue_list(1000)
            if not entries:
                print("the queue is empty")
            for e in entries:
                states = ", ".join(f"{k} {v}" for k, v in sorted(e.states.items()))
                print(f"{e.submission_id}  {_when(e.received_at)}  {e.envelope_from or '<>'}  {e.route}  "
                      f"{e.total} SMS: {states}  report {e.report_state}")
            return 0
        if not args.id:
            print(f"queue {args.action} needs a submission id", file=sys.stderr)
            return 2
        if args.action == "show":
            found = await spool.get(args.id)
            if found is None:
                print(f"no submission {args.id}", file=sys.stderr)
                return 1
            sub, jobs = found
            print(f"submission {sub.id} from {sub.envelope_from or '<>'} at {_when(sub.received_at)} "
                  f"route {sub.route}")
            for j in jobs:
                print(f"  +{j.number}  {j.state.value}  attempts {j.attempts}  {j.provider}  "
                      f"{j.provider_id or ''}  {j.error or ''}")
            return 0
        if args.action == "retry":
            n = await spool.retry_now(args.id, time.time())
            print(f"{n} SMS will be retried now")
            return 0 if n else 1
        n = await spool.cancel(args.id, time.time())
        print(f"{n} SMS cancelled")
        return 0 if n else 1
    finally:
        await spool.close()


def cmd_queue(args: argparse.Namespace) -> int:
    return asyncio.run(_queue(args))


async def _balance(args: argparse.Namespace) -> int:
    from mail2sms.app import build_providers

    config = _load(args.config)
    SECRETS.add(config.secrets())
    providers, clients = build_providers(config)
    names = [args.provider] if args.provider else sorted(providers)
    status = 0
    try:
        print(f"{'provider':<16} {'type':<11} credit")
        for name in names:
            if name not in providers:
                print(f"no provider named {name!r}", file=sys.stderr)
                return 1
            try:
                bal = await providers[name].balance()
                credit = "-" if bal.credit is None else f"{bal.credit:g}"
                print(f"{name:<16} {config.providers[name].type:<11} {credit}  {bal.detail}")
            except Mail2SmsError as exc:
                status = 1
                print(f"{name:<16} {config.providers[name].type:<11} error: {SECRETS.scrub(str(exc))}")
    finally:
        for c in clients:
            await c.aclose()
    return status


def cmd_balance(args: argparse.Namespace) -> int:
    return asyncio.run(_balance(args))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mail2sms",
        description="An SMTP server that sends email as SMS and mails the sender the outcome.",
    )
    p.add_argument("--version", action="version", version=f"mail2sms {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", "-c", metavar="PATH",
                        help="TOML config file (default: the embedded default config)")
        return sp

    serve_parser = with_config(sub.add_parser("serve", help="run the SMTP server"))
    serve_parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # started by the supervisor
    serve_parser.set_defaults(func=cmd_serve)
    check = with_config(sub.add_parser("check-config", help="validate a config file; exit 1 naming each wrong key"))
    check.add_argument("--strict", action="store_true", help="exit 1 also when there are warnings (unsafe settings)")
    check.set_defaults(func=cmd_check_config)
    with_config(sub.add_parser("show-config", help="print the effective config, secrets as ***")
                ).set_defaults(func=cmd_show_config)
    q = with_config(sub.add_parser("queue", help="list, show, retry or delete queued submissions"))
    q.add_argument("action", choices=["list", "show", "retry", "delete"])
    q.add_argument("id", nargs="?")
    q.set_defaults(func=cmd_queue)
    b = with_config(sub.add_parser("balance", help="show each provider account's credit"))
    b.add_argument("provider", nargs="?")
    b.set_defaults(func=cmd_balance)
    sub.add_parser("hash-password", help="read a password, print a scrypt hash for [[users]]"
                   ).set_defaults(func=cmd_hash_password)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup(args.log_level)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        where = getattr(args, "config", None) or "<embedded default>"
        print(f"mail2sms: configuration errors in {where}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except Mail2SmsError as exc:
        print(f"mail2sms: {SECRETS.scrub(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
