"""Customers: made on first contact by the pipeline; here, what an admin may change."""

from __future__ import annotations

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from otrs_mailgate.mail import addresses
from otrs_mailgate.store.models import Customer, TicketCc


class CustomerError(ValueError):
    """A request about a customer that cannot be done; the message says why."""


def set_language(session: Session, address: str, language: str, known: frozenset[str]) -> None:
    """The language of the automatic mails a customer gets from now on."""
    if language not in known:
        raise CustomerError(
            f"no templates for language {language!r}; have: {', '.join(sorted(known))}"
        )
    done = session.execute(
        update(Customer)
        .where(Customer.address == addresses.ascii_lower(address.strip()))
        .values(language=language)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        raise CustomerError(f"no customer {address!r} (customers are made by their first mail)")


def contact(conn: Connection, customer_id: int | None) -> tuple[str, str, str]:
    """(address, name, language) of a customer; empty strings for none."""
    if customer_id is None:
        return "", "", ""
    row = conn.execute(
        select(Customer.address, Customer.name, Customer.language).where(Customer.id == customer_id)
    ).one()
    return row.address, row.name, row.language or ""


def label(conn: Connection, customer_id: int | None) -> str:
    """A customer as an agent reads it: `Name <address>`."""
    address, name, _ = contact(conn, customer_id)
    return f"{name} <{address}>" if name else (address or "(unknown)")


def is_party(conn: Connection, ticket_id: int, customer_id: int | None, address: str) -> bool:
    """The address is the ticket's customer or one of its Cc: somebody who may read it."""
    address = addresses.ascii_lower(address.strip())
    if not address:
        return False
    if contact(conn, customer_id)[0] == address:
        return True
    found = conn.execute(
        select(TicketCc.id).where(TicketCc.ticket_id == ticket_id, TicketCc.address == address)
    )
    return found.first() is not None
