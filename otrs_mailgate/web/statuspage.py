"""The read-only status page and /metrics: an aiohttp application inside `serve`.

Customers reach one ticket through the signed link in their acknowledgement;
agents log in through the signed link `otrs-mailgate agent link` mails them,
which sets a session cookie.  Every page is rendered on the server by jinja2 with
autoescape, works without JavaScript and carries a Content-Security-Policy that
allows none.  A forged, altered or expired link gets 403 and the same words
whatever was wrong.  Database reads run in the default executor, never on the
loop that also serves LMTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from sqlalchemy.orm import Session

from otrs_mailgate.config.locate import template_dirs
from otrs_mailgate.config.schema import Config
from otrs_mailgate.mail.compose import filesize
from otrs_mailgate.mail.tokens import TokenError
from otrs_mailgate.metrics import CONTENT_TYPE, Metrics
from otrs_mailgate.store import db
from otrs_mailgate.store.models import utcnow
from otrs_mailgate.store.searchquery import QueryError
from otrs_mailgate.tickets import articles, links, queries
from otrs_mailgate.tickets.agents import AgentRef
from otrs_mailgate.web import charts, stats, views

log = logging.getLogger("otrs_mailgate.web.statuspage")
COOKIE = "otrs_mailgate_session"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
FORBIDDEN = "This link is not valid, or no longer. Links to this page come by mail."
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and aiohttp's own 404/405
        for name, value in HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


# Types a browser may be handed as they are; anything else (HTML, SVG, scripts, the
# unknown) is served as application/octet-stream.  Every download is an attachment.
SAFE_TYPES = frozenset(
    {"application/pdf", "image/png", "image/jpeg", "image/gif", "text/plain", "text/csv"}
)


def _download(ref: articles.FileRef, data: bytes) -> web.Response:
    """An attachment as a download: Content-Disposition attachment with the name
    (RFC 6266/5987), a safe type, and a sandbox CSP should anything render it."""
    ctype = ref.content_type.lower() if ref.content_type.lower() in SAFE_TYPES else ""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in ref.filename)
    disposition = (
        f'attachment; filename="{ascii_name or "attachment"}"; '
        f"filename*=UTF-8''{urllib.parse.quote(ref.filename, safe='')}"
    )
    response = web.Response(body=data, content_type=ctype or "application/octet-stream")
    response.headers["Content-Disposition"] = disposition
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


class StatusPage:
    def __init__(self, config: Callable[[], Config], engine: Any, metrics: Metrics) -> None:
        self._config = config
        self.engine = engine
        self.metrics = metrics
        self._secret = ""
        self._env: tuple[int, jinja2.Environment] | None = None
        self.app = web.Application(middlewares=[_headers])
        self.app.add_routes(
            [
                web.get("/", self.home),
                web.get("/static/style.css", self.css),
                web.get("/t/{token}", self.customer),
                web.get(r"/t/{token}/file/{id:\d+}", self.customer_file),
                web.get("/agent/login/{token}", self.login),
                web.get("/agent/logout", self.logout),
                web.get("/agent", self.overview),
                web.get("/agent/ticket/{number}", self.ticket),
                web.get(r"/agent/ticket/{number}/file/{id:\d+}", self.agent_file),
                web.get("/agent/search", self.search),
                web.get("/agent/reports", self.reports),
                web.get("/metrics", self.metrics_page),
                web.get("/healthz", self.health),
            ]
        )
        self.runner: web.AppRunner | None = None

    @property
    def config(self) -> Config:
        return self._config()

    # -- running ---------------------------------------------------------------------------

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port, reuse_port=reuse_port or None).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    # -- helpers ---------------------------------------------------------------------------

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(conn, *args) on a read-only connection, in a worker thread."""

        def run() -> Any:
            with db.read_only(self.engine) as conn:
                return fn(conn, *args)

        return await asyncio.get_running_loop().run_in_executor(None, run)

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(conn, *args) in a transaction of its own (a login or logout), in a thread."""

        def run() -> Any:
            with self.engine.begin() as conn:
                return fn(conn, *args)

        return await asyncio.get_running_loop().run_in_executor(None, run)

    def env(self) -> jinja2.Environment:
        config = self.config
        if self._env is None or self._env[0] != id(config):
            dirs = [str(d / "web") for d in template_dirs(config) if (d / "web").is_dir()]
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(dirs),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            zone = ZoneInfo(config.system.timezone)
            env.filters["when"] = functools.partial(_when, zone=zone)
            env.filters["duration"] = stats.duration
            env.filters["filesize"] = filesize
            self._env = (id(config), env)
        return self._env[1]

    def page(self, template: str, status: int = 200, **values: Any) -> web.Response:
        html = self.env().get_template(template).render(**values)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def forbidden(self) -> web.Response:
        return self.page("error.html.j2", status=403, title="Forbidden", message=FORBIDDEN)

    def not_found(self) -> web.Response:
        return self.page("error.html.j2", status=404, title="Not found", message="Nothing here.")

    def site_secret(self, conn: Any) -> str:
        if not self._secret:
            self._secret = links.site_secret(conn)
        return self._secret

    async def _agent(self, request: web.Request) -> tuple[AgentRef, dict[int, str]] | None:
        token = request.cookies.get(COOKIE, "")
        if not token:
            return None

        def who(conn: Any) -> tuple[AgentRef, dict[int, str]] | None:
            try:
                agent = links.session_agent(conn, token)
            except TokenError:
                return None
            return agent, views.visible_queues(conn, agent)

        return await self._read(who)

    # -- pages -----------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        return self.page("home.html.j2", title="otrs-mailgate")

    async def css(self, request: web.Request) -> web.Response:
        for d in template_dirs(self.config):
            path = Path(d) / "web" / "style.css"
            if path.is_file():
                return web.Response(text=path.read_text(), content_type="text/css")
        return self.not_found()

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def customer(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]

        def load(conn: Any) -> dict[str, Any] | None:
            try:
                ticket_id = links.customer_ticket(token, self.site_secret(conn))
            except TokenError:
                return None
            return views.customer_ticket(conn, self.config, ticket_id)

        ticket = await self._read(load)
        if ticket is None:
            return self.forbidden()
        return self.page(
            "customer.html.j2", title=f"Ticket {ticket['number']}", t=ticket, token=token
        )

    async def customer_file(self, request: web.Request) -> web.Response:
        """An attachment of an article the customer sees, on the same signed link."""
        token, file_id = request.match_info["token"], int(request.match_info["id"])

        def load(conn: Any) -> tuple[articles.FileRef, bytes] | None:
            try:
                ticket_id = links.customer_ticket(token, self.site_secret(conn))
            except TokenError:
                return None
            return articles.file_data(conn, ticket_id, file_id, public=True)

        found = await self._read(load)
        return self.forbidden() if found is None else _download(*found)

    async def agent_file(self, request: web.Request) -> web.Response:
        """An attachment of a ticket in one of the agent's queues."""
        who = await self._agent(request)
        if who is None:
            return self.forbidden()
        _agent, queues = who
        number, file_id = request.match_info["number"], int(request.match_info["id"])

        def load(conn: Any) -> tuple[articles.FileRef, bytes] | None:
            ticket_id = views.visible_ticket(conn, queues, number)
            return None if ticket_id is None else articles.file_data(conn, ticket_id, file_id)

        found = await self._read(load)
        return self.not_found() if found is None else _download(*found)

    async def login(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        config = self.config

        def check(conn: Any) -> AgentRef | None:
            try:
                return links.agent_of(conn, token, "login")
            except TokenError:
                return None

        agent = await self._read(check)
        if agent is None:
            return self.forbidden()
        cookie = await self._write(links.open_session, config, agent)
        response = web.HTTPSeeOther("/agent")
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=config.web.session_hours * 3600,
            path="/agent",
            httponly=True,
            samesite="Lax",  # Strict would drop it on the redirect from a mail client's link
            secure=config.web.base_url().startswith("https://"),
        )
        log.info("agent %s logged in to the status page", agent.login)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        cookie = request.cookies.get(COOKIE, "")
        if cookie:
            await self._write(links.close_session, cookie)
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/agent")
        raise response

    async def overview(self, request: web.Request) -> web.Response:
        who = await self._agent(request)
        if who is None:
            return self.forbidden()
        agent, queues = who
        raw = self.config.system.catch_all
        data = await self._read(views.overview, agent, queues, utcnow(), 15, raw)
        return self.page("overview.html.j2", title="Queues", agent=agent, o=data)

    async def ticket(self, request: web.Request) -> web.Response:
        who = await self._agent(request)
        if who is None:
            return self.forbidden()
        agent, queues = who
        ticket = await self._read(views.agent_ticket, queues, request.match_info["number"])
        if ticket is None:
            return self.not_found()
        return self.page(
            "ticket.html.j2", title=f"Ticket {ticket['number']}", agent=agent, t=ticket
        )

    async def search(self, request: web.Request) -> web.Response:
        who = await self._agent(request)
        if who is None:
            return self.forbidden()
        agent, queues = who
        source = request.query.get("q", "").strip()
        rows: list[dict[str, Any]] = []
        more, error = False, ""
        if source:

            def run(conn: Any) -> tuple[list[dict[str, Any]], bool]:
                with Session(bind=conn) as session:
                    return queries.results(session, self.config, source, 50, list(queues))

            try:
                rows, more = await self._read(run)
            except QueryError as exc:
                error = str(exc)
        return self.page(
            "search.html.j2", title="Search", agent=agent, q=source, rows=rows, more=more,
            error=error,
        )  # fmt: skip

    async def reports(self, request: web.Request) -> web.Response:
        who = await self._agent(request)
        if who is None:
            return self.forbidden()
        agent, queues = who
        zone = ZoneInfo(self.config.system.timezone)
        today = dt.datetime.now(zone).date()
        error = ""
        try:
            last = _date(request.query.get("to")) or today
            first = _date(request.query.get("from")) or last - dt.timedelta(days=29)
            if first > last:
                raise ValueError("from is after to")
            if (last - first).days > 3660:
                raise ValueError("at most ten years at once")
        except ValueError as exc:
            error = f"Dates are YYYY-MM-DD: {exc}"
            first, last = today - dt.timedelta(days=29), today
        by = request.query.get("by", "day")
        if by not in ("day", "week", "month"):
            by = "day"
        chosen = request.query.get("queue", "")
        names = [chosen] if chosen in queues.values() else list(queues.values())
        report = await self._read(stats.build, self.config, first, last, by, names)
        created_closed = charts.bars(
            f"Tickets created and closed per {by}",
            [p["period"] for p in report["periods"]],
            [
                ("created", [p["created"] for p in report["periods"]]),
                ("closed", [p["closed"] for p in report["periods"]]),
            ],
        )
        distribution = charts.bars(
            "Time to first response",
            [b["band"] for b in report["first_response_distribution"]],
            [("tickets", [b["tickets"] for b in report["first_response_distribution"]])],
        )
        return self.page(
            "reports.html.j2", title="Reports", agent=agent, r=report, error=error,
            queues=sorted(queues.values()), chosen=chosen, by=by,
            charts=[created_closed, distribution],
        )  # fmt: skip

    async def metrics_page(self, request: web.Request) -> web.Response:
        if not _allowed(request.remote, self.config.web.metrics_from):
            return self.forbidden()
        body = await asyncio.get_running_loop().run_in_executor(None, self.metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _when(value: dt.datetime | None, zone: ZoneInfo) -> str:
    if value is None:
        return "-"
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _allowed(remote: str | None, networks: list[str]) -> bool:
    """Whether a client address lies in one of the networks (/metrics)."""
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)
