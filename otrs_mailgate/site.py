"""The running configuration, frozen: config, tag format, templates, queue addresses.

One Site is built per configuration and swapped whole on SIGHUP (a batch that
started with the old one finishes with the old one); nothing is changed on it
attribute by attribute. What only the database knows (queue ids, the links'
key) is read once, when first needed, and kept in the Site it belongs to.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, sessionmaker

from otrs_mailgate.config.schema import Config, QueueConfig
from otrs_mailgate.crypto.keyring import Keyring
from otrs_mailgate.mail import addresses as addr
from otrs_mailgate.mail import tokens
from otrs_mailgate.mail.compose import Responder
from otrs_mailgate.mail.subject import TagFormat
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Queue, utcnow
from otrs_mailgate.tickets import links


def pinned_keys(path: str) -> dict[str, bytes]:
    """`selector._domainkey.domain TXT-record` lines; blank lines and # comments skipped."""
    keys: dict[str, bytes] = {}
    if not path:
        return keys
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, record = line.partition(" ")
        keys[name.strip().rstrip(".").lower()] = record.strip().strip('"').encode()
    return keys


@dataclass(frozen=True)
class Site:
    config: Config
    tags: TagFormat
    responder: Responder
    addresses: Mapping[str, QueueConfig]
    own_addresses: frozenset[str]
    own_domains: frozenset[str]
    queue_domains: frozenset[str]
    dkim_keys: Mapping[str, bytes]
    keyring: Keyring | None = None  # OpenPGP and S/MIME keys (crypto/keyring.py)
    # Read from the database on first use, then kept (see module docstring).
    _queue_ids: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    _secret: list[str] = field(default_factory=list, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def build(cls, config: Config) -> Site:
        by_address = {
            addr.normalize(a): q for q in config.queue if not q.junk for a in q.all_addresses
        }
        return cls(
            config=config,
            tags=TagFormat(config.ticket.hook, config.ticket.divider),
            responder=Responder(config),
            addresses=by_address,
            own_addresses=frozenset(by_address),
            own_domains=frozenset({config.system.domain.lower()}),
            queue_domains=frozenset(addr.domain_of(a) for a in by_address),
            dkim_keys=pinned_keys(config.agents.dkim_keys),
            keyring=Keyring.for_config(config),
        )

    # -- queues ------------------------------------------------------------------------

    def queue_for(self, recipient: str) -> QueueConfig | None:
        """Exact address, else the address without its +extension (token and plus
        addresses); any form Postfix accepts (quoted, trailing dot, source route)."""
        address = addr.normalize(recipient)
        return self.addresses.get(address) or self.addresses.get(addr.base(address))

    @property
    def catch_all(self) -> QueueConfig | None:
        """The raw queue, if one is configured."""
        name = self.config.system.catch_all
        return self.config.queue_by_name(name) if name else None

    def accepts(self, recipient: str) -> QueueConfig | None:
        """The queue mail to this recipient goes to before any filter: its own, else the
        raw queue for any other address at one of our domains; None: not ours."""
        queue = self.queue_for(recipient)
        if queue is None and self.is_our_domain(recipient):
            queue = self.catch_all
        return queue

    def is_our_domain(self, recipient: str) -> bool:
        """The address is at a domain one of our queues answers at."""
        return addr.domain_of(recipient) in self.queue_domains

    def delivery_key(self, recipient: str) -> str:
        """What one delivery of a message is counted against: the reply address with its
        token, else the plain queue address, so `hotline+1@`, `"hotline+2"@` and
        `hotline@` in one message make one ticket (issue 19, item 9)."""
        address = addr.normalize(recipient)
        return address if tokens.token_of(address) else addr.base(address)

    def queue_of(self, name: str) -> QueueConfig:
        """A ticket's queue by name; the first queue when the config no longer has it."""
        return self.config.queue_by_name(name) or self.config.queue[0]

    def is_own(self, address: str) -> bool:
        address = addr.normalize(address)
        return address in self.own_addresses or addr.base(address) in self.own_addresses

    def ensure_queues(self, sessions: sessionmaker[Session]) -> None:
        """Queue rows for the configured queues, in a transaction of their own.

        Called before an ingest transaction opens (never inside one: on SQLite a
        second writer would wait for the first), and cached only once committed, so
        a rolled-back delivery cannot leave an id behind that does not exist.
        """
        wanted = [q.name for q in self.config.queue]
        if all(name in self._queue_ids for name in wanted):
            return
        with db.transaction(sessions) as session:
            for name in wanted:
                db.insert_ignore(session, Queue, name=name, created_at=utcnow())
            rows = session.execute(select(Queue.name, Queue.id).where(Queue.name.in_(wanted)))
            ids = {name: id_ for name, id_ in rows}
        with self._lock:
            self._queue_ids.update(ids)

    def queue_id(self, name: str) -> int:
        return self._queue_ids[name]

    # -- links -------------------------------------------------------------------------

    def status_url(self, conn: Connection, ticket_id: int) -> str:
        """The customer's signed link to the ticket's status page, or "" without a page."""
        if not self.config.web.enabled:
            return ""
        if not self._secret:
            secret = links.site_secret(conn)
            with self._lock:
                self._secret[:] = [secret]
        return links.customer_url(self.config, self._secret[0], ticket_id)
