"""Composition root: builds everything from a Config, runs it in one event loop, shuts it down gracefully.

Nothing else wires components together, so tests can start a whole mail2sms in-process (`App.start()`) with the
same code `mail2sms serve` runs.

SIGHUP (`App.reload()`) re-reads the config file and applies what can change under open sessions: routes, users
(AUTH, `users[].email`, provider accounts), the settings of the configured providers (URL, credentials, sender,
options), and the TLS certificate and key (new handshakes use them). It never closes a listener or a session, and
keeps everything else as it started: listen addresses, the spool, workers, `[server]` limits, `[reports]`,
`[dispatch]`, `[http]`, `[receipts]` (with the push door's tokens), and which providers exist (adding or removing
one needs a restart; a config that needs it is refused whole and the running one stays). A config that does not
load is refused the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from mail2sms import sdnotify
from mail2sms.config import Config, load
from mail2sms.dispatch import receipt_schedule
from mail2sms.dispatch.dispatcher import CURRENT_OWNER, Dispatcher, owner_is_dead
from mail2sms.dispatch.priority import SendingFirst
from mail2sms.dispatch.ratelimit import LocalRateLimiter, RateLimiter, SharesRateLimits
from mail2sms.dispatch.receipt_poller import ReceiptPoller, SourcesOf, idle_for
from mail2sms.dispatch.receipt_push import ReceiptDoor
from mail2sms.dispatch.receipt_store import StoreSink
from mail2sms.dispatch.reply_poller import IDLE as REPLY_IDLE
from mail2sms.dispatch.reply_poller import ReplyPoller, ReplyPushSink, ReplySourcesOf, reply_rules
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.errors import ConfigError, Mail2SmsError
from mail2sms.model import Account
from mail2sms.observability import SECRETS, get_logger
from mail2sms.providers.base import Provider
from mail2sms.providers.http import build_client
from mail2sms.providers.receipts import push_receiver, receipt_source
from mail2sms.providers.registry import build_provider
from mail2sms.providers.replies import reply_push_receiver, reply_source
from mail2sms.report.replier import Replier
from mail2sms.report.reply_mail import address_routes
from mail2sms.report.reporter import Reporter
from mail2sms.smtp.auth import Authenticator
from mail2sms.smtp.handler import Handler
from mail2sms.smtp.policy import Router
from mail2sms.smtp.server import ConnectionGate, start_listeners, tls_context
from mail2sms.spool import open_spool, retention
from mail2sms.spool.base import Spool
from mail2sms.web import WebServer

log = get_logger("mail2sms.app")

# Sections a reload leaves as they started: they hold sockets, the spool, processes or running components.
FIXED_SECTIONS = ("server", "spool", "http", "dispatch", "reports", "receipts", "replies")


class ListenError(Mail2SmsError):
    """A listening address could not be bound (in use, not ours, no permission): said in one line at start-up."""


def build_providers(config: Config) -> tuple[dict[str, Provider], list[httpx.AsyncClient]]:
    providers: dict[str, Provider] = {}
    clients: list[httpx.AsyncClient] = []
    for name, pconf in config.providers.items():
        client = build_client(timeout=pconf.timeout)
        clients.append(client)
        providers[name] = build_provider(name, pconf, client)
    return providers, clients


def build_rate_limiter(spool: Spool, providers: dict[str, Provider], workers: int) -> RateLimiter:
    """Held in the spool for every node when it can (PostgreSQL); else per process, the rate split by workers."""
    rates = {name: p.limits.rate for name, p in providers.items()}
    if isinstance(spool, SharesRateLimits):
        return spool.rate_limiter(rates)
    return LocalRateLimiter(rates, share=workers)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        SECRETS.add(config.secrets())
        self.spool: Spool = open_spool(config.spool.url, config.spool.max_size, config.spool.lock_timeout)
        self.providers, self._clients = build_providers(config)
        self.gate = ConnectionGate(config.server.max_connections, config.server.max_connections_per_client)
        self._parse_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="parse")
        # Reports are claimed under the same owner name as jobs: one process per report, whatever the workers.
        self.reporter = Reporter(self.spool, config.reports, config.server.hostname, owner=CURRENT_OWNER,
                                 owner_dead=owner_is_dead)
        # A report to one of our own SMS routes must never reach the smarthost: it would come back as an SMS.
        # Read through the handler, so a reloaded route table counts at once.
        self.reporter.sender.is_sms_address = self._is_sms_address
        d = config.dispatch
        limiter = build_rate_limiter(self.spool, self.providers, config.server.workers)
        # Delivery receipts (issue 15): polled where a provider has a status call, through the same provider rate
        # as sending, sending first; accepted SMS of those providers await a receipt in the spool.
        polled = [name for name, p in self.providers.items() if receipt_source(p) is not None]
        # Two-way replies (issue 17): polled from providers with a replies API (unless turned off), pushed to the
        # receipts door by those that call back; either way mailed by the replier.
        replies_polled = ReplySourcesOf(self.providers, self._replies_on)
        repliers = [name for name, p in self.providers.items()
                    if reply_source(p) is not None or reply_push_receiver(p) is not None]
        shared = SendingFirst(limiter) if polled or replies_polled else None
        limiter = shared or limiter
        self.receipt_poller: ReceiptPoller | None = None
        if polled and shared is not None:
            window = config.receipts.window
            self.spool.track_receipts(polled, receipt_schedule.first_poll_at(0.0, window), owner=CURRENT_OWNER)
            self.receipt_poller = ReceiptPoller(self.spool, SourcesOf(self.providers), shared.polling, window=window)
        self.replier: Replier | None = None
        if repliers:
            self.replier = Replier(
                self.spool, self.reporter.sender, from_addr=config.reports.from_, hostname=config.server.hostname,
                # Read at each group: a reloaded route table decides the From of the next reply mail.
                routes=lambda: address_routes(self.config.routes),
                outcome_message_id=self.reporter.outcome_message_id, owner=CURRENT_OWNER)
        self.reply_poller: ReplyPoller | None = None
        if replies_polled and shared is not None and self.replier is not None:
            self.reply_poller = ReplyPoller(
                self.spool, replies_polled, shared.polling, reply_rules(config.replies),
                interval=config.replies.poll_interval, owner=CURRENT_OWNER, on_new=self.replier.wake)
        self._stop_polling = asyncio.Event()
        self.dispatcher = Dispatcher(
            self.spool,
            self.providers,
            RetryPolicy(base=d.retry_base, cap=d.retry_cap, max_attempts=d.max_attempts),
            concurrency=d.concurrency,
            provider_concurrency={name: p.concurrency for name, p in config.providers.items()},
            poll_interval=d.poll_interval,
            on_final=self._final,
            rate_share=config.server.workers,
            breaker_failures=d.breaker_failures,
            breaker_pause=d.breaker_pause,
            lease=d.lease,
            rate_limiter=limiter,
        )
        user_accounts = {
            u.name: Account(u.provider_username, u.provider_password.get_secret_value())
            for u in config.users
            if u.provider_username
        }
        self.handler = Handler(
            config,
            self.spool,
            on_commit=self.dispatcher.wake,
            user_accounts=user_accounts,
            provider_limits={n: p.limits for n, p in self.providers.items()},
            executor=self._parse_pool,
        )
        self.servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        # Kept so that a reload changes them in place: every listener's sessions read these same objects.
        self.tls: ssl.SSLContext | None = tls_context(config)
        users = {u.name: u.password_hash.get_secret_value() for u in config.users}
        self.authenticator = Authenticator(users) if users else None
        self._retired_clients: list[httpx.AsyncClient] = []  # replaced by a reload; closed at stop
        receivers = {name: r for name, p in self.providers.items() if (r := push_receiver(p)) is not None}
        reply_receivers = {name: pr for name, p in self.providers.items()
                           if (pr := reply_push_receiver(p)) is not None}
        pushers = set(receivers) | set(reply_receivers)
        reply_sink = ReplyPushSink(self.spool, reply_rules(config.replies), on_new=self.replier.wake
                                   ) if self.replier is not None and reply_receivers else None
        door = ReceiptDoor(receivers, {name: config.receipt_token(name) for name in pushers},
                           StoreSink(self.spool, time.time), reply_receivers=reply_receivers,
                           reply_sink=reply_sink) if pushers else None
        self.web = WebServer(config.http.listen, self.spool, sessions=lambda: self.gate.total,
                             draining=lambda: self.gate.draining, receipts=door,
                             reuse_port=config.server.workers > 1) if config.http.listen else None

    def _final(self, submissions: list[str]) -> None:
        """Submissions became final: their body credentials need no masking any more; their reports are due."""
        SECRETS.release(submissions)
        self.reporter.wake(submissions)

    def _replies_on(self, name: str) -> bool:
        """Whether `name`'s replies are polled: `replies.enabled` (as started) and `providers.NAME.replies` (as
        reloaded)."""
        provider = self.config.providers.get(name)
        return self.config.replies.enabled and provider is not None and provider.replies

    def _is_sms_address(self, address: str) -> bool:
        return self.handler.router.match(address) is not None

    @property
    def smtp_ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self.servers if s.sockets]

    async def start(self) -> None:
        """Open the spool, recover what a crash left, start sending, then start listening."""
        await self.spool.open()
        await self.dispatcher.recover()
        self._tasks = [
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(self.reporter.run(), name="reporter"),
            *([asyncio.create_task(self.receipt_poller.run(self._stop_polling, idle_for(self.receipt_poller.window)),
                                   name="receipts")] if self.receipt_poller is not None else []),
            *([asyncio.create_task(self.replier.run(), name="replier")] if self.replier is not None else []),
            # A round at least as often as the interval asks for (the spool holds each provider's real turn).
            *([asyncio.create_task(self.reply_poller.run(self._stop_polling,
                                                         min(REPLY_IDLE, self.config.replies.poll_interval)),
                                   name="replies")] if self.reply_poller is not None else []),
            # Off the hot path: small batches, yielding between them (spool.retention).
            asyncio.create_task(retention.run(self.spool, self.config.spool.retention,
                                              self.config.server.dedupe_window), name="retention"),
        ]
        try:
            self.servers = await start_listeners(self.config, self.handler, self.gate,
                                                 reuse_port=self.config.server.workers > 1, tls=self.tls,
                                                 authenticator=self.authenticator)
            if self.web is not None:
                try:
                    await self.web.start()
                except OSError as exc:
                    why = os.strerror(exc.errno) if exc.errno else str(exc)
                    raise OSError(exc.errno, f"cannot listen on {self.web.host}:{self.web.port} (http.listen): {why}"
                                  ) from None
        except OSError as exc:
            raise ListenError(exc.strerror or str(exc)) from None
            log.info("http endpoint", listen=f"{self.web.host}:{self.web.port}", paths=["/healthz", "/metrics"])
        log.info("listening", smtp=[f"{s.sockets[0].getsockname()[0]}:{p}"
                                    for s, p in zip(self.servers, self.smtp_ports, strict=True)],
                 spool=self.config.spool.url.split("@")[-1], providers=sorted(self.providers))

    async def stop(self, deadline: float = 10.0) -> None:
        """Graceful shutdown: new sessions get 421, sessions already open (in DATA) and in-flight provider calls
        get until `deadline` to finish, then everything closes. Jobs not sent yet stay queued for the restart."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        self.gate.draining = True
        # A status or replies request in flight finishes; its SMS is asked about again after a lapse, and a page
        # of replies not stored yet is fetched again (nothing was acknowledged).
        self._stop_polling.set()
        await asyncio.gather(
            self.gate.drain(deadline),
            self.dispatcher.stop(deadline),
        )
        for server in self.servers:
            server.close()
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), max(0.1, end - loop.time()))
        await self.reporter.stop(max(0.1, end - loop.time()))
        if self.replier is not None:
            await self.replier.stop(max(0.1, end - loop.time()))  # its group's mails are recorded, or claimed again
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients + self._retired_clients:
            await client.aclose()
        if self.web is not None:
            await self.web.close()  # last: /healthz says "draining" while the drain runs
        await self.spool.close()
        self._parse_pool.shutdown(wait=False, cancel_futures=True)
        log.info("stopped")


    def reload(self, new: Config) -> list[str]:
        """Apply `new`'s routes, users, provider settings and TLS certificate; return what was kept as it was.

        Raises ConfigError (and changes nothing) when `new` adds or removes a provider, or its certificate does
        not load."""
        old = self.config
        if set(new.providers) != set(old.providers):
            raise ConfigError([f"providers: adding or removing a provider needs a restart (running: "
                               f"{', '.join(sorted(old.providers)) or 'none'})"])
        if bool(new.users) != bool(old.users):
            raise ConfigError(["users: turning SMTP AUTH on or off needs a restart (it changes what EHLO offers)"])
        cert, key = new.server.tls_cert, new.server.tls_key
        if bool(cert) != (self.tls is not None):
            raise ConfigError(["server.tls_cert: turning TLS on or off needs a restart"])
        if self.tls is not None:
            try:
                self.tls.load_cert_chain(cert, key)  # in place: new handshakes use it, open sessions keep theirs
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError([f"server.tls_cert: the certificate and key do not load: {type(exc).__name__}"]
                                  ) from None
        kept = [name for name in FIXED_SECTIONS if getattr(new, name) != getattr(old, name)]
        kept = [name for name in kept if name != "server" or _without_tls(new) != _without_tls(old)]
        applied = new.model_copy(update={name: getattr(old, name) for name in FIXED_SECTIONS})
        SECRETS.add(applied.secrets())
        providers, clients = build_providers(applied)
        # Same names, new settings: the dispatcher's dict is this one, so its next batch uses the new adapter.
        self.providers.update(providers)
        self._retired_clients += self._clients  # requests in flight on them finish; closed at stop
        self._clients = clients
        handler = self.handler
        handler.config = applied
        handler.router = Router(applied.routes)
        handler.user_accounts = {
            u.name: Account(u.provider_username, u.provider_password.get_secret_value())
            for u in applied.users if u.provider_username
        }
        handler.user_emails = {u.name: u.email for u in applied.users if u.email}
        handler.provider_limits = {n: p.limits for n, p in providers.items()}
        if self.authenticator is not None:
            self.authenticator.users = {u.name: u.password_hash.get_secret_value() for u in applied.users}
        self.config = applied
        return kept


def _without_tls(config: Config) -> object:
    return config.server.model_copy(update={"tls_cert": "", "tls_key": ""})


def reload_from(app: App, path: str | None) -> None:
    """SIGHUP: re-read `path` and apply it (App.reload); a config that does not load leaves the running one."""
    if path is None:
        log.warning("reload ignored: running on the embedded default config, there is no file to re-read")
        return
    try:
        new = load(path)
        kept = app.reload(new)
    except ConfigError as exc:
        log.error("reload refused; the running config stays", config=path, problems=exc.problems)
        return
    except Mail2SmsError as exc:  # e.g. an adapter that refuses its options when it is built
        log.error("reload refused; the running config stays", config=path, problems=[SECRETS.scrub(str(exc))])
        return
    log.info("config reloaded", config=path, routes=len(new.routes), users=len(new.users),
             providers=sorted(new.providers), sessions=app.gate.total)
    if kept:
        log.warning("reload kept these sections as they started; restart to change them", sections=kept)


async def serve(config: Config, hint: str | None = None, *, config_path: str | None = None) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads `config_path` (App.reload)."""
    app = App(config)
    loop = asyncio.get_running_loop()
    # Before start: a reload that arrives while the spool opens or recovers is applied, not lost (cli.cmd_serve
    # ignores SIGHUP until here, so an early one cannot kill the process).
    loop.add_signal_handler(signal.SIGHUP, reload_from, app, config_path)
    try:
        await app.start()
    except BaseException:
        await app.stop(0.0)  # a listener that could not be bound: close what did start, then say why
        raise
    if hint:
        log.info(hint)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = sdnotify.Notifier.from_environ()  # systemd Type=notify: listeners and spool are up now
    notifier.ready(status=f"listening on {len(app.servers)} SMTP listener(s)")
    interval = sdnotify.watchdog_interval()
    watchdog = asyncio.create_task(sdnotify.keep_alive(notifier, interval)) if interval and notifier.enabled else None
    await stop.wait()
    log.info("shutting down")
    notifier.stopping(status="draining")
    try:
        await app.stop(config.server.shutdown_deadline)
    finally:
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
