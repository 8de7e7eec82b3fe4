"""Issue 28 with real parts: swaks -> Postfix smtpd -> rspamd's milter proxy -> our milter ->
LMTP -> the daemon; SPF and DMARC answered by a DNS server of the test's own (dnsmasq),
rspamd's Bayes in a Redis the test starts, and spam/ham taught to rspamd's controller.

What must hold (the issue's "Done when"): GTUBE is refused at SMTP time; spam by score
is filed in Junk with no mail from us; an authenticated customer gets the
acknowledgement; a From whose domain says DMARC p=reject but fails gets a ticket and no
mail from us; verdict headers a sender wrote are not believed; `spam` and `ham` by mail
move the ticket and reach rspamd's controller.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from otrs_mailgate.config.schema import load
from otrs_mailgate.store.models import History, Outbox, Queue, Ticket

from agent_helpers import SigningDomain, agent_mail
from cli_helpers import cli
from lmtp_helpers import free_port, start
from postfix_helpers import Instance, instance, require_postfix, wait_for
from spam_helpers import SPAM_SUBJECT, Rspamd, local_dns, redis, rspamd, spamassassin

HOT = "hotline@example.com"
CUSTOMER = "cus@customer.test"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
BODY = (
    "Hello, the printer on the second floor shows error 49 again since this morning and "
    "nobody in the office can print the quarterly reports. Could somebody look at it?"
)
RECORDS = {
    # the customer's domain: its mail comes from 127.0.0.1, SPF passes, DMARC p=none
    "customer.test": ["v=spf1 ip4:127.0.0.1 -all"],
    "_dmarc.customer.test": ["v=DMARC1; p=none"],
    # a bank whose name a forger uses: SPF allows one other host, DMARC says reject
    "bank.test": ["v=spf1 ip4:192.0.2.1 -all"],
    "_dmarc.bank.test": ["v=DMARC1; p=reject"],
}


@dataclass
class Desk:
    pf: Instance
    rs: Rspamd
    cfg: Path
    db_url: str
    signer: SigningDomain

    def swaks(self, sender: str, subject: str, *extra: str, body: str = BODY) -> str:
        sent = self.pf.swaks(
            "--from", sender, "--to", HOT, "--header", f"Subject: {subject}",
            "--body", body, *extra,
        )  # fmt: skip
        return sent.stdout

    def tickets(self) -> list[tuple[str, str, str]]:
        """(number, queue, state) of every ticket, oldest first."""
        engine = create_engine(self.db_url)
        with engine.connect() as conn:
            rows = conn.execute(
                select(Ticket.number, Queue.name, Ticket.state)
                .join(Queue, Queue.id == Ticket.queue_id)
                .order_by(Ticket.id)
            ).all()
        engine.dispose()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def ticket(self, title: str) -> tuple[str, str, str]:
        engine = create_engine(self.db_url)
        with engine.connect() as conn:
            row = conn.execute(
                select(Ticket.number, Queue.name, Ticket.state)
                .join(Queue, Queue.id == Ticket.queue_id)
                .where(Ticket.title.contains(title))
            ).one()
        engine.dispose()
        return tuple(row)  # type: ignore[return-value]

    def outbox(self) -> list[tuple[str, str, str]]:
        """(kind, status, recipients) of every outbox row."""
        engine = create_engine(self.db_url)
        with engine.connect() as conn:
            rows = conn.execute(select(Outbox.kind, Outbox.status, Outbox.rcpt_to)).all()
        engine.dispose()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def history(self, number: str) -> list[tuple[str, dict[str, object]]]:
        engine = create_engine(self.db_url)
        with engine.connect() as conn:
            rows = conn.execute(
                select(History.type, History.detail)
                .join(Ticket, Ticket.id == History.ticket_id)
                .where(Ticket.number == number)
                .order_by(History.id)
            ).all()
        engine.dispose()
        return [(t, json.loads(d) if d else {}) for t, d in rows]

    def to_customer(self) -> list[EmailMessage]:
        return self.pf.inbox("cus") if self.pf.maildir("cus").exists() else []

    def command(self, reply_to: str, number: str, words: str, title: str) -> None:
        raw = self.signer.sign(
            agent_mail("alice@agents.test", reply_to, f"Re: [Ticket#{number} {words}] {title}",
                       "Sorted.")
        )  # fmt: skip
        with smtplib.SMTP("127.0.0.1", self.pf.port, timeout=30) as smtp:
            smtp.sendmail("alice@agents.test", [reply_to], raw)


@pytest.fixture(scope="module")
def dns() -> Iterator[str]:
    require_postfix()
    with local_dns(RECORDS) as server:
        yield server


@pytest.fixture(scope="module")
def filters(dns: str) -> Iterator[Rspamd]:
    """rspamd (with its Redis), once for the module: it takes seconds to start."""
    with redis() as redis_port, rspamd(dns, redis_port, 25) as rs:
        yield rs


@contextmanager
def _desk(
    tmp_path: Path, sqlite_template: Path, dns: str, spam: str, rs: Rspamd | None = None
) -> Iterator[Desk]:
    db = tmp_path / "test.sqlite"
    shutil.copy(sqlite_template, db)
    db_url = f"sqlite:///{db}"
    signer = SigningDomain("agents.test", "desk")
    keys = tmp_path / "agent-keys"
    keys.write_text(f"desk._domainkey.agents.test {signer.txt.decode()}\n")
    lmtp_port = free_port()
    text = f"""
[system]
domain = "mailgate.test"
dns_servers = ["{dns}"]
[database]
url = "{db_url}"
[lmtp]
port = {lmtp_port}
[milter]
port = {free_port()}
[web]
port = {free_port()}
[smtp]
port = PORT
[agents]
authserv_id = "mx.mailgate.test"
dkim_keys = "{keys}"
[spam]
{spam}
[[queue]]
name = "Hotline"
addresses = ["{HOT}"]
"""
    cfg = tmp_path / "otrs-mailgate.toml"
    cfg.write_text(text.replace("PORT", "25"))
    for args in (
        ("init",),
        ("agent", "add", "alice", "alice@agents.test"),
        ("queue", "grant", "Hotline", "alice", "rw"),
        ("queue", "grant", "Junk", "alice", "rw"),
    ):
        done = cli(cfg, *args)
        assert done.returncode == 0, done.stderr
    mailboxes = [CUSTOMER, "alice@agents.test", "ceo@bank.test", "@spam.test"]
    with instance(load(cfg), mailboxes) as pf:
        cfg.write_text(text.replace("PORT", str(pf.port)))
        daemon = start(cfg, lmtp_port)
        try:
            yield Desk(pf, rs, cfg, db_url, signer)  # type: ignore[arg-type]
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)


@pytest.fixture
def desk(tmp_path: Path, sqlite_template: Path, dns: str, filters: Rspamd) -> Iterator[Desk]:
    rs = filters
    spam = f"""filter = "rspamd"
mta_hostnames = ["mx.mailgate.test"]
rspamd_milter = "{rs.milter_address}"
rspamd_controller = "{rs.controller_url}"
rspamd_password = "{rs.password}"
"""
    with _desk(tmp_path, sqlite_template, dns, spam, rs) as d:
        yield d


def _settled(desk: Desk) -> None:
    """Every outbox row decided (sent, held, cancelled, failed) and Postfix's queue empty."""
    wait_for(
        lambda: all(status not in ("queued", "sending") for _, status, _ in desk.outbox()),
        60,
        "the outbox",
    )
    desk.pf.wait_queue_empty(60)


def test_spam_and_forged_senders_through_postfix_rspamd_and_our_milter(desk: Desk) -> None:
    # 1. GTUBE: rspamd refuses it while the sender is connected; nothing stored
    said = desk.swaks(CUSTOMER, "Test of the filter", body=GTUBE)
    assert re.search(r"<\*\* 5\d\d 5\.7\.1", said), said
    assert desk.tickets() == []

    # 2. an authenticated customer (SPF pass, aligned): ticket and acknowledgement
    said = desk.swaks(CUSTOMER, "Printer error 49")
    assert "<** " not in said, said
    wait_for(lambda: len(desk.tickets()) == 1, 60, "the customer's ticket")
    wait_for(lambda: desk.to_customer(), 60, "the acknowledgement")
    [ack] = desk.to_customer()
    number, queue, _ = desk.ticket("Printer error 49")
    assert queue == "Hotline" and number in str(ack["Subject"])

    # 3. spam by rspamd's score (10 for the subject, under its reject at 25): Junk, silent
    desk.swaks(CUSTOMER, f"{SPAM_SUBJECT} great offer")
    wait_for(lambda: len(desk.tickets()) == 2, 60, "the spam ticket")
    spam_number, queue, _ = desk.ticket(SPAM_SUBJECT)
    assert queue == "Junk"
    [check] = [d for t, d in desk.history(spam_number) if t == "SpamCheck"]
    assert check["filter"] == "rspamd" and check["spam"] is True

    # 4. a forger writes the verdict headers himself: a clean score and a wrong queue id
    # on spam stay unbelieved (rspamd's own verdict counts)...
    desk.swaks(
        CUSTOMER, f"{SPAM_SUBJECT} forged clean",
        "--header", "X-Spamd-Result: default: False [-50.00 / 15.00]",
        "--header", "X-Rspamd-Queue-Id: 4FAKEQUEUEID", "--header", "X-Spam-Status: No, score=-50",
    )  # fmt: skip
    # ...and so does a spam verdict he puts on his mail to get somebody else's filed away
    desk.swaks(
        CUSTOMER, "Invoice question",
        "--header", "X-Spamd-Result: default: True [99.00 / 15.00]", "--header", "X-Spam: Yes",
    )  # fmt: skip
    wait_for(lambda: len(desk.tickets()) == 4, 60, "the two forged-verdict tickets")
    assert desk.ticket("forged clean")[1] == "Junk"
    assert desk.ticket("Invoice question")[1] == "Hotline"

    # 5. From a bank whose DMARC says reject, sent from a host its SPF does not name:
    # a ticket for the agents, no mail from us to the forged address
    desk.swaks("ceo@bank.test", "Urgent wire transfer")
    wait_for(lambda: len(desk.tickets()) == 5, 60, "the forged sender's ticket")
    forged_number, queue, _ = desk.ticket("Urgent wire transfer")
    assert queue == "Hotline"
    _settled(desk)
    held = [(k, s) for k, s, to in desk.outbox() if "ceo@bank.test" in to]
    assert held == [("acknowledgement", "held")]
    assert not desk.pf.maildir("ceo").exists() or not list(desk.pf.maildir("ceo").glob("*"))
    listing = cli(desk.cfg, "outbox", "list", "--held")
    assert b"ceo@bank.test" in listing.stdout and b"bank.test not authenticated" in listing.stdout

    # nothing of ours went to the spam or the forger; the customer got two acknowledgements
    # (steps 2 and the forged-spam-verdict mail of step 4), and the agent was told of
    # exactly the three Hotline tickets
    assert len(desk.to_customer()) == 2
    notes = [m for m in desk.pf.inbox("alice") if "Ticket#" in str(m["Subject"])]
    assert sorted(str(m["Subject"]).split("]")[0] for m in notes) == sorted(
        f"[Ticket#{n}" for n, q, _ in desk.tickets() if q == "Hotline"
    )

    # 6. the agent says `spam` on the forged mail by answering its notification
    learned = desk.rs.learned()
    [note] = [m for m in notes if forged_number in str(m["Subject"])]
    desk.command(str(note["Reply-To"]), forged_number, "spam", "Urgent wire transfer")
    wait_for(lambda: desk.ticket("Urgent wire")[1:] == ("Junk", "closed"), 60, "spam moved")
    _settled(desk)
    assert [(k, s) for k, s, to in desk.outbox() if "ceo@bank.test" in to] == [
        ("acknowledgement", "cancelled")
    ]
    wait_for(lambda: desk.rs.learned() == learned + 1, 60, "rspamd learning the spam")
    assert ("learn_spam", "sent", "") in desk.outbox()

    # 7. and `ham` on the Junk ticket of step 3, from the digest of her queues: it goes to
    # Hotline as a new ticket, the (authenticated) customer gets the acknowledgement now
    assert cli(desk.cfg, "agent", "digest", "alice").returncode == 0
    digest = wait_for(
        lambda: [m for m in desk.pf.inbox("alice") if "Open tickets" in str(m["Subject"])],
        60,
        "the digest",
    )[0]
    text = digest.get_content()
    found = re.search(rf"write to (\S+) with \[Ticket#{spam_number}\]", text)
    assert found, text
    desk.command(found.group(1), spam_number, "ham", f"{SPAM_SUBJECT} great offer")
    wait_for(lambda: desk.ticket("great offer")[1:] == ("Hotline", "new"), 60, "ham moved")
    wait_for(lambda: len(desk.to_customer()) == 3, 60, "the acknowledgement after ham")
    _settled(desk)
    [late_ack] = [m for m in desk.to_customer() if spam_number in str(m["Subject"])]
    assert "Sorted." not in late_ack.get_content()  # ham alone: the agent's words stay inside
    wait_for(lambda: desk.rs.learned() == learned + 2, 60, "rspamd learning the ham")
    kinds = [t for t, _ in desk.history(spam_number)]
    assert "MarkedHam" in kinds and "QueueMove" in kinds

    # 8. spam of the kinds a public address gets, from domains with no SPF or DMARC at
    # all, in Chinese, Russian and English: filed somewhere, and not one mail to them
    before = len(desk.tickets())
    for sender, extra in SPAM_SHAPES:
        said = desk.pf.swaks("--from", sender, "--to", HOT, *extra)
        assert "<** " not in said.stdout or "5.7.1" in said.stdout, said.stdout
    wait_for(lambda: len(desk.tickets()) >= before + 3, 60, "the spam shapes filed")
    _settled(desk)
    to_spammers = [(k, st) for k, st, to in desk.outbox() if "spam.test" in to]
    assert to_spammers and all(st == "held" for _, st in to_spammers), to_spammers
    box = desk.pf.root / "mail" / "spam.test" / "new"
    assert not box.exists() or not list(box.glob("*"))


SPAM_SHAPES = [
    ("fapiao@spam.test", ["--header", "Subject: =?GB2312?B?t6LGsdK1zvHXyc/v?=",
                          "--header", "Content-Type: text/plain; charset=GB2312",
                          "--body", "代开发票 增值税 联系 QQ 123456 优惠 代开发票 增值税"]),
    ("kredit@spam.test", ["--header", "Subject: =?KOI8-R?B?68XEydQg2sEgMTAgzcnO1dQ=?=",
                          "--body", "Kredit bez proverok, zvonite seychas! Luchshiye usloviya."]),
    ("security@spam.test", ["--header", "Subject: Your account has been suspended",
                            "--header", "From: PayPal Security <security@spam.test>",
                            "--body", "Dear customer, verify your account within 24 hours: "
                            "http://paypal.verify-account.spam.test/login or it will be closed."]),
    ("winner@spam.test", ["--header", "Subject: You have WON 1,000,000 USD!!!",
                          "--body", "Congratulations!!! Send your bank details to claim "
                          "your prize. 100% FREE. Act now! Click here!"]),
]  # fmt: skip


def test_postfix_config_puts_rspamd_before_ours(desk: Desk) -> None:
    """The chain the instance above runs is postfix-config's own output."""
    main_cf = (desk.pf.config_dir / "main.cf").read_text()
    [line] = [ln for ln in main_cf.splitlines() if ln.startswith("smtpd_milters")]
    assert line.index(desk.rs.milter_address) < line.index("protocol=6, default_action=tempfail")
    assert "default_action=accept" in line  # rspamd down: mail passes unscored


def test_spamassassin_through_spamass_milter(
    tmp_path: Path, sqlite_template: Path, dns: str
) -> None:
    """The same chain with SpamAssassin (spamd, spamass-milter -r 20) in rspamd's place:
    its headers as spamass-milter writes them are read, the sender's own are not, and
    what scores past -r is refused at SMTP time."""
    with spamassassin(reject=20) as sa:
        spam = f"""filter = "spamassassin"
mta_hostnames = ["mx.mailgate.test", "{sa.hostname}"]
"""
        extra = f"smtpd_milters = {{ {sa.milter_address}, default_action=accept }}, "
        with _desk(tmp_path, sqlite_template, dns, spam) as desk:
            main_cf = desk.pf.config_dir / "main.cf"
            lines = main_cf.read_text().splitlines()
            lines = [extra + ln.split(" = ", 1)[1] if ln.startswith("smtpd_milters") else ln
                     for ln in lines]  # fmt: skip
            main_cf.write_text("\n".join(lines) + "\n")
            desk.pf.postfix("reload")
            said = desk.swaks(CUSTOMER, "Test of the filter", body=GTUBE)
            assert re.search(r"<\*\* 5\d\d 5\.7\.1", said), said
            desk.swaks(CUSTOMER, f"{SPAM_SUBJECT} offer",
                       "--header", "X-Spam-Status: No, score=-50.0 required=5.0")  # fmt: skip
            checker = f"X-Spam-Checker-Version: SpamAssassin 4.0.1 on {sa.hostname}"
            desk.swaks(CUSTOMER, "Toner question", "--header", "X-Spam-Flag: YES",
                       "--header", "X-Spam-Status: Yes, score=99.0 required=5.0",
                       "--header", checker)  # fmt: skip
            wait_for(lambda: len(desk.tickets()) == 2, 120, "the two tickets")
            assert desk.ticket(SPAM_SUBJECT)[1] == "Junk"
            assert desk.ticket("Toner question")[1] == "Hotline"
            [check] = [d for t, d in desk.history(desk.ticket(SPAM_SUBJECT)[0]) if t == "SpamCheck"]
            assert check["filter"] == "spamassassin" and check["spam"] is True
            _settled(desk)
            acks = [m for m in desk.to_customer() if "Toner" in str(m["Subject"])]
            assert len(acks) == 1 and len(desk.to_customer()) == 1
