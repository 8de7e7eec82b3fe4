"""Signed, expiring links to the status page, in the format of the agents' reply tokens
(tokens.py): the customer's link to one ticket, keyed by the site secret; an agent's
login link, keyed by the agent's own secret, so `agent rotate-secret` and `agent
disable` void them at once.  A session is a random cookie per login, kept (hashed) in
web_session: logout, session_hours, rotate-secret and disable end it."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from otrs_mailgate.config.schema import Config
from otrs_mailgate.mail import tokens
from otrs_mailgate.mail.tokens import TokenError
from otrs_mailgate.store.models import SiteSecret, WebSession, utcnow
from otrs_mailgate.tickets.agents import AgentRef, by_id

_S, _W = SiteSecret.__table__, WebSession.__table__


def site_secret(conn: Connection) -> str:
    """The key of customer links (migration 0008 makes it; made here if it went missing)."""
    found = conn.execute(select(_S.c.value).where(_S.c.name == "links")).scalar()
    if found is None:
        module = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            module.insert(_S)
            .values(name="links", value=secrets.token_hex(32))
            .on_conflict_do_nothing()
        )
        found = conn.execute(select(_S.c.value).where(_S.c.name == "links")).scalar_one()
    return str(found)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def customer_url(config: Config, secret: str, ticket_id: int, day: dt.date | None = None) -> str:
    expires = (day or today()) + dt.timedelta(days=config.web.customer_link_days)
    token = tokens.make(secret, 0, ticket_id, "customer", expires)
    return f"{config.web.base_url()}/t/{token}"


def customer_ticket(token: str, secret: str, day: dt.date | None = None) -> int:
    """The ticket id a customer link names; TokenError when forged, altered or expired."""
    return tokens.verify(token, secret, "customer", day or today()).ticket_id


def link_expiry(config: Config, day: dt.date | None = None) -> dt.date:
    """The last day (UTC) an agent's login link made today works."""
    return (day or today()) + dt.timedelta(days=config.web.agent_link_days)


def agent_login_url(config: Config, agent: AgentRef, day: dt.date | None = None) -> str:
    expires = link_expiry(config, day)
    token = tokens.make(agent.secret, agent.id, 0, "login", expires)
    return f"{config.web.base_url()}/agent/login/{token}"


def open_session(conn: Connection, config: Config, agent: AgentRef) -> str:
    """A new login: a random cookie value (only its SHA-256 is stored), good for
    web.session_hours or until logout; expired rows of anybody are swept here."""
    now = utcnow()
    cookie = secrets.token_urlsafe(32)
    conn.execute(delete(_W).where(_W.c.expires_at <= now))
    conn.execute(
        insert(_W).values(
            id=_session_id(cookie),
            agent_id=agent.id,
            created_at=now,
            expires_at=now + dt.timedelta(hours=config.web.session_hours),
        )
    )
    return cookie


def session_agent(conn: Connection, cookie: str) -> AgentRef:
    """The enabled agent of a live session; TokenError for an unknown, ended or expired one."""
    row = conn.execute(
        select(_W.c.agent_id).where(_W.c.id == _session_id(cookie), _W.c.expires_at > utcnow())
    ).first()
    agent = by_id(conn, row.agent_id) if row is not None else None
    if agent is None or not agent.enabled:
        raise TokenError("no such session, or it ended")
    return agent


def close_session(conn: Connection, cookie: str) -> None:
    conn.execute(delete(_W).where(_W.c.id == _session_id(cookie)))


def _session_id(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8", "replace")).hexdigest()


def agent_of(conn: Connection, token: str, purpose: str, day: dt.date | None = None) -> AgentRef:
    """The enabled agent a login link or session cookie names; TokenError otherwise."""
    claim = tokens.peek(token)
    agent = by_id(conn, claim.agent_id) if claim is not None else None
    if agent is None or not agent.enabled:
        raise TokenError("no such agent, or the agent is disabled")
    tokens.verify(token, agent.secret, purpose, day or today())
    return agent
