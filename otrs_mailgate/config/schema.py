"""Configuration: one TOML file plus environment overrides.

Lookup order for the file: the --config option, $OTRS_MAILGATE_CONFIG,
./otrs-mailgate.toml, /etc/otrs-mailgate/otrs-mailgate.toml; with none of them
the built-in defaults run a loopback-only system on SQLite under ./var.

Every scalar key can be overridden by the environment as
OTRS_MAILGATE_<SECTION>_<KEY> (e.g. OTRS_MAILGATE_DATABASE_URL).  A bad file
raises ConfigError carrying one line that names the key and the problem.
"""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from otrs_mailgate.config import locate as configfile
from otrs_mailgate.config.locate import template_dirs

_ADDRESS = re.compile(r'^[^@\s<>"(),;:\\]+@[^@\s<>"(),;:\\.]+(\.[^@\s<>"(),;:\\.]+)*$')


def is_address(text: str) -> bool:
    """The one rule for an address we are given (queue addresses, agents, cc+=, phone
    customers): local@domain, no spaces or separators, a domain of one or more labels,
    so `bob@localhost` is one, as our default `hotline@localhost` is."""
    return bool(_ADDRESS.match(text.strip()))


class ConfigError(Exception):
    """A configuration problem, already phrased as one line for the admin."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# What the texts an admin or agent writes (queue salutations and signatures, answer
# templates) may use; outbound/frames.py fills it, and a text naming anything else is
# refused when it is read, not when an answer is on its way.
FRAME_SAMPLE: dict[str, Any] = {
    "customer": {"name": "Cus Tomer", "address": "cus@example.org", "company": "ACME"},
    "ticket": {
        "number": "2026120710000017", "title": "Printer on fire", "tag": "[Ticket#1]",
        "queue": "Hotline", "state": "open", "priority": 3, "url": "",
    },
    "agent": {"name": "Alice Agent", "login": "alice", "address": "alice@example.com"},
    "queue": {"name": "Hotline", "display_name": "Hotline", "address": "hotline@example.com"},
    "customer_name": "Cus Tomer", "number": "2026120710000017", "title": "Printer on fire",
    "tag": "[Ticket#1]", "queue_name": "Hotline",
}  # fmt: skip


def template_problem(text: str) -> str:
    """Why a jinja text cannot be rendered with FRAME_SAMPLE's names, or ""."""
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    try:
        SandboxedEnvironment(undefined=StrictUndefined).from_string(text).render(FRAME_SAMPLE)
    except TemplateError as exc:
        return f"{type(exc).__name__}: {exc} (names: {', '.join(FRAME_SAMPLE)})"
    return ""


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class SystemConfig(_Section):
    id: str = Field("10", pattern=r"^\d{1,4}$", description="system id inside ticket numbers")
    domain: str = Field("localhost", min_length=1, description="our own mail domain")
    language: str = Field("en", pattern=r"^[a-z]{2}$")
    ticket_number: Literal["date", "random", "autoincrement"] = "date"
    templates: str = ""  # empty: the templates shipped with the package
    # At most this many automatic answers (acknowledgements, rejections) to one address
    # in any 24 hours: what is left of a mail loop after the RFC 3834 checks stops here.
    auto_response_limit: int = Field(10, ge=0)
    # The host name our MTA writes into Received for mail from a relay whose X-OTRS-Queue,
    # X-OTRS-Priority and X-OTRS-Ignore headers we may believe; empty: believe none.
    trusted_relay: str = ""
    # The days of search filters (created:2026-01-05) and of reports are days here.
    timezone: str = "UTC"
    # The keys of the history's HMAC chain, kept outside the database (`id hexkey` lines,
    # the last one signs; `audit rotate-key` adds one); made on first use.  Empty:
    # audit.keys beside the config file; without a config file, beside an SQLite file.
    audit_keys: str = ""
    # OTRS's "raw" queue: mail to any other address at a domain of our queues lands in
    # this queue (a [[queue]] name) unless a filter places it; empty: such mail is refused.
    catch_all: str = ""
    # DNS servers ("host" or "host:port") for the SPF, DKIM and DMARC lookups that tell
    # whether a sender is who it says; empty: the system's resolver.
    dns_servers: list[str] = Field(default_factory=list)

    _zone = field_validator("timezone")(lambda cls, value: _time_zone(value))


class TicketConfig(_Section):
    hook: str = Field("Ticket#", min_length=1)
    divider: str = ""


DATABASE_FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"
_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")


class DatabaseConfig(_Section):
    url: str = "sqlite:///var/otrs-mailgate.sqlite"
    # SQLite only: wait this long for a lock before answering "try again later".
    busy_timeout_ms: int = Field(5000, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        """Only the databases we run on, said in one line (mysql:// or a typo such as
        sqllite:/// gave a traceback from every command)."""
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in _SCHEMES:
            close = difflib.get_close_matches(scheme.lower(), ["sqlite", "postgresql"], n=1)
            hint = f" (did you mean {close[0]}://?)" if close and sep else ""
            named = f"{scheme}://" if sep else "a URL without a scheme"
            raise ValueError(f"{named} is no database we support{hint}; use {DATABASE_FORMS}")
        if scheme.lower() == "sqlite" and not rest.startswith("/"):
            raise ValueError(f"a SQLite URL has three slashes and a path: {DATABASE_FORMS}")
        if scheme.lower() != "sqlite" and not rest.strip("/"):
            raise ValueError(f"no server and database named; use {DATABASE_FORMS}")
        return value


class LMTPConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8024, ge=1, le=65535)
    socket: str = ""  # a UNIX socket path instead of host/port
    max_message_size: int = Field(25 * 1024 * 1024, ge=1024)
    # The header block (up to the first empty line): over this, LMTP and the milter
    # refuse the mail with 552 5.3.4 (Postfix's header_size_limit is 100 KB a header;
    # no real mail's whole header comes near this).
    max_header_size: int = Field(256 * 1024, ge=4096)
    # MIME parts made into attachments, for every entry (LMTP, pipe, import): beyond
    # this the rest of the mail stays in its raw bytes only (15,000 parts took seconds
    # of parsing and as many rows while other mail waited).
    max_parts: int = Field(1000, ge=10)
    # Committer threads: 0 picks 1 for SQLite (one writer anyway), 4 for PostgreSQL.
    # They take turns: a second batch is stored beside the first only once the first
    # has taken 0.25 s (a lock, a slow disk, a huge mail); until then mail gathers.
    workers: int = Field(0, ge=0, le=64)


class MilterConfig(_Section):
    """The milter Postfix asks while the sender is still connected (smtpd_milters)."""

    enabled: bool = True  # `serve` runs it beside the LMTP server
    host: str = "127.0.0.1"
    port: int = Field(8025, ge=1, le=65535)
    socket: str = ""  # a UNIX socket path instead of host/port
    # Each check can be turned off; see the README for the SMTP reply each gives.
    dkim: bool = True  # verify, write our Authentication-Results, drop forged ones
    tokens: bool = True  # refuse bad command mail to agents' reply addresses
    loops: bool = True  # refuse mail carrying our own X-Loop
    size: bool = True  # refuse mail over its queue's size limit
    new_tickets: bool = True  # queues with new_tickets = "reject": refuse unknown senders
    ticket_header: bool = True  # X-OTRS-Mailgate-Ticket on mail that follows up a ticket
    # Mails to our addresses an hour from one envelope sender / one client IP (0: any).
    max_per_hour_sender: int = Field(100, ge=0)
    max_per_hour_client: int = Field(500, ge=0)


class WebConfig(_Section):
    """The read-only status page (and /metrics) inside `serve`."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # How mail links to the page: the address customers and agents reach it under
    # (a reverse proxy's https://...); empty: http://host:port.
    public_url: str = Field("", pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$")
    customer_link_days: int = Field(30, ge=1, le=3650)  # the link in the acknowledgement
    agent_link_days: int = Field(1, ge=1, le=30)  # `agent link`: until the end of this day
    session_hours: int = Field(12, ge=1, le=24 * 30)  # the agent's cookie after login
    # Who may read /metrics: client networks (the page itself may face the world).
    metrics_from: list[str] = ["127.0.0.0/8", "::1/128"]

    @field_validator("metrics_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an address or network") from None
        return value

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class SMTPConfig(_Section):
    """Where the outbox sends mail: the local MTA."""

    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    timeout: float = Field(30.0, gt=0)
    # Retry a 4xx answer or an unreachable MTA this often, backing off exponentially.
    max_attempts: int = Field(12, ge=1)
    backoff_seconds: float = Field(60.0, gt=0)
    # Mails sent at once, each over its own connection: an MTA takes a mail in some
    # milliseconds (it writes it to disk first), so one connection at a time falls
    # behind the mail coming in.
    connections: int = Field(4, ge=1, le=50)


class DKIMConfig(_Section):
    """Sign outgoing mail when a key is configured (`otrs-mailgate dkim keygen`)."""

    selector: str = ""
    domain: str = ""  # default: system.domain
    key_file: str = ""


class CryptoConfig(_Section):
    """OpenPGP and S/MIME (issue 29): where the queues' keys and the customers' public
    keys and certificates are kept, and the passphrases of the queues' private keys."""

    # A folder of ours (mode 0700): gnupg/ is the GnuPG home, smime/ the certificates.
    # Default: keys/ beside the config file (beside an SQLite database without one).
    key_dir: str = ""
    # Lines of "<fingerprint or queue name> <passphrase>", outside the database (mode
    # 0600); a queue key made by `keys generate` gets its line here.
    passphrase_file: str = ""


class SpamConfig(_Section):
    """Spam as the mail server's own filter judges it (rspamd, or SpamAssassin through
    spamass-milter), believed only where our MTA wrote the verdict (mail/spam.py)."""

    # Which filter's verdict headers are read: "" none, "rspamd" (X-Spamd-Result with
    # the X-Rspamd-Queue-Id of our own Received), "spamassassin" (spamass-milter's
    # X-Spam-Status with its X-Spam-Checker-Version naming our MTA).
    filter: Literal["", "rspamd", "spamassassin"] = ""
    # The host name(s) our Postfix writes as "by" in its Received header (myhostname):
    # only a verdict tied to our own Received is believed.
    mta_hostnames: list[str] = Field(default_factory=list)
    # Mail scoring at least this is spam: filed in the Junk queue, silent.
    score: float = 6.0
    # Refuse at SMTP time from this score (0: never); the filter in front does it (rspamd's
    # reject action, spamass-milter -r), postfix-config and the README say how.
    reject_score: float = 0.0
    junk_queue: str = "Junk"  # made on init; "" keeps spam in the queues it came to
    keep_days: int = Field(30, ge=1)  # Junk's mail text and files are purged after this
    # Where `postfix-config` puts rspamd's milter ahead of ours, and where spam/ham by
    # agents is taught (rspamd's controller); empty: not used.
    rspamd_milter: str = ""  # e.g. inet:127.0.0.1:11332
    rspamd_controller: str = ""  # e.g. http://127.0.0.1:11334
    rspamd_password: str = ""
    # SpamAssassin is taught with this command (the raw mail on stdin), e.g.
    # "spamc --learntype=spam" is run with spam/ham put in: "spamc --learntype={kind}".
    learn_command: str = ""


class AgentsConfig(_Section):
    """How agents' command mails are recognised (DESIGN.md, "Agents by mail")."""

    # required: a command mail needs a DKIM signature that passes and is aligned with
    # its From domain (or a trusted Authentication-Results saying so); optional: the
    # token and the From address suffice.
    dkim: Literal["required", "optional"] = "required"
    # Authentication-Results headers are believed only with this authserv-id (the one
    # our milter writes); empty: none are believed.
    authserv_id: str = ""
    # A file of pinned DKIM keys, one "selector._domainkey.domain TXT-record" per line:
    # those keys are used without asking DNS (which an attacker might spoof).
    dkim_keys: str = ""
    token_days: int = Field(90, ge=1, le=3650)  # how long a reply address works
    lock_minutes: int = Field(120, ge=1)  # a lock lapses after this long without activity
    date_window_hours: int = Field(48, ge=1)  # a command mail's Date must be this recent


class FilterConfig(_Section):
    """A PostMaster filter: when every header regex matches, apply what it sets."""

    name: str = Field(min_length=1)
    match: dict[str, str] = Field(min_length=1)  # header name (or "body") -> regex
    queue: str | None = None
    priority: int | None = Field(None, ge=1, le=5)
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")
    ignore: bool = False  # store nothing, answer nothing (known spam sources)
    auto: bool = False  # treat as machine mail: stored, never answered

    @field_validator("match")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for header, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{header}: {pattern!r} is not a regular expression: {exc}"
                ) from None
        return value


class WeekHours(_Section):
    """Working hours per weekday as "HH:MM-HH:MM" ranges (24:00 ends at midnight)."""

    mon: list[str] = ["08:00-17:00"]
    tue: list[str] = ["08:00-17:00"]
    wed: list[str] = ["08:00-17:00"]
    thu: list[str] = ["08:00-17:00"]
    fri: list[str] = ["08:00-17:00"]
    sat: list[str] = []
    sun: list[str] = []

    @field_validator("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        spans = sorted((parse_range(r) for r in value), key=lambda span: span[0])
        for (_, end), (start, _) in itertools.pairwise(spans):
            if end is None or end > start:
                raise ValueError(f"ranges overlap: {', '.join(value)}")
        return value


class CalendarConfig(_Section):
    """A business calendar for SLAs: time zone, weekly hours, holidays, closed days."""

    name: str = Field("default", min_length=1)
    timezone: str = "UTC"
    hours: WeekHours = WeekHours()
    holidays: str = ""  # country[-subdivision] of the holidays package, e.g. "DE-BY"
    closed: list[str] = []  # extra closed days, YYYY-MM-DD

    _zone = field_validator("timezone")(lambda cls, value: _time_zone(value))

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, value: str) -> str:
        if value:
            import holidays

            country, _, subdiv = value.partition("-")
            try:
                holidays.country_holidays(country, subdiv=subdiv or None)
            except NotImplementedError as exc:
                raise ValueError(f"{value!r}: {exc}") from None
        return value

    @field_validator("closed")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        for day in value:
            try:
                dt.date.fromisoformat(day)
            except ValueError:
                raise ValueError(f"{day!r} is not a date (YYYY-MM-DD)") from None
        return value


LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # an agent's login
RECIPIENT_WORDS = ("queue", "owner")


def _recipients(value: list[str]) -> list[str]:
    """queue (its rw agents), owner (or the queue while nobody owns the ticket), an
    agent's login, or any mail address (an SMS gateway, a manager without a login)."""
    for who in value:
        if who in RECIPIENT_WORDS or "@" in who:
            continue
        if not LOGIN.match(who):
            raise ValueError(f"{who!r}: use queue, owner, an agent's login or a mail address")
    return value


class EscalationLevel(_Section):
    """One step of escalation after a deadline passed: who hears of it, with which mail."""

    # Working minutes after the previous level (level 1: after the deadline itself).
    after: int = Field(0, ge=0)
    to: list[str] = ["queue"]
    template: str = Field("escalation", pattern=r"^[a-z0-9_]+$")

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        return _recipients(value)


class SLAConfig(_Section):
    """Service level: working minutes of a calendar for the first response, each update
    after the customer wrote, and the solution; 0 means no such limit."""

    name: str = Field(min_length=1)
    queues: list[str] = Field(min_length=1)
    priorities: list[int] = [1, 2, 3, 4, 5]
    # customer companies (`otrs-mailgate company add`) whose tickets this SLA serves, as
    # a contract's faster times; empty: every ticket, with or without a company
    companies: list[str] = []
    calendar: str = "default"
    first_response: int = Field(0, ge=0)
    update: int = Field(0, ge=0)
    solution: int = Field(0, ge=0)
    # A warning when this share of a time has passed (0: none); it goes to warn_to.
    notify_before: int = Field(80, ge=0, le=99)
    warn_to: list[str] = ["owner"]
    warn_template: str = Field("escalation_warning", pattern=r"^[a-z0-9_]+$")
    # Level 1 at the deadline, each further level `after` working minutes later.
    escalation: list[EscalationLevel] = Field(
        default_factory=lambda: [EscalationLevel()], min_length=1
    )

    @field_validator("warn_to")
    @classmethod
    def _warn_to(cls, value: list[str]) -> list[str]:
        return _recipients(value)


class QueueConfig(_Section):
    name: str = Field(min_length=1, max_length=200)
    addresses: list[str] = Field(min_length=1)
    # Former addresses: mail to them (a customer's reply to an old acknowledgement, an
    # agent's open reply address) is still taken and filed in this queue, and Postfix
    # still accepts them; nothing new is sent from them (`queue address retire`).
    retired_addresses: list[str] = Field(default_factory=list)
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")
    # The acknowledgement of a new ticket (and any automatic answer of this queue):
    # "authenticated" only to a sender DMARC, aligned SPF or aligned DKIM vouches for
    # (others' answers are held, see outbox list --held), "always", or false: none.
    acknowledge: Literal["authenticated", "always"] | bool = "authenticated"
    junk: bool = Field(False, exclude=True)  # the spam queue (made, never configured)
    # What a follow-up to a closed ticket does: reopen it, open a new ticket linked
    # to it, or file it on the closed ticket and tell the sender to write anew.
    follow_up_closed: Literal["reopen", "new", "reject"] = "reopen"
    display_name: str = ""
    # Machine mail (auto-replies, lists, bounces) that follows up no ticket: make a
    # ticket of it (true), or only keep its bytes (false, the default).
    auto_tickets: bool = False
    # Auto responses, as OTRS has them: the acknowledgement of a new ticket (acknowledge),
    # an answer to every follow-up, and for queues that take no new tickets ("reject"),
    # a rejection to senders who are not yet customers (their mail is kept, no ticket).
    answer_follow_ups: bool = False
    new_tickets: Literal["accept", "reject"] = "accept"
    # A follow-up to a ticket closed longer ago than this opens a new ticket linked to
    # it, whatever follow_up_closed says (0: no limit).
    reopen_days: int = Field(0, ge=0)
    # When a pending ticket's time is up: remind its owner (or the queue) and open it
    # again, or close it and tell the customer (OTRS: pending auto close).
    pending: Literal["remind", "close"] = "remind"
    # Larger mail to this queue is refused (0: lmtp.max_message_size).
    max_message_size: int = Field(0, ge=0)
    # What the milter answers (550 5.7.1) a new sender when new_tickets = "reject".
    reject_text: str = Field(
        "This address takes no new requests; please use our contact form.",
        min_length=1,
        max_length=400,
        pattern=r"^[^\r\n]*$",
    )
    # Offer the three knowledge base entries that best match the customer's mail at the
    # end of the acknowledgement (faq.py; entries of this queue or of every queue).
    suggest_faq: bool = False
    # What the customer is told by mail when an agent's command does it (without a
    # reply in the same mail): any of closed, pending, reopened, merged, moved.
    tell_customer: list[Literal["closed", "pending", "reopened", "merged", "moved"]] = [
        "closed",
        "pending",
        "reopened",
        "merged",
        "moved",
    ]
    # An agent's answer by mail ends with a signature: "replace" drops the one the
    # agent's mail client wrote (after `-- `, or "Sent from my iPhone") and signs with
    # the agent's name and the queue; "keep" sends the agent's own and adds none.
    agent_signature: Literal["replace", "keep"] = "replace"
    # Mail encrypted to the queue: its decrypted text is searchable only with this on
    # (the article shows it either way; the raw mail is stored as it came).
    index_encrypted: bool = False
    # An answer to a customer who wrote encrypted goes encrypted to their key (OpenPGP,
    # else S/MIME); without one: "hold" (not sent, the agent is told) or "plain".
    without_key: Literal["hold", "plain"] = "hold"
    # Sign everything this queue sends with its own key (OpenPGP, else S/MIME).
    sign: bool = False
    # Frame of every answer an agent sends the customer by mail (not notes, not the
    # acknowledgements): jinja templates by language ("en", "de", ...; "" for any other),
    # with customer, ticket, agent and queue (README "Salutations and signatures").
    # With a signature here the agent's own mail-client signature is dropped, unless
    # agent_signature = "keep" (then theirs goes and this one is left out).
    salutation: dict[str, str] = {}
    signature: dict[str, str] = {}

    @field_validator("salutation", "signature")
    @classmethod
    def _frames(cls, value: dict[str, str]) -> dict[str, str]:
        for language, text in value.items():
            if language and not re.fullmatch(r"[a-z]{2}", language):
                raise ValueError(f"{language!r} is not a language code (en, de, ...)")
            problem = template_problem(text)
            if problem:
                raise ValueError(f"{language or 'any language'}: {problem}")
        return value

    @field_validator("addresses", "retired_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not is_address(address):
                raise ValueError(f"{address!r} is not a mail address")
        return [a.lower() for a in value]

    @field_validator("acknowledge")
    @classmethod
    def _acknowledge(cls, value: str | bool) -> str | bool:
        return "authenticated" if value is True else value

    @property
    def all_addresses(self) -> list[str]:
        """The addresses mail is taken at: the current ones, then the retired ones."""
        return [*self.addresses, *self.retired_addresses]


class Config(_Section):
    system: SystemConfig = SystemConfig()
    ticket: TicketConfig = TicketConfig()
    database: DatabaseConfig = DatabaseConfig()
    lmtp: LMTPConfig = LMTPConfig()
    milter: MilterConfig = MilterConfig()
    smtp: SMTPConfig = SMTPConfig()
    web: WebConfig = WebConfig()
    dkim: DKIMConfig = DKIMConfig()
    agents: AgentsConfig = AgentsConfig()
    spam: SpamConfig = SpamConfig()
    crypto: CryptoConfig = CryptoConfig()
    queue: list[QueueConfig] = Field(
        default_factory=lambda: [QueueConfig(name="Hotline", addresses=["hotline@localhost"])]
    )
    filter: list[FilterConfig] = Field(default_factory=list)
    calendar: list[CalendarConfig] = Field(default_factory=lambda: [CalendarConfig()])
    sla: list[SLAConfig] = Field(default_factory=list)
    source: str = ""  # where this config came from, for messages
    # What an admin should hear about the config that does not stop it (an unknown
    # OTRS_MAILGATE_* variable): the CLI prints these, the daemon logs them at start.
    warnings: list[str] = Field(default_factory=list)

    @field_validator("queue")
    @classmethod
    def _unique(cls, value: list[QueueConfig]) -> list[QueueConfig]:
        names: set[str] = set()
        addresses: set[str] = set()
        for queue in value:
            if queue.name in names:
                raise ValueError(f"queue name {queue.name!r} is used twice")
            names.add(queue.name)
            for address in queue.all_addresses:
                if address in addresses and not queue.junk:
                    raise ValueError(f"address {address!r} belongs to two queues")
                addresses.add(address)
        if not value:
            raise ValueError("at least one queue is needed")
        return value

    @model_validator(mode="after")
    def _junk_queue(self) -> Config:
        """The Junk queue: the spam queue unless a [[queue]] of that name is configured,
        taking mail at no address of its own (it sends, if ever, as the first queue)."""
        name = self.spam.junk_queue
        if name and self.spam.filter and not any(q.name == name for q in self.queue):
            junk = QueueConfig(
                name=name,
                addresses=[self.queue[0].addresses[0]],
                acknowledge=False,
                tell_customer=[],
                display_name=name,
            )
            junk.junk = True
            self.queue.append(junk)
        return self

    @model_validator(mode="after")
    def _filter_queues(self) -> Config:
        names = {q.name for q in self.queue}
        if self.system.catch_all and self.system.catch_all not in names:
            raise ValueError(f"system.catch_all: no queue named {self.system.catch_all!r}")
        for i, f in enumerate(self.filter):
            if f.queue is not None and f.queue not in names:
                raise ValueError(f"filter[{i}] ({f.name}): no queue named {f.queue!r}")
        calendars = {c.name for c in self.calendar}
        for i, sla in enumerate(self.sla):
            for queue in sla.queues:
                if queue not in names:
                    raise ValueError(f"sla[{i}] ({sla.name}): no queue named {queue!r}")
            if sla.calendar not in calendars:
                raise ValueError(f"sla[{i}] ({sla.name}): no calendar named {sla.calendar!r}")
        return self

    def sla_for(self, queue: str, priority: int, company: str = "") -> SLAConfig | None:
        """The first SLA naming this queue and priority, and the ticket's company when it
        names companies."""
        company = company.lower()
        return next(
            (
                s
                for s in self.sla
                if queue in s.queues
                and priority in s.priorities
                and (not s.companies or company in (c.lower() for c in s.companies))
            ),
            None,
        )

    def size_limit(self, queue: QueueConfig) -> int:
        return queue.max_message_size or self.lmtp.max_message_size

    @property
    def authserv_id(self) -> str:
        """The authserv-id our milter writes: the one the daemon is told to trust, else
        our domain (then the daemon trusts none and checks DKIM itself)."""
        return self.agents.authserv_id or self.system.domain

    def queue_by_name(self, name: str) -> QueueConfig | None:
        return next((q for q in self.queue if q.name == name), None)


# OTRS_MAILGATE_* names that are no config key: the config file's path, and the test
# suite's own settings.
_ENV_OTHERS = ("CONFIG", "CORPUS", "PORTS")
_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")  # shown as ***


def _env_overrides(data: dict[str, Any]) -> tuple[dict[tuple[str, str], str], list[str]]:
    """Apply OTRS_MAILGATE_<SECTION>_<KEY> to the scalar keys of each section; which
    variable set which key, and a warning for each OTRS_MAILGATE_* name that is none
    (a typo, OTRS_MAILGATE_LMTP_PROT, would otherwise change nothing, silently)."""
    known: dict[str, tuple[str, str]] = {}
    for section, model in Config.model_fields.items():
        sub = model.annotation
        if not (isinstance(sub, type) and issubclass(sub, _Section)):
            continue
        for key in sub.model_fields:
            known[f"{configfile.ENV_PREFIX}{section}_{key}".upper()] = (section, key)
    used: dict[tuple[str, str], str] = {}
    warnings: list[str] = []
    for name, value in sorted(os.environ.items()):
        if not name.startswith(configfile.ENV_PREFIX):
            continue
        rest = name.removeprefix(configfile.ENV_PREFIX)
        if rest in _ENV_OTHERS or rest.startswith("TEST_"):
            continue
        where = known.get(name)
        if where is None:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"environment variable {name} names no config key{hint}")
            continue
        section, key = where
        data.setdefault(section, {})[key] = value
        used[where] = name
    return used, warnings


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, override from the environment, validate; ConfigError on any problem."""
    file = configfile.find(path)
    data: dict[str, Any] = {}
    name = "built-in defaults"
    if file is not None:
        name = str(file)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{name}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{name}: cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    from_env, warnings = _env_overrides(data)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _location(err["loc"]) or "(top level)"
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = "unknown key"
        problem = problem.removeprefix("Value error, ")
        variable = from_env.get(tuple(str(p) for p in err["loc"][:2]))  # type: ignore[arg-type]
        if variable is not None:  # the environment said it, not the file
            shown = _PASSWORD.sub(r"\1***@", os.environ.get(variable, ""))
            raise ConfigError(
                f"environment variable {variable}={shown!r}: {where}: {problem}"
            ) from None
        raise ConfigError(f"{name}: {where}: {problem}") from None
    config.source = name
    config.warnings = warnings
    if file is not None:
        config.database.url = _resolve_sqlite_path(config.database.url, file.parent)
        if config.system.templates:
            config.system.templates = str(file.parent / config.system.templates)
        # the audit keys live with the config (as DKIM keys do), whatever the database
        keys = file.parent.absolute() / (config.system.audit_keys or "audit.keys")
        config.system.audit_keys = str(keys)
        if config.dkim.key_file:
            config.dkim.key_file = str(file.parent / config.dkim.key_file)
        if config.agents.dkim_keys:
            config.agents.dkim_keys = str(file.parent / config.agents.dkim_keys)
        config.crypto.key_dir = str(file.parent.absolute() / (config.crypto.key_dir or "keys"))
        if config.crypto.passphrase_file:
            config.crypto.passphrase_file = str(file.parent / config.crypto.passphrase_file)
        if config.lmtp.socket:
            config.lmtp.socket = str(file.parent / config.lmtp.socket)
        if config.milter.socket:
            config.milter.socket = str(file.parent / config.milter.socket)
    _check_templates(config, name)
    return config


def _check_templates(config: Config, name: str) -> None:
    """Templates an SLA names must exist now, not when its first escalation is sent."""
    dirs = template_dirs(config)
    for index, rule in enumerate(config.sla):
        wanted = [("warn_template", rule.warn_template)]
        wanted += [
            (f"escalation[{n}].template", lvl.template) for n, lvl in enumerate(rule.escalation)
        ]
        for key, template in wanted:
            if not any((d / "mail" / "en" / f"{template}.txt.j2").is_file() for d in dirs):
                raise ConfigError(
                    f"{name}: sla[{index}] ({rule.name}).{key}: no template "
                    f"mail/en/{template}.txt.j2 in {', '.join(str(d) for d in dirs)}"
                )


def _resolve_sqlite_path(url: str, base: Path) -> str:
    """Relative SQLite paths in a config file are relative to that file, not the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url


def parse_range(text: str) -> tuple[dt.time, dt.time | None]:
    """`08:00-12:30` -> (08:00, 12:30); an end of `24:00` is None (midnight after)."""
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r}: write a range as HH:MM-HH:MM")
    a = dt.time.fromisoformat(start.strip())
    b = None if end.strip() == "24:00" else dt.time.fromisoformat(end.strip())
    if b is not None and b <= a:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return a, b
