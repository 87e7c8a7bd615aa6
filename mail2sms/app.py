"""Composition root: builds everything from a Config, runs it in one event loop, shuts it down gracefully.

Nothing else wires components together, so tests can start a whole mail2sms in-process (`App.start()`) with the
same code `mail2sms serve` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx

from mail2sms import sdnotify
from mail2sms.config import Config
from mail2sms.dispatch.dispatcher import CURRENT_OWNER, Dispatcher, owner_is_dead
from mail2sms.dispatch.ratelimit import LocalRateLimiter, RateLimiter, SharesRateLimits
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.model import Account
from mail2sms.observability import SECRETS, get_logger
from mail2sms.providers.base import Provider
from mail2sms.providers.http import build_client
from mail2sms.providers.registry import build_provider
from mail2sms.report.reporter import Reporter
from mail2sms.smtp.handler import Handler
from mail2sms.smtp.policy import Router
from mail2sms.smtp.server import ConnectionGate, start_listeners
from mail2sms.spool import open_spool
from mail2sms.spool.base import Spool
from mail2sms.web import WebServer

log = get_logger("mail2sms.app")


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
        sms_routes = Router(config.routes)
        self.reporter.sender.is_sms_address = lambda address: sms_routes.match(address) is not None
        d = config.dispatch
        self.dispatcher = Dispatcher(
            self.spool,
            self.providers,
            RetryPolicy(base=d.retry_base, cap=d.retry_cap, max_attempts=d.max_attempts),
            concurrency=d.concurrency,
            provider_concurrency={name: p.concurrency for name, p in config.providers.items()},
            poll_interval=d.poll_interval,
            on_final=self.reporter.wake,
            rate_share=config.server.workers,
            breaker_failures=d.breaker_failures,
            breaker_pause=d.breaker_pause,
            lease=d.lease,
            rate_limiter=build_rate_limiter(self.spool, self.providers, config.server.workers),
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
        self.web = WebServer(config.http.listen, self.spool, sessions=lambda: self.gate.total,
                             draining=lambda: self.gate.draining,
                             reuse_port=config.server.workers > 1) if config.http.listen else None

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
        ]
        self.servers = await start_listeners(self.config, self.handler, self.gate,
                                             reuse_port=self.config.server.workers > 1)
        if self.web is not None:
            await self.web.start()
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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients:
            await client.aclose()
        if self.web is not None:
            await self.web.close()  # last: /healthz says "draining" while the drain runs
        await self.spool.close()
        self._parse_pool.shutdown(wait=False, cancel_futures=True)
        log.info("stopped")


async def serve(config: Config, hint: str | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    app = App(config)
    await app.start()
    if hint:
        log.info(hint)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
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
