"""Which of our mails go encrypted or signed (issue 29), decided with the outbox row:

- an answer of any kind to a customer who wrote encrypted (the ticket's latest mail
  from them came encrypted) is encrypted to every recipient's key; without a key for
  one of them the queue's `without_key` says: "hold" (not sent; for an agent's answer
  the transcript says why) or "plain";
- a queue with `sign = true` signs everything it sends with its own key.
The Sender applies it when it sends (crypto/wrap.py).
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from otrs_mailgate.crypto import wrap
from otrs_mailgate.mail.compose import Response
from otrs_mailgate.mail.parse import Protection
from otrs_mailgate.site import Site
from otrs_mailgate.store.models import Article

_SEL_LAST_CUSTOMER = (
    select(Article.protection)
    .where(
        Article.ticket_id == bindparam("t"),
        Article.sender_type == "customer",
        Article.direction == "in",
    )
    .order_by(Article.id.desc())
    .limit(1)
)


def wrote_encrypted(session: Session, ticket_id: int | None) -> bool:
    if ticket_id is None:
        return False
    found = session.connection().execute(_SEL_LAST_CUSTOMER, {"t": ticket_id}).scalar()
    shield = Protection.from_json(found or "")
    return shield is not None and shield.encrypted


def decide(
    session: Session,
    site: Site,
    ticket_id: int | None,
    for_customer: bool,
    response: Response,
    encrypted: bool | None = None,
) -> tuple[Response, str]:
    """(the response marked to be encrypted and/or signed, why it must be held or "");
    `encrypted`: whether the customer wrote encrypted, when the caller knows (no query)."""
    queue = site.queue_for(response.from_addr)
    keyring = site.keyring
    sign_as = ""
    if queue is not None and queue.sign and wrap.can_sign(keyring, response.from_addr):
        sign_as = response.from_addr
    encrypt = False
    held = ""
    if encrypted is None and for_customer:
        encrypted = wrote_encrypted(session, ticket_id)
    if for_customer and encrypted:
        missing = [r for r in response.recipients if not wrap.can_encrypt(keyring, r)]
        if not missing:
            encrypt = True
        elif queue is None or queue.without_key == "hold":
            held = (
                f"the customer wrote encrypted and we hold no key for {', '.join(missing)} "
                '(`otrs-mailgate keys import`, or the queue\'s without_key = "plain")'
            )
    if not encrypt and not sign_as:
        return response, held
    return dataclasses.replace(response, encrypt=encrypt, sign_as=sign_as), held
