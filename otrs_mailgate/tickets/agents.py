"""Agents, groups and queue grants: who may work which queue, and who hears of a ticket.

Access to a queue is the best of the agent's own grant and its groups' grants:
rw (work on tickets: every command) or ro (may be told, may not change anything).
A disabled agent has no access at all and its tokens stop working at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import LOGIN
from otrs_mailgate.mail import addresses, tokens
from otrs_mailgate.store import db
from otrs_mailgate.store.models import (
    Agent,
    AgentGroup,
    GroupMember,
    Queue,
    QueueGrant,
    WebSession,
    utcnow,
)

ACCESS = ("ro", "rw")


class AgentError(ValueError):
    """A management request that cannot be done; the message says why."""


@dataclass(frozen=True)
class AgentRef:
    id: int
    login: str
    address: str
    name: str
    secret: str
    enabled: bool

    @property
    def display(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


_A, _G, _M, _GR = Agent.__table__, AgentGroup.__table__, GroupMember.__table__, QueueGrant.__table__
_COLUMNS = (_A.c.id, _A.c.login, _A.c.address, _A.c.name, _A.c.secret, _A.c.enabled)


def _ref(row: Any) -> AgentRef:
    return AgentRef(*row)


def by_id(conn: Connection, agent_id: int) -> AgentRef | None:
    row = conn.execute(select(*_COLUMNS).where(_A.c.id == agent_id)).first()
    return _ref(row) if row else None


def by_login(conn: Connection, login: str) -> AgentRef | None:
    row = conn.execute(select(*_COLUMNS).where(_A.c.login == login.lower())).first()
    return _ref(row) if row else None


def by_address(conn: Connection, address: str) -> AgentRef | None:
    """The agent of exactly this address (addresses.canonical: A-Z lower-cased, never a
    look-alike letter folded onto an ASCII one)."""
    row = conn.execute(select(*_COLUMNS).where(_A.c.address == _spec(address))).first()
    return _ref(row) if row else None


def _spec(address: str) -> str:
    try:
        return addresses.canonical(address)
    except addresses.Unanswerable:
        return addresses.ascii_lower(address.strip())


def by_addresses(conn: Connection, wanted: set[str]) -> list[AgentRef]:
    """The agents of these (canonical) addresses, in one query."""
    if not wanted:
        return []
    rows = conn.execute(select(*_COLUMNS).where(_A.c.address.in_(sorted(wanted))))
    return [_ref(r) for r in rows]


def find(conn: Connection, who: str) -> AgentRef | None:
    """An agent by login or by address."""
    return by_address(conn, who) if "@" in who else by_login(conn, who)


# -- management (the CLI) -----------------------------------------------------------------


def add(session: Session, login: str, address: str, name: str, groups: list[str]) -> AgentRef:
    login = login.strip().lower()
    if not LOGIN.match(login):
        raise AgentError(f"login {login!r}: use lower-case letters, digits, '.', '_', '-'")
    if not addresses.is_address(address):
        raise AgentError(f"{address!r} is not a mail address")
    try:
        address = addresses.canonical(address)
    except addresses.Unanswerable as exc:
        raise AgentError(f"{address!r} cannot take our mail: {exc}") from None
    conn = session.connection()
    if by_login(conn, login):
        raise AgentError(f"an agent with login {login!r} exists already")
    if by_address(conn, address):
        raise AgentError(f"an agent with address {address!r} exists already")
    agent_id = conn.execute(
        _A.insert().returning(_A.c.id),
        {
            "login": login,
            "address": address,
            "name": name.strip(),
            "secret": tokens.new_secret(),
            "enabled": True,
            "created_at": utcnow(),
        },
    ).scalar_one()
    for group in groups:
        join(session, login, group)
    agent = by_id(conn, agent_id)
    assert agent is not None
    return agent


def _need(conn: Connection, who: str) -> AgentRef:
    agent = find(conn, who)
    if agent is None:
        raise AgentError(f"no agent {who!r} (see `otrs-mailgate agent list`)")
    return agent


def set_enabled(session: Session, who: str, enabled: bool) -> AgentRef:
    """Disabling voids everything handed out to the agent for good: its secret is new
    (every reply address it had stops working, also after `agent enable`, issue 25)
    and its logins end."""
    conn = session.connection()
    agent = _need(conn, who)
    values: dict[str, Any] = {"enabled": enabled}
    if not enabled:
        values["secret"] = tokens.new_secret()
    conn.execute(update(_A).where(_A.c.id == agent.id).values(**values))
    if not enabled:
        conn.execute(delete(WebSession).where(WebSession.agent_id == agent.id))
    return _need(conn, who)


def rotate_secret(session: Session, who: str) -> AgentRef:
    """A new secret: every reply address handed out to this agent stops working."""
    conn = session.connection()
    agent = _need(conn, who)
    conn.execute(update(_A).where(_A.c.id == agent.id).values(secret=tokens.new_secret()))
    conn.execute(delete(WebSession).where(WebSession.agent_id == agent.id))  # and logins
    return _need(conn, who)


def _group_id(session: Session, name: str) -> int:
    name = name.strip().lstrip("@").lower()
    if not LOGIN.match(name):
        raise AgentError(f"group {name!r}: use lower-case letters, digits, '.', '_', '-'")
    db.insert_ignore(session, AgentGroup, name=name)
    return int(session.execute(select(_G.c.id).where(_G.c.name == name)).scalar_one())


def join(session: Session, who: str, group: str) -> None:
    agent = _need(session.connection(), who)
    db.insert_ignore(session, GroupMember, group_id=_group_id(session, group), agent_id=agent.id)


def grant(session: Session, queue_id: int, grantee: str, access: str) -> str:
    """Give an agent (login or address) or a group (@name) ro/rw/none on a queue."""
    if access not in (*ACCESS, "none"):
        raise AgentError(f"access {access!r}: use ro, rw or none")
    conn = session.connection()
    if grantee.startswith("@"):
        agent_id, group_id, label = None, _group_id(session, grantee), f"group {grantee}"
    else:
        agent = _need(conn, grantee)
        agent_id, group_id, label = agent.id, None, f"agent {agent.login}"
    conn.execute(
        delete(_GR).where(
            _GR.c.queue_id == queue_id,
            _GR.c.agent_id.is_(None) if agent_id is None else _GR.c.agent_id == agent_id,
            _GR.c.group_id.is_(None) if group_id is None else _GR.c.group_id == group_id,
        )
    )
    if access != "none":
        conn.execute(
            _GR.insert(),
            {"queue_id": queue_id, "agent_id": agent_id, "group_id": group_id, "access": access},
        )
    return label


def listing(conn: Connection) -> list[dict[str, Any]]:
    groups: dict[int, list[str]] = {}
    for agent_id, name in conn.execute(
        select(_M.c.agent_id, _G.c.name).join(_G, _G.c.id == _M.c.group_id).order_by(_G.c.name)
    ):
        groups.setdefault(agent_id, []).append(name)
    return [
        {
            "login": a.login,
            "address": a.address,
            "name": a.name,
            "enabled": a.enabled,
            "groups": groups.get(a.id, []),
        }
        for a in map(_ref, conn.execute(select(*_COLUMNS).order_by(_A.c.login)))
    ]


def grants(conn: Connection) -> dict[str, list[str]]:
    """Queue name -> ["alice:rw", "@support:ro", ...]."""
    Q = Queue.__table__
    rows = conn.execute(
        select(Q.c.name, _A.c.login, _G.c.name, _GR.c.access)
        .select_from(_GR)
        .join(Q, Q.c.id == _GR.c.queue_id)
        .outerjoin(_A, _A.c.id == _GR.c.agent_id)
        .outerjoin(_G, _G.c.id == _GR.c.group_id)
        .order_by(Q.c.name, _A.c.login, _G.c.name)
    )
    out: dict[str, list[str]] = {}
    for queue, login, group, access in rows:
        out.setdefault(queue, []).append(f"{login or '@' + group}:{access}")
    return out


# -- access (the pipeline) -----------------------------------------------------------------


def access(conn: Connection, agent_id: int, queue_id: int) -> str | None:
    """rw, ro or None: the best grant of the agent or its groups, if the agent is enabled."""
    found = set(conn.execute(_SEL_ACCESS, {"a": agent_id, "q": queue_id}).scalars())
    return "rw" if "rw" in found else ("ro" if "ro" in found else None)


def workers(conn: Connection, queue_id: int) -> list[AgentRef]:
    """Enabled agents with rw access to a queue, directly or through a group."""
    rows = conn.execute(_SEL_WORKERS, {"q": queue_id})
    return [_ref(r) for r in rows]


# Correlated to the agent of the statement it stands in, two levels up in _SEL_WORKERS:
# left to auto-correlation it took its own FROM agent there, and every agent counted
# as a member of every group (all agents got every granted queue's mail).
_MEMBER_OF = select(_M.c.group_id).where(_M.c.agent_id == _A.c.id).correlate(_A)
_SEL_ACCESS = (
    select(_GR.c.access)
    .select_from(_GR)
    .join(_A, _A.c.id == bindparam("a"))
    .where(
        _A.c.enabled.is_(True),
        _GR.c.queue_id == bindparam("q"),
        (_GR.c.agent_id == _A.c.id) | _GR.c.group_id.in_(_MEMBER_OF.scalar_subquery()),
    )
)
_SEL_WORKERS = (
    select(*_COLUMNS)
    .where(
        _A.c.enabled.is_(True),
        select(_GR.c.id)
        .where(
            _GR.c.queue_id == bindparam("q"),
            _GR.c.access == "rw",
            (_GR.c.agent_id == _A.c.id) | _GR.c.group_id.in_(_MEMBER_OF.scalar_subquery()),
        )
        .exists(),
    )
    .order_by(_A.c.login)
)


def keys_of(conn: Connection, agent_id: int) -> set[str]:
    """The fingerprints whose signature proves this agent's command mail."""
    found = conn.execute(select(_A.c["keys"]).where(_A.c.id == agent_id)).scalar() or ""
    return {k.upper() for k in found.split()}


def set_key(session: Session, who: str, fingerprint: str, *, add: bool) -> AgentRef:
    """Register (or drop) a key for an agent (login or address)."""
    conn = session.connection()
    agent = find(conn, who)
    if agent is None:
        raise AgentError(f"no agent {who!r}")
    found = keys_of(conn, agent.id)
    fingerprint = fingerprint.upper().replace(" ", "").replace(":", "")
    if not add and fingerprint not in found:
        raise AgentError(f"{agent.login} has no key {fingerprint}")
    found = found | {fingerprint} if add else found - {fingerprint}
    conn.execute(update(_A).where(_A.c.id == agent.id).values(keys="\n".join(sorted(found))))
    return agent
