"""Customer companies (OTRS's customer companies, Zammad's organisations).

A company has a name, mail domains and members named by address.  A customer belongs
to the company that names its address as a member, else to the company of its mail
domain; a free-mail domain never makes a company (everybody's gmail.com is nobody's
contract).  The customer row keeps the answer (customer.company_id), set in the very
statement that makes a new customer (customer_upsert) and recomputed for the customers
a change concerns; tickets carry their customer's company for the reports, search and
the SLA, and follow when the company changes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from otrs_mailgate.mail import addresses
from otrs_mailgate.store.models import Company, CompanyDomain, CompanyMember, Customer, Ticket

# Domains where anyone may get an address: never a company's domain.
FREEMAIL = frozenset(
    """
    aol.com gmail.com googlemail.com hotmail.com hotmail.de hotmail.fr live.com live.de
    outlook.com outlook.de msn.com yahoo.com yahoo.de yahoo.fr yahoo.co.uk ymail.com
    icloud.com me.com mac.com gmx.de gmx.net gmx.at gmx.ch gmx.com web.de t-online.de
    freenet.de arcor.de posteo.de posteo.net mailbox.org protonmail.com proton.me pm.me
    tutanota.com tuta.io zoho.com yandex.ru yandex.com mail.ru bk.ru inbox.ru list.ru
    rambler.ru qq.com 163.com 126.com sina.com orange.fr wanadoo.fr free.fr laposte.net
    sfr.fr libero.it virgilio.it tiscali.it seznam.cz wp.pl o2.pl onet.pl interia.pl
    bluewin.ch hushmail.com fastmail.com fastmail.fm gmx.us mail.com email.com
    """.split()
)

_C, _D, _M = Company.__table__, CompanyDomain.__table__, CompanyMember.__table__
_CU, _T = Customer.__table__, Ticket.__table__


class CompanyError(ValueError):
    """A request about companies that cannot be done; the message says why."""


@dataclass(frozen=True)
class CompanyInfo:
    id: int
    name: str
    domains: list[str]
    members: list[str]
    customers: int
    open_tickets: int


def domain_of(address: str) -> str:
    return addresses.ascii_lower(address.rpartition("@")[2]).rstrip(".")


def _member_or_domain() -> Any:
    """The company of :member / :domain, member first (a subquery for the upsert)."""
    member = select(_M.c.company_id).where(_M.c.address == bindparam("member"))
    by_domain = select(_D.c.company_id).where(_D.c.domain == bindparam("domain"))
    return func.coalesce(member.scalar_subquery(), by_domain.scalar_subquery())


@functools.cache
def customer_upsert(dialect: str) -> Any:
    """INSERT the sender as a customer, or find it: (id, language, company_id).  A new
    customer gets its company in the same statement (no round trip more a mail); the
    parameters are those of the columns, and `member` (the address) and `domain`."""
    ins = (postgresql if dialect == "postgresql" else sqlite).insert(_CU)
    values = {
        "address": bindparam("address"),
        "name": bindparam("name"),
        "language": bindparam("language"),
        "created_at": bindparam("created_at"),
        "company_id": _member_or_domain(),
    }
    return (
        ins.values(values)
        .on_conflict_do_update(
            index_elements=[_CU.c.address], set_={"address": ins.excluded.address}
        )
        .returning(_CU.c.id, _CU.c.language, _CU.c.company_id)
    )


def _id(conn: Connection, name: str) -> int:
    found = conn.execute(select(_C.c.id).where(func.lower(_C.c.name) == name.lower())).scalar()
    if found is None:
        raise CompanyError(f"no company {name!r} (`otrs-mailgate company list`)")
    return int(found)


def find(conn: Connection, name: str) -> int | None:
    try:
        return _id(conn, name)
    except CompanyError:
        return None


def domain_form(domain: str) -> str:
    """A domain as customer addresses store it (IDNA A-labels, lower case, no trailing
    dot), so `bücher.example` matches mail from `x@xn--bcher-kva.example`."""
    text = domain.strip().lstrip("@")
    if not text or "@" in text or any(c.isspace() for c in text):
        raise CompanyError(f"{domain!r} is not a mail domain")
    try:
        return domain_of(addresses.canonical(f"x@{text}"))
    except addresses.Unanswerable as exc:
        raise CompanyError(f"{domain!r} is not a mail domain: {exc}") from None


def _check_domain(conn: Connection, domain: str) -> str:
    domain = domain_form(domain)
    if "." not in domain:
        raise CompanyError(f"{domain!r} is not a mail domain")
    if domain in FREEMAIL:
        raise CompanyError(f"{domain} is a free-mail domain: add its customers as members")
    owner = conn.execute(
        select(_C.c.name).join(_D, _D.c.company_id == _C.c.id).where(_D.c.domain == domain)
    ).scalar()
    if owner is not None:
        raise CompanyError(f"{domain} belongs to company {owner} already")
    return domain


def add(session: Session, name: str, domains: list[str]) -> int:
    conn = session.connection()
    name = name.strip()
    if not name or len(name) > 200:
        raise CompanyError("a company needs a name of 1 to 200 characters")
    if find(conn, name) is not None:
        raise CompanyError(f"company {name!r} exists already")
    checked = [_check_domain(conn, d) for d in domains]
    company_id = int(conn.execute(_C.insert().values(name=name).returning(_C.c.id)).scalar_one())
    for domain in checked:
        conn.execute(_D.insert().values(domain=domain, company_id=company_id))
    reassign(session, domains=checked)
    return company_id


def add_domain(session: Session, name: str, domain: str) -> str:
    conn = session.connection()
    company_id = _id(conn, name)
    domain = _check_domain(conn, domain)
    conn.execute(_D.insert().values(domain=domain, company_id=company_id))
    reassign(session, domains=[domain])
    return domain


def remove_domain(session: Session, name: str, domain: str) -> str:
    domain = domain_form(domain)
    _unlink(session, _D.c.domain, name, domain, f"{domain} is not a domain of {name}")
    reassign(session, domains=[domain])
    return domain


def add_member(session: Session, name: str, address: str) -> str:
    conn = session.connection()
    company_id = _id(conn, name)
    try:
        address = addresses.canonical(address)
    except addresses.Unanswerable as exc:
        raise CompanyError(f"{address!r}: {exc}") from None
    other = conn.execute(
        select(_C.c.name).join(_M, _M.c.company_id == _C.c.id).where(_M.c.address == address)
    ).scalar()
    if other is not None:
        raise CompanyError(f"{address} is a member of {other} already")
    conn.execute(_M.insert().values(address=address, company_id=company_id))
    reassign(session, members=[address])
    return address


def remove_member(session: Session, name: str, address: str) -> str:
    address = addresses.ascii_lower(address.strip())
    _unlink(session, _M.c.address, name, address, f"{address} is not a member of {name}")
    reassign(session, members=[address])
    return address


def _unlink(session: Session, key: Any, name: str, value: str, missing: str) -> None:
    """Delete the company's domain or member row; CompanyError(missing) without one."""
    company_id = _id(session.connection(), name)
    table = key.table
    gone = session.connection().execute(
        delete(table).where(key == value, table.c.company_id == company_id)
    )
    if not gone.rowcount:
        raise CompanyError(missing)


def remove(session: Session, name: str) -> None:
    """The company goes; its customers and tickets lose it (or join another by domain)."""
    conn = session.connection()
    company_id = _id(conn, name)
    conn.execute(delete(_D).where(_D.c.company_id == company_id))
    conn.execute(delete(_M).where(_M.c.company_id == company_id))
    affected = conn.execute(select(_CU.c.id).where(_CU.c.company_id == company_id)).scalars()
    ids = list(affected)
    conn.execute(update(_CU).where(_CU.c.company_id == company_id).values(company_id=None))
    conn.execute(update(_T).where(_T.c.company_id == company_id).values(company_id=None))
    conn.execute(delete(_C).where(_C.c.id == company_id))
    _recompute(session, ids)


def reassign(
    session: Session, *, domains: list[str] | None = None, members: list[str] | None = None
) -> int:
    """Recompute the company of the customers at these domains or addresses, and of
    their tickets; how many customers changed."""
    conn = session.connection()
    ids: set[int] = set()
    for domain in domains or []:
        rows = conn.execute(select(_CU.c.id).where(func.lower(_CU.c.address).like(f"%@{domain}")))
        ids.update(rows.scalars())
    for address in members or []:
        rows = conn.execute(select(_CU.c.id).where(func.lower(_CU.c.address) == address))
        ids.update(rows.scalars())
    return _recompute(session, sorted(ids))


def _recompute(session: Session, ids: list[int]) -> int:
    conn = session.connection()
    changed = 0
    for customer_id, address, current in conn.execute(
        select(_CU.c.id, _CU.c.address, _CU.c.company_id).where(_CU.c.id.in_(ids))
    ):
        wanted = of_address(conn, address)
        if wanted != current:
            conn.execute(update(_CU).where(_CU.c.id == customer_id).values(company_id=wanted))
            conn.execute(
                update(_T).where(_T.c.customer_id == customer_id).values(company_id=wanted)
            )
            changed += 1
    return changed


def of_address(conn: Connection, address: str) -> int | None:
    address = addresses.ascii_lower(address)
    found = conn.execute(
        select(_member_or_domain()), {"member": address, "domain": domain_of(address)}
    ).scalar()
    return int(found) if found is not None else None


def of_ticket(conn: Connection, ticket_id: int) -> int | None:
    return conn.execute(select(_T.c.company_id).where(_T.c.id == ticket_id)).scalar()


def name_of(conn: Connection, company_id: int | None) -> str:
    if company_id is None:
        return ""
    return conn.execute(select(_C.c.name).where(_C.c.id == company_id)).scalar() or ""


def listing(conn: Connection) -> list[CompanyInfo]:
    out = []
    for company_id, name in conn.execute(select(_C.c.id, _C.c.name).order_by(_C.c.name)):
        domains = conn.execute(
            select(_D.c.domain).where(_D.c.company_id == company_id).order_by(_D.c.domain)
        ).scalars()
        members = conn.execute(
            select(_M.c.address).where(_M.c.company_id == company_id).order_by(_M.c.address)
        ).scalars()
        customers = conn.execute(
            select(func.count()).select_from(_CU).where(_CU.c.company_id == company_id)
        ).scalar()
        open_tickets = conn.execute(
            select(func.count())
            .select_from(_T)
            .where(_T.c.company_id == company_id, _T.c.state.in_(("new", "open", "pending")))
        ).scalar()
        out.append(
            CompanyInfo(
                company_id, name, list(domains), list(members), customers or 0, open_tickets or 0
            )
        )
    return out
