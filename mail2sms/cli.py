"""The `mail2sms` command line: serve, check-config, show-config, queue, balance, hash-password.

Exit codes: 0 success, 1 a problem the user can fix (config errors are listed by key path; with
`check-config --strict` also unsafe settings, which are otherwise warnings: mail2sms.checks; a listening address
already in use), 2 usage error. Nothing here prints a secret: `show-config` renders them as ***.

Which config: `--config PATH` (before or after the command), else `$MAIL2SMS_CONFIG`, else
`/etc/mail2sms/mail2sms.toml` when it exists, else the embedded default. The queue commands never fall back to the
embedded default: it would create an empty spool in the working directory and report on that instead of the
real one.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
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


DEFAULT_CONFIG = "/etc/mail2sms/mail2sms.toml"
CONFIG_ENV = "MAIL2SMS_CONFIG"


class NoConfigError(Mail2SmsError):
    """A command that must not run on the embedded default found no config file."""


def config_path(given: str | None) -> str | None:
    """The config file to use: --config, $MAIL2SMS_CONFIG, /etc/mail2sms/mail2sms.toml if it exists, or None
    (the embedded default)."""
    if given:
        return given
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    return DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None


def _load(path: str | None) -> configmod.Config:
    return configmod.load(path)


def _require_config(args: argparse.Namespace) -> None:
    if args.config is None:
        raise NoConfigError(f"no config file: give --config PATH or set {CONFIG_ENV} (no {DEFAULT_CONFIG} either); "
                            f"{args.command} will not open an empty spool in place of the real one")


def with_listen(config: configmod.Config, listen: str) -> configmod.Config:
    """The config with `server.listen` replaced by one HOST:PORT (`serve --listen`, for a quick try)."""
    try:
        host, port = configmod.parse_hostport(listen)
    except ValueError as exc:
        raise ConfigError([f"--listen: {exc}"]) from None
    if ":" not in listen.rpartition("]")[2]:
        raise ConfigError([f"--listen: {listen!r} has no port (write HOST:PORT, e.g. 127.0.0.1:2525)"])
    server = config.server.model_copy(update={"listen": [listen], "auth_without_tls": [
        item for item in config.server.auth_without_tls if configmod.parse_hostport(item) == (host, port)]})
    return config.model_copy(update={"server": server})


def cmd_serve(args: argparse.Namespace) -> int:
    from mail2sms.app import serve

    # SIGHUP means "reload" (systemd's ExecReload); its default action would kill a process still starting up.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config = _load(args.config)
    if args.listen:
        config = with_listen(config, args.listen)
    if config.server.workers > 1 and not args.worker:
        from mail2sms.workers import Supervisor, worker_command

        command = worker_command(args.config, args.log_level, args.listen)
        return Supervisor(command, config.server.workers, config.server.shutdown_deadline).run()
    if args.worker:
        from mail2sms.workers import exit_with_supervisor

        exit_with_supervisor()
    hint = FIRST_MESSAGE_HINT.format(data="mail2sms-data") if args.config is None else None
    # A listening address in use is app.ListenError: one line naming it and exit 1 (main), not a traceback.
    asyncio.run(serve(config, hint, config_path=args.config))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from mail2sms.checks import warnings

    config = _load(args.config)
    providers = asyncio.run(_build_providers_once(config))  # adapter options are checked when adapters are built
    if getattr(args, "verbose", False):
        from mail2sms.providers.facts import provider_facts

        for line in provider_facts(config, providers):
            print(line)
    found = warnings(config)
    for warning in found:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{config.source}: ok ({len(config.providers)} providers, {len(config.routes)} routes, "
          f"{len(config.users)} users)" + (f", {len(found)} warnings" if found else ""))
    return 1 if found and args.strict else 0


async def _build_providers_once(config: configmod.Config) -> dict[str, object]:
    """Build every adapter (no network I/O) so their option errors surface, then close their clients; the adapters
    stay readable (check-config --verbose says what each can do)."""
    from mail2sms.app import build_providers

    providers, clients = build_providers(config)
    for client in clients:
        await client.aclose()
    return dict(providers)


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


async def _queue(args: argparse.Namespace) -> int:
    from mail2sms import queuecli

    _require_config(args)
    return await queuecli.run(args, _load(args.config))


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

    config_help = (f"TOML config file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG} if it exists, "
                   "else the embedded default config)")
    p.add_argument("--config", "-c", metavar="PATH", help=config_help)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # Also accepted after the command; SUPPRESS keeps a --config given before it.
        sp.add_argument("--config", "-c", metavar="PATH", default=argparse.SUPPRESS, help=config_help)
        return sp

    serve_parser = with_config(sub.add_parser("serve", help="run the SMTP server"))
    serve_parser.add_argument("--listen", metavar="HOST:PORT",
                              help="listen on this one address instead of server.listen (for a quick try)")
    serve_parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # started by the supervisor
    serve_parser.set_defaults(func=cmd_serve)
    check = with_config(sub.add_parser("check-config", help="validate a config file; exit 1 naming each wrong key"))
    check.add_argument("--strict", action="store_true", help="exit 1 also when there are warnings (unsafe settings)")
    check.add_argument("--verbose", "-v", action="store_true",
                       help="also say, per provider, how it reports delivery and whether SMS replies come back")
    check.set_defaults(func=cmd_check_config)
    with_config(sub.add_parser("show-config", help="print the effective config, secrets as ***")
                ).set_defaults(func=cmd_show_config)
    from mail2sms.queuecli import add_commands

    q = with_config(sub.add_parser("queue", help="list, show, retry, cancel, delete or purge submissions"))
    add_commands(q, with_config)
    q.set_defaults(func=cmd_queue)
    b = with_config(sub.add_parser("balance", help="show each provider account's credit"))
    b.add_argument("provider", nargs="?")
    b.set_defaults(func=cmd_balance)
    sub.add_parser("hash-password", help="read a password, print a scrypt hash for [[users]]"
                   ).set_defaults(func=cmd_hash_password)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.config = config_path(args.config)
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
