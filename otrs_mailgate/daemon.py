"""`otrs-mailgate serve`: LMTP server, group committer, outbox sender, scheduler, milter and
status page: one loop.

SIGTERM/SIGINT: stop accepting, let sessions in flight finish (their commits
included), then exit 0.  SIGHUP: read the config again (queues, templates,
outbox settings); a broken file is logged and the old config stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from otrs_mailgate.config import schema as config_mod
from otrs_mailgate.entry import sdnotify
from otrs_mailgate.entry.committer import GroupCommitter
from otrs_mailgate.entry.lmtp import Handler, controller
from otrs_mailgate.entry.milter import MilterServer
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.jobs import junkpurge
from otrs_mailgate.jobs.scheduler import Scheduler
from otrs_mailgate.metrics import Metrics
from otrs_mailgate.outbound.outbox import Sender
from otrs_mailgate.store import db
from otrs_mailgate.store.models import utcnow
from otrs_mailgate.tickets import history
from otrs_mailgate.web.statuspage import StatusPage

log = logging.getLogger("otrs_mailgate.daemon")
STOP_TIMEOUT = 30.0
OUTBOX_IDLE = 2.0
CLAIM = 25  # rows a sender's pass takes: fewer than all, so a backlog spreads out
SCHEDULER_MAX_SLEEP = 60.0  # look again at least this often (other daemons' changes)
HEAD_EVERY = 24 * 3600.0  # the history's head goes to the log this often (and at start)
SCHEDULER_MIN_SLEEP = 0.2  # rows another daemon holds (SKIP LOCKED) are due again soon
EX_OSERR = 71  # sysexits.h: a port already taken is the system's state, not a bug
EX_USAGE = 64  # sysexits.h: a request that cannot work as asked
EX_UNAVAILABLE = 69  # sysexits.h: the database cannot be used (named in one line)
BACKOFF_MAX = 60.0  # seconds between tries while the database stays away


class Trouble:
    """Failures of a loop, said once: the first of a kind is one warning line (the
    database's reason and what to do, no traceback for a database that went away),
    repeats are quiet, the recovery is one line; the loop waits longer each time (as
    Postfix backs off), up to BACKOFF_MAX.  A traceback flood of thousands of lines in
    seconds told an admin nothing a single line did not (issue 27)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.said = ""
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        """Say it (once); the seconds to wait before the next try."""
        self.failures += 1
        if isinstance(exc, db.TemporaryFailure | db.DatabaseProblem) or _is_database(exc):
            why = db.explain(exc)
            if why != self.said:
                log.warning("%s: the database does not answer: %s; trying again", self.what, why)
        else:
            why = f"{type(exc).__name__}: {exc}"
            if why != self.said:
                log.exception("%s failed", self.what)
        self.said = why
        return min(BACKOFF_MAX, 0.5 * 2 ** min(self.failures, 8))

    def ok(self) -> None:
        if self.said:
            log.info("%s: working again", self.what)
        self.said, self.failures = "", 0


def _start_notes(config: config_mod.Config) -> list[str]:
    """What a new site should see at start: the service levels in force (the example's
    SLA on a Munich calendar applied silently to a new site, issue 27), and links in
    mail that nobody but this host can open."""
    notes = []
    calendars = {c.name: c for c in config.calendar}
    for sla in config.sla:
        cal = calendars[sla.calendar]
        notes.append(
            f"SLA {sla.name} for {', '.join(sla.queues)}: first response {sla.first_response}, "
            f"update {sla.update}, solution {sla.solution} working minutes on calendar "
            f"{cal.name} ({cal.timezone}{', holidays ' + cal.holidays if cal.holidays else ''})"
        )
    web = config.web
    domains = {a.rpartition("@")[2] for q in config.queue for a in q.addresses}
    loopback = web.host in ("127.0.0.1", "::1", "localhost")
    if web.enabled and not web.public_url and loopback and domains - {"localhost"}:
        notes.append(
            f"links in mail name {web.base_url()}, which only this host can open: set "
            "[web] public_url to the address customers and agents reach the page at"
        )
    guarded = [q.name for q in config.queue if q.acknowledge == "authenticated" and not q.junk]
    if guarded and not config.agents.authserv_id:
        notes.append(
            f"acknowledgements of {', '.join(guarded)} go only to senders a DKIM signature "
            "vouches for: set [agents] authserv_id (our milter's) so SPF and DMARC count too"
        )
    if config.spam.filter and not config.spam.mta_hostnames:
        notes.append(
            f"[spam] filter = {config.spam.filter} but no mta_hostnames: no verdict can be "
            "tied to our MTA, so none is believed"
        )
    return notes


def _is_database(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(exc, OperationalError | DBAPIError)


class JSONLines(logging.Formatter):
    """`--log-format json`: one JSON object a line with the text format's fields (time,
    level, logger, message; the traceback as `exception`), for journald and Loki."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: int = logging.INFO, fmt: str = "text") -> None:
    """One line per event on stderr (journald and Postfix-style log readers like that)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin list at every check


class CannotListen(Exception):
    """A port or socket of the daemon could not be bound: nothing was started."""


class Daemon:
    def __init__(
        self,
        config_path: str | None,
        config: config_mod.Config,
        *,
        reuse_port: bool = False,
        notifier: sdnotify.Notifier | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.reuse_port = reuse_port  # one of serve --workers N: the ports are shared
        self.engine = db.make_engine(
            config.database.url, config.database.busy_timeout_ms, create=False
        )
        self.pipeline = Pipeline(config, self.engine)
        workers = config.lmtp.workers or (1 if self.engine.dialect.name == "sqlite" else 4)
        self.committer = GroupCommitter(self.pipeline, workers=workers)
        self.metrics = Metrics(self.engine)
        self.handler = Handler(self.committer, self.metrics)
        # One sender a connection: each claims its own rows (SKIP LOCKED, or SQLite's
        # write lock) and keeps its own unwritten outcomes.
        self.senders = [
            Sender(config, self.pipeline.sessions) for _ in range(config.smtp.connections)
        ]
        self.sending = ThreadPoolExecutor(len(self.senders), thread_name_prefix="outbox")
        self.scheduler = Scheduler(lambda: self.pipeline.site, self.pipeline.sessions)
        self.stopping = asyncio.Event()
        self.started = threading.Event()  # for tests that run the daemon in a thread
        self.notifier = notifier or sdnotify.Notifier()
        self.status_line = ""
        self._idle_senders: deque[asyncio.Event] = deque()
        self._look_again = False
        self.scheduler_wakeup = asyncio.Event()
        self.outbox_trouble = Trouble("outbox")
        self.committer.on_commit.append(self._wake_if_queued)
        self.committer.on_commit.append(lambda _queued: self.scheduler_wakeup.set())

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            config = config_mod.load(self.config_path)
        except config_mod.ConfigError as exc:
            log.error("reload refused, keeping the old config: %s", exc)
            self.notifier.send("READY=1", f"STATUS=reload refused: {exc}"[:400])
            return
        if config.database.url != self.config.database.url:
            log.warning("database.url changed: takes effect only after a restart")
            config.database.url = self.config.database.url
        self.config = config
        self.pipeline.reconfigure(config)
        for sender in self.senders:  # the number of connections changes on restart
            sender.reconfigure(config)
        self.scheduler_wakeup.set()  # SLAs may have changed
        log.info("config reloaded from %s", config.source)
        self.notifier.send("READY=1", f"STATUS=config reloaded; {self.status_line}")

    async def watchdog_loop(self) -> None:
        """WATCHDOG=1 at half the unit's WatchdogSec, from the event loop itself: a loop
        stuck in a call sends nothing, and systemd restarts the service."""
        if not self.notifier.watchdog:
            return
        while True:
            self.notifier.ping()
            await asyncio.sleep(self.notifier.watchdog / 2)

    def wake_sender(self) -> None:
        """One sender looks for mail: a commit that queued some wakes one, a sender
        that claimed a full load wakes the next, so a backlog spreads over the
        connections and a trickle costs one pass a commit, not one per connection.
        With none idle, the next to finish a pass looks again instead of sleeping."""
        if self._idle_senders:
            self._idle_senders.popleft().set()
        else:
            self._look_again = True

    def _wake_if_queued(self, queued: int) -> None:
        """After a commit that wrote outbox rows (the committer and the scheduler say how
        many), one sender looks for them."""
        if queued:
            self.wake_sender()

    async def outbox_loop(self, sender: Sender) -> None:
        """Send what is due; sleep until woken or OUTBOX_IDLE (mail of other daemons, retries)."""
        loop = asyncio.get_running_loop()
        trouble = self.outbox_trouble  # one for all the senders: one line, not one each
        while not self.stopping.is_set():
            try:
                result = await loop.run_in_executor(self.sending, sender.run_pass, None, CLAIM)
                trouble.ok()
                for name in ("sent", "retried", "failed"):
                    self.metrics.outbox.labels(name).inc(getattr(result, name))
                if result.claimed >= CLAIM:  # more may be due: go on, and call a helper
                    self.wake_sender()
                    continue
            except Exception as exc:  # the database may be down: try again later
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), trouble.failed(exc))
                continue
            if self._look_again:
                self._look_again = False
                continue
            wakeup = asyncio.Event()
            self._idle_senders.append(wakeup)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), OUTBOX_IDLE)
            with contextlib.suppress(ValueError):
                self._idle_senders.remove(wakeup)

    def daily(self) -> None:
        """At start and daily: the history's head to the log (a copy kept elsewhere,
        syslog or a log host, is what shows rows deleted since: `audit verify --head`),
        and Junk's old spam purged."""
        with self.pipeline.sessions() as session:
            log.info("audit head %s", history.head(session))
        junkpurge.purge(self.scheduler.sites(), self.pipeline.sessions)

    async def scheduler_loop(self) -> None:
        """Locks, pending times and escalations: sleep until the earliest due instant.

        Mail committed here wakes the loop to look again (a new ticket may be due
        sooner); mail committed by another daemon is seen within SCHEDULER_MAX_SLEEP.
        """
        loop = asyncio.get_running_loop()
        head_logged = -HEAD_EVERY
        trouble = Trouble("scheduler")
        while not self.stopping.is_set():
            self.scheduler_wakeup.clear()
            delay = SCHEDULER_MAX_SLEEP
            try:
                if time.monotonic() - head_logged >= HEAD_EVERY:
                    await loop.run_in_executor(None, self.daily)
                    head_logged = time.monotonic()
                result = await loop.run_in_executor(None, self.scheduler.run_pass)
                self.metrics.escalations.inc(result.escalated)
                self._wake_if_queued(result.queued)  # escalations and reminders go now
                if result.busy:
                    log.info("scheduler: %s", result.summary())
                if result.next_at is not None:
                    ahead = (result.next_at - utcnow()).total_seconds()
                    delay = min(max(ahead, SCHEDULER_MIN_SLEEP), SCHEDULER_MAX_SLEEP)
                trouble.ok()
            except Exception as exc:  # the database may be down: try again later
                delay = max(SCHEDULER_MIN_SLEEP, trouble.failed(exc))
            # Commits that come meanwhile are one look, not one each: a new ticket's
            # deadlines are minutes away, and a pass is a transaction of its own.
            pause = min(SCHEDULER_MIN_SLEEP, delay)
            await asyncio.sleep(pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.scheduler_wakeup.wait(), delay - pause)

    async def run(self, install_signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        # The database first: a daemon that says "listening" and then fails every mail
        # is worse than one that says in one line why it will not start.
        revision = await loop.run_in_executor(None, db.check_ready, self.engine)
        lmtp = self.config.lmtp
        ctl = controller(
            self.handler,
            loop,
            host=lmtp.host,
            port=lmtp.port,
            socket=lmtp.socket,
            max_size=lmtp.max_message_size,
            server_name=self.config.system.domain,
            reuse_port=self.reuse_port,
        )
        where = lmtp.socket or f"{lmtp.host}:{lmtp.port}"
        milter: MilterServer | None = None
        page: StatusPage | None = None
        what = f"LMTP on {where}"
        try:
            ctl.server_coro = ctl._create_server()
            ctl.server = await ctl.server_coro
            if self.config.milter.enabled:
                mc = self.config.milter
                what = f"the milter on {mc.socket or f'{mc.host}:{mc.port}'}"
                milter = MilterServer(self.pipeline)
                await milter.start(mc.host, mc.port, mc.socket, self.reuse_port)
            if self.config.web.enabled:
                wc = self.config.web
                what = f"the status page on {wc.host}:{wc.port}"
                page = StatusPage(lambda: self.config, self.engine, self.metrics)
                await page.start(wc.host, wc.port, self.reuse_port)
        except OSError as exc:  # a port taken, a socket path not writable
            for server in (ctl.server, milter, page):
                if isinstance(server, asyncio.AbstractServer):
                    server.close()
                elif server is not None:
                    await server.stop()
            self.engine.dispose()
            raise CannotListen(f"cannot listen for {what}: {_reason(exc)}") from exc
        self.committer.start()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stopping.set)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        log.info(
            "listening for LMTP on %s, database %s (schema %s)",
            where,
            self.engine.url.render_as_string(hide_password=True),
            revision,
        )
        for warning in self.config.warnings:
            log.warning("config: %s", warning)
        for line in _start_notes(self.config):
            level = logging.WARNING if line.startswith("links ") else logging.INFO
            log.log(level, "%s", line)
        if milter is not None:
            mc = self.config.milter
            log.info("milter listening on %s", mc.socket or f"{mc.host}:{mc.port}")
        if page is not None:
            wc = self.config.web
            log.info("status page on http://%s:%s/ (links: %s)", wc.host, wc.port, wc.base_url())
        log.info(
            "outgoing mail goes to %s; until it is sent it waits in the outbox "
            "(`otrs-mailgate outbox list`, `outbox show ID`)",
            self.senders[0].where(),
        )
        if not history.keys_for(self.config, create=False).keys:
            log.warning(
                "no audit key (set system.audit_keys): the history chain is plain SHA-256, "
                "which whoever can write the database can recompute"
            )
        self.started.set()
        self.status_line = f"listening for LMTP on {where}" + (
            f", milter on {self.config.milter.socket or self.config.milter.port}"
            if milter is not None
            else ""
        )
        self.notifier.ready(self.status_line)
        outbox_tasks = [asyncio.create_task(self.outbox_loop(s)) for s in self.senders]
        scheduler_task = asyncio.create_task(self.scheduler_loop())
        watchdog = asyncio.create_task(self.watchdog_loop())
        await self.stopping.wait()
        watchdog.cancel()
        self.notifier.stopping()
        log.info("stopping: no new connections, finishing sessions in flight")
        ctl.server.close()
        await ctl.server.wait_closed()
        deadline = loop.time() + STOP_TIMEOUT
        while self.handler.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if milter is not None:
            await milter.stop()
        if page is not None:
            await page.stop()
        await self.committer.stop()
        for task in [*outbox_tasks, scheduler_task]:
            task.cancel()
        # Ended, not just told to end: a loop closed by its owner (not asyncio.run)
        # would otherwise destroy them pending.
        await asyncio.gather(*outbox_tasks, scheduler_task, return_exceptions=True)
        self.sending.shutdown(wait=True)  # a pass in flight writes its outcomes first
        # and what a pass kept while the database was away
        if not all([sender.close() for sender in self.senders]):
            log.warning("outbox: outcomes of mail sent could not be written; that mail "
                        "is sent again when its lease runs out")  # fmt: skip
        self.engine.dispose()
        log.info("stopped")
        return 0


def serve(
    config_path: str | None, config: config_mod.Config, workers: int = 1, log_format: str = "text"
) -> int:
    setup_logging(fmt=log_format)
    if workers > 1:
        return Workers(config_path, config, workers).run()
    return _serve_one(config_path, config)


def _serve_one(config_path: str | None, config: config_mod.Config, reuse_port: bool = False) -> int:
    async def main() -> int:
        daemon = Daemon(config_path, config, reuse_port=reuse_port)
        return await daemon.run()

    return _run(main())


def _die_with_parent() -> None:
    """A worker gets SIGTERM when the parent dies, however it dies (Linux prctl
    PR_SET_PDEATHSIG), so no worker outlives a `serve` killed with -9."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's SIGTERM is all there is
        pass
    if os.getppid() == 1:  # the parent died before the prctl took
        os.kill(os.getpid(), signal.SIGTERM)


class Workers:
    """`serve --workers N`: N daemons forked from one parent, each with its own pipeline,
    engine and event loop, all listening on the same LMTP, milter and page ports
    (SO_REUSEPORT: the kernel spreads the connections).  Ticket numbers, the outbox, the
    scheduler and escalations are exactly-once across processes already (database
    counters, FOR UPDATE SKIP LOCKED), as for several daemons on one database.  The
    parent forwards SIGTERM/SIGINT and SIGHUP, and starts a worker again that died."""

    def __init__(self, config_path: str | None, config: config_mod.Config, n: int) -> None:
        self.config_path, self.config, self.n = config_path, config, n
        self.children: dict[int, int] = {}  # pid -> worker number
        self.stopping = False

    def run(self) -> int:
        if self.config.lmtp.socket or (self.config.milter.enabled and self.config.milter.socket):
            log.error("serve --workers needs TCP ports: a UNIX socket has one listener")
            return EX_USAGE
        if self.config.database.url.startswith("sqlite"):
            log.warning(
                "serve --workers %d on SQLite: one writer at a time still; the workers "
                "share the protocol, parsing and sending, not the commits",
                self.n,
            )
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._forward)
        notifier = sdnotify.Notifier()
        for number in range(self.n):
            self._start(number)
        log.info("serve: %d workers started (pids %s)", self.n, sorted(self.children))
        if notifier.enabled:  # one service: the parent says ready once the port answers
            lmtp = self.config.lmtp
            if _answers(lmtp.host, lmtp.port, STOP_TIMEOUT):
                notifier.ready(f"{self.n} workers listening for LMTP on {lmtp.host}:{lmtp.port}")
        status = 0
        next_ping = 0.0
        while self.children:
            if notifier.watchdog and time.monotonic() >= next_ping:
                notifier.ping()  # the parent's own loop; a worker that dies is started again
                next_ping = time.monotonic() + notifier.watchdog / 2
            try:
                pid, code = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                time.sleep(0.2)
                continue
            if pid not in self.children:
                continue
            worker = self.children.pop(pid)
            exit_code = os.waitstatus_to_exitcode(code)
            if self.stopping:
                notifier.stopping()
                status = status or (exit_code if exit_code > 0 else 0)
                continue
            log.error("worker %d (pid %d) ended with %d; starting it again", worker, pid, exit_code)
            if exit_code in (EX_OSERR, EX_UNAVAILABLE):  # a port it cannot bind, a
                self._stop(signal.SIGTERM, None)  # database it cannot use: again is no cure
                status = exit_code
                continue
            time.sleep(1)
            self._start(worker)
        return status

    def _start(self, number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: default signal handling, its own loop and engine
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)  # the parent speaks for the service
            _die_with_parent()
            code = 1
            try:
                code = _serve_one(self.config_path, self.config, reuse_port=True)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = number

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _forward(self, signum: int, _frame: object) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _answers(host: str, port: int, within: float) -> bool:
    """Whether a TCP port accepts a connection within `within` seconds."""
    import socket

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def _reason(exc: OSError) -> str:
    """ "Address already in use", not asyncio's wording around it."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def give_big_buffers_back() -> None:
    """Big buffers (a mail's bytes, a decoded attachment) in memory of their own, given
    back to the system when freed. glibc raises its mmap threshold after the first big
    free, after which such buffers come from the heap and stay there: 10 mails of 25 MB
    at once left serve at 500 MB after they were stored; fixed at 1 MB, 226 MB, and a
    lower peak (issue 28, bench/bigmail.py). Not glibc: nothing to do."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


def _run(main: Coroutine[Any, Any, int]) -> int:
    """The exit status of an entry point: a port already taken, or a database that cannot
    be used, is one line, not a trace."""
    give_big_buffers_back()
    try:
        return asyncio.run(main)
    except CannotListen as exc:
        log.error("%s", exc)
        return EX_OSERR
    except db.DatabaseProblem as exc:
        log.error("not started: %s", exc)
        return EX_UNAVAILABLE


def milter_only(
    config_path: str | None, config: config_mod.Config, log_format: str = "text"
) -> int:
    """`otrs-mailgate milter`: the milter without the rest (e.g. on the MX host), with
    the same notify protocol as serve (its own unit, otrs-mailgate-milter.service)."""
    setup_logging(fmt=log_format)
    notifier = sdnotify.Notifier()

    async def main() -> int:
        pipeline = Pipeline(config)
        server = MilterServer(pipeline)
        mc = config.milter
        where = mc.socket or f"{mc.host}:{mc.port}"
        try:
            await server.start(mc.host, mc.port, mc.socket)
        except OSError as exc:
            raise CannotListen(f"cannot listen for the milter on {where}: {_reason(exc)}") from exc
        log.info("milter listening on %s", where)
        notifier.ready(f"milter listening on {where}")
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)

        async def watchdog() -> None:
            while notifier.watchdog:
                notifier.ping()
                await asyncio.sleep(notifier.watchdog / 2)

        pinging = asyncio.create_task(watchdog())
        await stopping.wait()
        pinging.cancel()
        notifier.stopping()
        await server.stop()
        pipeline.engine.dispose()
        log.info("milter stopped")
        return 0

    return _run(main())
