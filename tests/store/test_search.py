"""Full-text search: the query language, the index written with each article, filters,
both engines, and the CLI's errors."""

from __future__ import annotations

import datetime as dt
import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text, update

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db, search
from otrs_mailgate.store.models import Article, Ticket
from otrs_mailgate.store.searchquery import QueryError, parse
from otrs_mailgate.tickets import agents, queries

from cli_helpers import cli, write_config
from helpers import count, mail

HOT, DE = "hotline@example.com", "support@example.de"


def numbers(p: Pipeline, query: str, limit: int = 50) -> list[str]:
    with p.sessions() as s:
        rows, _ = queries.results(s, p.config, query, limit)
    return [r["number"] for r in rows]


def indexed(p: Pipeline) -> int:
    table = "article_fts" if p.engine.dialect.name == "sqlite" else "article_search"
    # FTS5 contentless tables count through their docsize-less index: ask for all rows.
    query = f"SELECT count(*) FROM {table}"
    with p.engine.connect() as conn:
        return int(conn.execute(text(query)).scalar_one())


@pytest.fixture
def desk(pipeline: Pipeline) -> dict[str, str]:
    """A handful of tickets with known words; name -> ticket number."""
    items = {
        "printer": ("Printer jams", "The printer jams on every page. Toner is full."),
        "toner": ("Toner empty", "Need new toner cartridges for the laser printer."),
        "ink": ("Ink smears", "The inkjet smears ink on paper."),
        "muller": ("Grüße", "Viele Grüße von Jürgen Müller aus Köln."),
        "phrase": ("Paper", "A paper jam in tray two, and paper everywhere."),
        "invoice": ("Rechnungen", "Bitte senden Sie uns die Rechnungen für März."),
    }
    out = {}
    for name, (subject, body) in items.items():
        # a German ticket is stemmed as German (issue 21: one configuration an article)
        german = {"Content-Language": "de"} if name == "invoice" else {}
        r = pipeline.deliver_one(mail(subject, body, headers=german), HOT, "alice@customer.test")
        out[name] = r.ticket_number
    return out


def test_words_phrases_prefixes_and_booleans(pipeline: Pipeline, desk: dict[str, str]) -> None:
    def found(query: str) -> set[str]:
        return set(numbers(pipeline, query))

    n = desk
    assert found("printer") == {n["printer"], n["toner"]}
    assert found("printer toner") == {n["printer"], n["toner"]}  # both have both words
    assert found("printer AND jams") == {n["printer"]}
    assert found("ink OR jams") == {n["ink"], n["printer"], n["phrase"]}  # jams, jam: one stem
    assert found("printer NOT laser") == {n["printer"]}
    assert found("printer -laser") == {n["printer"]}
    assert found("(smears OR jams) paper") == {n["ink"], n["phrase"]}
    assert found("(smears OR jams) paper NOT tray") == {n["ink"]}
    assert found('"paper jam"') == {n["phrase"]}
    assert found('"jam paper"') == set()
    assert found("ink*") == {n["ink"]}  # ink, inkjet
    assert found("cartri*") == {n["toner"]}
    assert found("printers") == {n["printer"], n["toner"]}  # English stemming
    assert found("nothinglikethis") == set()


def test_umlauts_are_found_with_and_without(pipeline: Pipeline, desk: dict[str, str]) -> None:
    for spelling in ("Müller", "Muller", "Mueller", "MÜLLER", "Jürgen", "Juergen", "Koln"):
        assert numbers(pipeline, spelling) == [desk["muller"]], spelling
    assert numbers(pipeline, "grusse") == [desk["muller"]]  # ß as ss
    assert numbers(pipeline, "Grüsse") == [desk["muller"]]
    assert numbers(pipeline, "Maerz") == [desk["invoice"]]


def test_german_stemming_where_the_engine_has_it(pipeline: Pipeline, desk: dict[str, str]) -> None:
    """PostgreSQL stems a German ticket's articles as German (Rechnung finds Rechnungen);
    SQLite's FTS5 only English, where the prefix does the job."""
    assert numbers(pipeline, "Rechnung*") == [desk["invoice"]]
    stemmed = numbers(pipeline, "Rechnung")
    if pipeline.engine.dialect.name == "postgresql":
        assert stemmed == [desk["invoice"]]
    else:
        assert stemmed == []


def test_subject_attachment_names_and_addresses(pipeline: Pipeline) -> None:
    msg = EmailMessage()
    msg["From"] = "Zoe Quartermain <zoe@widgets.test>"
    msg["To"] = HOT
    msg["Cc"] = "boss@widgets.test"
    msg["Subject"] = "Broken widget"
    msg.set_content("See the photo.")
    msg.add_attachment(b"\x89PNG...", maintype="image", subtype="png", filename="kaputt-foto.png")
    r = pipeline.deliver_one(msg.as_bytes(), HOT, "zoe@widgets.test")
    for query in ("widget", "kaputt", "foto", "zoe@widgets.test", "Quartermain", "boss"):
        assert numbers(pipeline, query) == [r.ticket_number], query


def test_filters(pipeline: Pipeline, desk: dict[str, str]) -> None:
    n = desk
    de_mail = mail("Drucker", "Der Drucker druckt nicht.", sender="x@kunde.test")
    de = pipeline.deliver_one(de_mail, DE, "x@kunde.test")
    with db.transaction(pipeline.sessions) as s:
        bob = agents.add(s, "bob", "bob@agents.test", "Bob", [])
        s.execute(update(Ticket).where(Ticket.number == n["printer"]).values(owner_id=bob.id))
        s.execute(
            update(Ticket)
            .where(Ticket.number == n["toner"])
            .values(state="closed", closed_at=dt.datetime(2026, 3, 15, 12, tzinfo=dt.UTC))
        )
        s.execute(update(Ticket).where(Ticket.number == n["ink"]).values(priority=1))
        s.execute(
            update(Ticket)
            .where(Ticket.number == n["phrase"])
            .values(created_at=dt.datetime(2025, 12, 31, 23, 30, tzinfo=dt.UTC))
        )

    def found(query: str) -> set[str]:
        return set(numbers(pipeline, query))

    assert found("queue:Support-DE") == {de.ticket_number}
    assert found("queue:support-de drucker") == {de.ticket_number}
    assert found("queue:Hotline queue:Support-DE") == set(n.values()) | {de.ticket_number}
    assert found("printer state:closed") == {n["toner"]}
    assert found("printer state:new") == {n["printer"]}
    assert found("owner:bob") == {n["printer"]}
    assert found("printer owner:none") == {n["toner"]}
    assert found("customer:x@kunde.test") == {de.ticket_number}
    assert found("customer:@kunde.test") == {de.ticket_number}
    assert found("customer:@customer.test paper") == {n["phrase"], n["ink"]}
    assert found("customer:alice@customer.test drucker") == set()
    assert found("closed:2026-03") == {n["toner"]}
    assert found("closed:2026-03-16..") == set()
    assert found("created:2025") == {n["phrase"]}
    assert found("created:..2025-12-31 paper") == {n["phrase"]}
    assert found("priority:1") == {n["ink"]}


def test_day_filters_are_days_of_the_configured_zone(pipeline: Pipeline) -> None:
    """23:30 UTC on 31 December is already 1 January in Berlin."""
    r = pipeline.deliver_one(mail("Silvester", "Feuerwerk"), HOT, "a@b.test")
    with db.transaction(pipeline.sessions) as s:
        s.execute(
            update(Ticket)
            .where(Ticket.number == r.ticket_number)
            .values(created_at=dt.datetime(2025, 12, 31, 23, 30, tzinfo=dt.UTC))
        )
    assert numbers(pipeline, "feuerwerk created:2025-12-31") == [r.ticket_number]
    pipeline.config.system.timezone = "Europe/Berlin"
    assert numbers(pipeline, "feuerwerk created:2025-12-31") == []
    assert numbers(pipeline, "feuerwerk created:2026-01-01") == [r.ticket_number]


def test_newest_match_first_with_a_limit(pipeline: Pipeline) -> None:
    made = [
        pipeline.deliver_one(mail(f"Router {i}", "router down"), HOT, "r@x.test").ticket_number
        for i in range(5)
    ]
    with pipeline.sessions() as s:
        rows, more = queries.results(s, pipeline.config, "router", limit=3)
    assert [r["number"] for r in rows] == made[::-1][:3] and more
    assert rows[0]["article"]["snippet"] == "router down"
    # a follow-up makes its ticket the newest match
    pipeline.deliver_one(mail(f"Re: [Ticket#{made[0]}] Router 0", "router still down"), HOT)
    assert numbers(pipeline, "router", 1) == [made[0]]


def test_every_article_is_indexed_in_its_own_transaction(
    pipeline: Pipeline, corpus: Path, monkeypatch
) -> None:
    """The corpus (every odd mail there is) makes one index row per article; a delivery
    that fails leaves neither article nor index row."""
    for path in sorted((corpus / "otrs").iterdir()):
        if path.suffix in (".box", ".eml"):
            pipeline.deliver_one(path.read_bytes(), HOT)
    assert indexed(pipeline) == count(pipeline, Article) > 10

    before = indexed(pipeline)

    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug after the article was written")

    monkeypatch.setattr("otrs_mailgate.outbound.notify.notify", boom)
    with pytest.raises(RuntimeError):
        pipeline.deliver_one(mail("Vanishing", "gone with the rollback"), HOT, "v@x.test")
    assert indexed(pipeline) == before == count(pipeline, Article)
    assert numbers(pipeline, "vanishing") == []


def test_upgrade_indexes_articles_stored_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/old.sqlite"
    engine = db.make_engine(url)
    db.upgrade(engine, "0006")
    from helpers import make_config

    p = Pipeline(make_config(url, web={"enabled": False}))  # no site_secret before 0008
    p.sessions.configure(info={})  # no audit key before 0010 either
    p.ensure_queues()
    # store as the code of revision 0006 would: without the index table, and without
    # the columns that came later (the article's protection, 0011; the customer's and
    # the ticket's company, 0012)
    from sqlalchemy import text

    from otrs_mailgate.tickets import articles, state

    def old_customer(conn, mail):  # type: ignore[no-untyped-def]
        conn.execute(
            text("INSERT INTO customer (address, name, language, created_at) "
                 "VALUES (:a, '', '', '2026-01-01')"),
            {"a": mail.from_addr},
        )  # fmt: skip
        found = text("SELECT id FROM customer WHERE address = :a")
        return conn.execute(found, {"a": mail.from_addr}).scalar(), None, None

    create = state.create
    monkeypatch.setattr(articles, "remember_customer", old_customer)
    monkeypatch.setattr(
        state, "create", lambda session, values: create(
            session, {k: v for k, v in values.items() if k != "company_id"}
        ),
    )  # fmt: skip

    monkey, fast = search.index, articles._INS_ARTICLE_FAST

    class Old:
        def scalar(self, conn, params):  # type: ignore[no-untyped-def]
            return fast.scalar(conn, {k: v for k, v in params.items() if k != "protection"})

    search.index = lambda *a, **k: None  # type: ignore[assignment]
    articles._INS_ARTICLE_FAST = Old()  # type: ignore[assignment]
    try:
        r = p.deliver_one(mail("Old ticket", "stored before search existed"), HOT, "o@x.test")
    finally:
        search.index = monkey  # type: ignore[assignment]
        articles._INS_ARTICLE_FAST = fast
    db.upgrade(engine)
    assert numbers(p, "existed") == [r.ticket_number]
    p.engine.dispose()
    engine.dispose()


BAD = [
    ("", 1, "the query is empty"),
    ("   ", 1, "the query is empty"),
    ("printer)", 8, "')' without '('"),
    ("(printer", 1, "'(' is not closed"),
    ('"paper jam', 1, 'the quote " is not closed'),
    ("printer OR", 9, "OR needs something on both sides"),
    ("OR printer", 1, "OR needs something on both sides"),
    ("printer AND AND toner", 9, "AND needs something on both sides"),
    ("NOT laser", 1, "NOT needs something to leave out from"),
    ("printer OR NOT laser", 12, "NOT needs something to leave out from"),
    ("printer NOT", 9, "NOT needs a word after it"),
    ("qeue:Hotline", 1, "unknown filter qeue:"),
    ("printer state:", 9, "state: needs a value"),
    ("state:lost", 1, "state:lost: not a state"),
    ("created:2026-13-01", 1, "dates are YYYY-MM-DD"),
    ("closed:2026-02..2026-01", 1, "the range ends before it starts"),
    ("priority:9", 1, "priority:9: give 1 to 5"),
    ("(printer queue:Hotline)", 10, "filters go outside parentheses"),
    ("printer -state:open", 10, "filters cannot be negated"),
    ("queue:Hotline OR printer", 15, "filters cannot be ORed"),
    ("printer ()", 9, "empty parentheses"),
    ("!!!", 1, "the word '!!!' has nothing to search for"),
    ("a\x00b", 2, "a NUL character"),
]


@pytest.mark.parametrize(("query", "position", "problem"), BAD)
def test_malformed_queries_say_where(query: str, position: int, problem: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    assert info.value.position == position
    assert problem in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab ()"*-:ÄüßAND OR NOT queue:state:')), max_size=40))
def test_any_text_parses_or_says_why(source: str) -> None:
    try:
        query = parse(source)
    except QueryError as exc:
        assert 1 <= exc.position <= len(source) + 1
        return
    if query.text is not None:
        search._fts5(query.text)  # compiles without tripping over a NOT


@settings(max_examples=60, deadline=None)
@given(
    source=st.text(alphabet=st.sampled_from(list('ab ()"*-ÄüßANDORNOT')), min_size=1, max_size=30)
)
def test_what_parses_runs_on_sqlite_without_a_database_error(
    source: str, sqlite_template: Path
) -> None:
    """Whatever the parser lets through is valid FTS5: user text can never reach the
    engine as syntax (every word is quoted)."""
    try:
        query = parse(source)
    except QueryError:
        return
    engine = db.make_engine(f"sqlite:///{sqlite_template}")
    from helpers import make_config

    with engine.connect() as conn:
        search.hits(conn, make_config(str(engine.url)), query)
    engine.dispose()


def test_cli_search_and_its_errors(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "c.toml", db_url)
    assert cli(cfg, "init").returncode == 0
    made = cli(
        cfg,
        "ticket",
        "create",
        "--queue",
        "Hotline",
        "--customer",
        "c@x.test",
        "--subject",
        "VPN broken",
        "--body",
        "The VPN drops every hour.",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    number = json.loads(made.stdout)["number"]
    plain = cli(cfg, "search", "vpn", "drops", "queue:Hotline")
    assert plain.returncode == 0, plain.stderr
    assert number.encode() in plain.stdout and b"The VPN drops every hour." in plain.stdout
    out = json.loads(cli(cfg, "search", "--json", "vpn").stdout)
    assert [t["number"] for t in out["tickets"]] == [number] and out["more"] is False

    bad = cli(cfg, "search", "vpn OR")
    assert bad.returncode == 2
    assert bad.stderr.decode().splitlines() == [
        "otrs-mailgate: bad query: position 5: OR needs something on both sides",
        "  vpn OR",
        "      ^",
    ]
    unknown = cli(cfg, "search", "queue:Nowhere")
    assert unknown.returncode == 2 and b"queue:Nowhere: no such queue" in unknown.stderr
    assert b"Traceback" not in bad.stderr + unknown.stderr
    # nothing was lost or changed by the bad queries
    again = json.loads(cli(cfg, "search", "--json", "vpn").stdout)
    assert again == out
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Ticket)).scalar_one() == 1
    engine.dispose()


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("created:2026-01-01..9999-12-31", True),
        ("printer created:..9999-12-31", True),
        ("created:0001-01-01..", True),
        ("created:0001..9999", True),
        ("created:9999-12", False),
        ("closed:0001..9999", False),
    ],
)
def test_the_calendars_ends_are_dates_not_overflows(
    pipeline: Pipeline, query: str, found: bool
) -> None:
    """A range to 9999-12-31 (or from 0001-01-01) was an OverflowError: HTTP 500 on the
    agents' page and a traceback in the CLI. The calendar's ends bound nothing."""
    number = pipeline.deliver_one(mail("Printer", "on fire"), HOT).ticket_number
    with pipeline.sessions() as s:
        rows, _ = queries.results(s, pipeline.config, query, 10)
    assert [r["number"] for r in rows] == ([number] if found else [])
