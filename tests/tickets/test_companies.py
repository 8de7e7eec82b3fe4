"""Customer companies (issue 30): customers join by domain (never a free-mail one) or as
members; tickets carry the company into search, stats, the SLA and the page."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Customer, Ticket
from otrs_mailgate.tickets import companies

from cli_helpers import cli, write_config
from helpers import mail, make_config

HOT = "hotline@example.com"
ALWAYS = {
    "name": "always",
    "hours": {d: ["00:00-24:00"] for d in "mon tue wed thu fri sat sun".split()},
}
SLAS = [  # the first that matches sets the clocks: a contract's faster time first
    {"name": "contract", "queues": ["Hotline"], "companies": ["ACME"], "calendar": "always",
     "first_response": 60},
    {"name": "standard", "queues": ["Hotline"], "calendar": "always", "first_response": 480},
]  # fmt: skip


@pytest.fixture
def p(db_url: str) -> Iterator[Pipeline]:
    pipeline = Pipeline(make_config(db_url, calendar=[ALWAYS], sla=SLAS))
    pipeline.ensure_queues()
    yield pipeline
    pipeline.engine.dispose()


def ticket_from(p: Pipeline, sender: str, subject: str = "Printer on fire") -> str:
    return p.deliver_one(mail(subject, "It burns.", sender=sender), HOT).ticket_number


def company_of(p: Pipeline, number: str) -> str:
    with p.sessions() as s:
        t = s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()
        return t.company.name if t.company else ""


def due_minutes(p: Pipeline, number: str) -> float:
    with p.sessions() as s:
        t = s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()
        assert t.first_response_due is not None
        return (t.first_response_due - t.created_at) / dt.timedelta(minutes=1)


def test_customers_join_by_domain_and_members_and_the_sla_follows(
    p: Pipeline, tmp_path: Path, db_url: str
) -> None:
    before = ticket_from(p, "Bob <bob@acme.example>", "Before the company")
    assert company_of(p, before) == "" and due_minutes(p, before) == 480
    cfg = write_config(tmp_path / "c.toml", db_url)
    added = cli(cfg, "company", "add", "ACME", "--domain", "acme.example")
    assert added.returncode == 0, added.stderr
    assert b"1 customer(s) joined" in added.stdout
    assert company_of(p, before) == "ACME"  # an existing customer's tickets follow
    # a new customer gets its company in the statement that makes it (domain in any case)
    new = ticket_from(p, "Carol <carol@ACME.Example>")
    assert company_of(p, new) == "ACME" and due_minutes(p, new) == 60  # the contract
    # a free-mail address is nobody's domain, but may be a member
    free = ticket_from(p, "Dan <dan.acme@gmail.com>")
    assert company_of(p, free) == "" and due_minutes(p, free) == 480
    refused = cli(cfg, "company", "domain", "add", "ACME", "gmail.com")
    assert refused.returncode == 1 and b"free-mail domain" in refused.stderr
    member = cli(cfg, "company", "member", "add", "ACME", "Dan.Acme@gmail.com")
    assert member.returncode == 0, member.stderr
    assert company_of(p, free) == "ACME"
    assert company_of(p, ticket_from(p, "dan.acme@gmail.com", "Again")) == "ACME"
    other = ticket_from(p, "Eve <eve@elsewhere.example>")
    assert company_of(p, other) == ""
    # the CLI shows it; a second company cannot take the domain
    shown = cli(cfg, "ticket", "show", new).stdout.decode()
    assert "company ACME" in shown
    taken = cli(cfg, "company", "add", "Rival", "--domain", "acme.example")
    assert taken.returncode == 1 and b"belongs to company ACME already" in taken.stderr
    [info] = json.loads(cli(cfg, "company", "list", "--json").stdout)
    assert info["domains"] == ["acme.example"] and info["members"] == ["dan.acme@gmail.com"]
    assert info["customers"] == 3 and info["open_tickets"] == 4


def test_search_and_stats_by_company(p: Pipeline, tmp_path: Path, db_url: str) -> None:
    with db.transaction(p.sessions) as s:
        companies.add(s, "Big Corp", ["big.example"])
    ticket_from(p, "a@big.example", "Toner empty")
    ticket_from(p, "b@big.example", "Toner again")
    ticket_from(p, "c@small.example", "Toner elsewhere")
    cfg = write_config(tmp_path / "c.toml", db_url)
    found = json.loads(cli(cfg, "search", 'company:"big corp"', "toner", "--json").stdout)[
        "tickets"
    ]
    assert sorted(r["title"] for r in found) == ["Toner again", "Toner empty"]
    unknown = cli(cfg, "search", "companyy:x")
    assert unknown.returncode != 0 and b"company:" in unknown.stderr + unknown.stdout
    text = cli(cfg, "stats", "--by", "company").stdout.decode()
    assert "Big Corp" in text and "(none)" in text
    report = json.loads(cli(cfg, "stats", "--by", "company", "--json").stdout)
    rows = {r["company"]: r["created"] for r in report["companies"]}
    assert rows == {"Big Corp": 2, "(none)": 1}
    csv = cli(cfg, "stats", "--by", "company", "--csv").stdout.decode().splitlines()
    assert csv[0].startswith("company,created,closed") and csv[1].startswith("Big Corp,2,")


def test_removing_a_company_keeps_customers_and_tickets(p: Pipeline) -> None:
    with db.transaction(p.sessions) as s:
        companies.add(s, "ACME", ["acme.example"])
    n = ticket_from(p, "bob@acme.example")
    assert company_of(p, n) == "ACME"
    with db.transaction(p.sessions) as s:
        companies.remove(s, "ACME")
    assert company_of(p, n) == ""
    with p.sessions() as s:
        assert s.execute(select(Customer.address)).scalars().all() == ["bob@acme.example"]
        assert s.execute(select(Ticket.number)).scalars().all() == [n]
    with db.transaction(p.sessions) as s, pytest.raises(companies.CompanyError, match="no company"):
        companies.remove(s, "ACME")


def test_upgrade_to_0012_keeps_customers_and_tickets(tmp_path: Path) -> None:
    from sqlalchemy import text

    engine = db.make_engine(f"sqlite:///{tmp_path}/old.sqlite")
    db.upgrade(engine, "0011")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO queue (id, name, created_at) VALUES (1, 'Hotline', '2026-01-01')")
        )
        conn.execute(
            text(
                "INSERT INTO customer (id, address, name, language, created_at) "
                "VALUES (7, 'bob@acme.example', 'Bob', '', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO ticket (id, number, title, queue_id, customer_id, state, priority, "
                "language, created_at, updated_at) VALUES (3, '2026010110000011', 'Old', 1, 7, "
                "'open', 3, 'en', '2026-01-01', '2026-01-01')"
            )
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT address, company_id FROM customer")).all() == [
            ("bob@acme.example", None)
        ]
        assert conn.execute(text("SELECT number, company_id FROM ticket")).all() == [
            ("2026010110000011", None)
        ]
    engine.dispose()


def test_domain_and_member_removal_on_the_command_line(
    p: Pipeline, tmp_path: Path, db_url: str
) -> None:
    cfg = write_config(tmp_path / "c.toml", db_url)
    assert cli(cfg, "company", "add", "ACME", "--domain", "acme.example").returncode == 0
    assert cli(cfg, "company", "member", "add", "ACME", "x@mail.example").returncode == 0
    by_domain, by_member = ticket_from(p, "a@acme.example"), ticket_from(p, "x@mail.example")
    assert company_of(p, by_domain) == company_of(p, by_member) == "ACME"
    gone = cli(cfg, "company", "domain", "remove", "ACME", "ACME.example.")
    assert gone.returncode == 0 and b"acme.example no longer belongs to ACME" in gone.stdout
    assert company_of(p, by_domain) == "" and company_of(p, by_member) == "ACME"
    again = cli(cfg, "company", "domain", "remove", "ACME", "acme.example")
    assert again.returncode == 1 and b"is not a domain of ACME" in again.stderr
    left = cli(cfg, "company", "member", "remove", "ACME", "X@mail.example")
    assert left.returncode == 0 and company_of(p, by_member) == ""
    unknown = cli(cfg, "company", "member", "add", "Nobody Inc", "y@mail.example")
    assert unknown.returncode == 1 and b"no company 'Nobody Inc'" in unknown.stderr


def test_an_international_domain_matches_its_ascii_form(p: Pipeline) -> None:
    with db.transaction(p.sessions) as s:
        companies.add(s, "Bücher GmbH", ["Bücher.Example."])
        with pytest.raises(companies.CompanyError, match="not a mail domain"):
            companies.add(s, "Bad", ["no domain"])
    n = ticket_from(p, "Leser <leser@xn--bcher-kva.example>")
    assert company_of(p, n) == "Bücher GmbH"
    with p.sessions() as s:
        [info] = companies.listing(s.connection())
    assert info.domains == ["xn--bcher-kva.example"]
