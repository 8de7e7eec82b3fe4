"""Stage route: which queue a mail is for (envelope recipient, else its headers), and
what the configured filters decide about it (another queue, ignore, priority, ...)."""

from __future__ import annotations

import logging

from otrs_mailgate.config.schema import QueueConfig
from otrs_mailgate.ingest import filters
from otrs_mailgate.ingest.outcome import Failed, Outcome, UnknownRecipient
from otrs_mailgate.ingest.trip import Stop, Trip
from otrs_mailgate.mail.parse import ParsedMail
from otrs_mailgate.site import Site

log = logging.getLogger("otrs_mailgate.ingest")


def queue_for_mail(site: Site, recipient: str | None, mail: ParsedMail) -> QueueConfig:
    """The queue of the envelope recipient; without one (an import), of the first
    address in To, Cc, Delivered-To, X-Original-To or Envelope-To that is ours.  Any
    other address at one of our domains goes to the raw queue (system.catch_all)."""
    if recipient:
        queue = site.accepts(recipient)
        if queue is None:
            raise UnknownRecipient(recipient)
        return queue
    candidates = list(mail.to) + list(mail.cc)
    for name in ("Delivered-To", "X-Original-To", "Envelope-To"):
        candidates.append(mail.header(name))
    for candidate in candidates:
        queue = site.queue_for(candidate) if candidate else None
        if queue is not None:
            return queue
    for candidate in candidates:
        queue = site.accepts(candidate) if candidate else None
        if queue is not None:
            return queue
    raise UnknownRecipient(", ".join(c for c in candidates if c) or "(no recipient)")


def decide(site: Site, mail: ParsedMail) -> filters.Decision | None:
    """What the configured filters (or a trusted relay's X-OTRS headers) decide."""
    if not site.config.filter and not site.config.system.trusted_relay:
        return None
    return filters.decide(site.config, mail)


def route(trip: Trip) -> Stop:
    site, item, mail = trip.site, trip.item, trip.mail
    try:
        target = site.config.queue_by_name(item.queue) if item.queue else None
        if item.queue and target is None:
            raise UnknownRecipient(f"queue {item.queue!r}")
        target = target or queue_for_mail(site, trip.recipient, mail)
    except UnknownRecipient as exc:
        return Failed(trip.recipient or "", exc, Outcome.UNKNOWN_RECIPIENT)
    trip.key = site.delivery_key(trip.recipient) if trip.recipient else f"queue:{target.name}"
    trip.decision = decision = decide(site, mail)
    if decision is not None and decision.ignore:
        log.info("ignored by filter %r: <%s>", decision.name, mail.message_id)
        trip.queue = target
        trip.notes.append(f"ignored by filter {decision.name}")
        return trip.result(Outcome.IGNORED)
    if decision is not None and decision.queue:
        target = site.config.queue_by_name(decision.queue) or target
    trip.queue = target
    return None
