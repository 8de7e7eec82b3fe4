"""Phone tickets: what an agent took down by phone, entered as the mail the customer
would have written, through the same pipeline as every mail."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from otrs_mailgate.config.schema import Config
from otrs_mailgate.ingest.pipeline import Pipeline, Result
from otrs_mailgate.mail import addresses
from otrs_mailgate.mail.parse import POLICY
from otrs_mailgate.mail.subject import clean
from otrs_mailgate.store.models import utcnow


def create(
    config: Config, customer: str, subject: str, queue: str, body: str, *, ack: bool
) -> Result:
    """A phone ticket: a mail as the customer would have written it, through the pipeline.

    Its Message-ID is in phone.<our domain>, which tells it from mail we sent
    (classify treats our own domain as automatic) and from the customer's own mail.
    """

    name, address = parseaddr(customer)
    if not addresses.is_address(address):
        raise ValueError(f"{customer!r} is not a mail address")
    queue_config = config.queue_by_name(queue)
    assert queue_config is not None
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(clean(name), addr_spec=address)
    msg["To"] = queue_config.addresses[0]
    msg["Subject"] = clean(subject)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid("phone", domain=f"phone.{config.system.domain}")
    msg["X-OTRS-Mailgate-Origin"] = "phone"
    msg.set_content(body or "(entered by phone)")
    pipeline = Pipeline(config, customer_ack=ack)  # the agents are told either way
    try:
        return pipeline.deliver_one(msg.as_bytes(), queue_config.addresses[0], address, queue=queue)
    finally:
        pipeline.engine.dispose()
