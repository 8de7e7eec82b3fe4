"""The status page in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by selenium, with the system's chromedriver (selenium
downloads nothing).  Skips without them off CI; fails under CI=true."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.outbound import notify
from otrs_mailgate.store import db

from agent_helpers import Desk, SigningDomain
from helpers import need, outbox_mails
from lmtp_helpers import free_port, running
from web_helpers import EVIL, story

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    need(Path(CHROMEDRIVER).exists(), "no chromedriver (Debian package chromium-driver)")
    need(Path(CHROMIUM).exists(), "no chromium (Debian package chromium)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need(False, "selenium is not installed (pip install -e '.[test]')")
        raise
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1200,1600",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)  # fmt: skip
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def desk(pipeline: Pipeline) -> Desk:
    pipeline.config.web.port = free_port()
    return Desk(pipeline, SigningDomain())


def no_alert(driver: object) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        _ = driver.switch_to.alert  # type: ignore[attr-defined]
    except NoAlertPresentException:
        return True
    return False


def test_customer_opens_the_link_of_the_acknowledgement(
    desk: Desk, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    number, url = story(desk)
    with running(desk.p.config):
        browser.get(url)  # type: ignore[attr-defined]
        shot = tmp_path / "customer.png"
        assert browser.save_screenshot(str(shot))  # type: ignore[attr-defined]
        text = browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        title = browser.title  # type: ignore[attr-defined]
        assert no_alert(browser)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    assert title == f"Ticket {number}"
    assert f"Ticket {number}" in text and "Replies go by mail" in text
    assert "We replaced the toner; please try again." in text
    assert f"{EVIL} Drucker kaputt" in text  # shown as text, never run
    assert "third toner" not in text and "alice@" not in text


def test_agent_overview_and_reports(desk: Desk, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    number, _ = story(desk)
    with db.transaction(desk.p.sessions) as s:
        _agent, url = notify.mail_login_link(s, desk.p.config, "alice")
    with running(desk.p.config):
        browser.get(url)  # type: ignore[attr-defined]
        assert browser.current_url.endswith("/agent")  # type: ignore[attr-defined]
        shot = tmp_path / "overview.png"
        assert browser.save_screenshot(str(shot))  # type: ignore[attr-defined]
        rows = [
            r.text
            for r in browser.find_elements(By.CSS_SELECTOR, "table tbody tr")  # type: ignore[attr-defined]
        ]
        browser.get(url.split("/agent/")[0] + "/agent/reports")  # type: ignore[attr-defined]
        charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")  # type: ignore[attr-defined]
        sizes = [(c.size["width"], c.size["height"]) for c in charts]
        browser.get(url.split("/agent/")[0] + f"/agent/ticket/{number}")  # type: ignore[attr-defined]
        ticket = browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        assert no_alert(browser)
    assert shot.stat().st_size > 10_000
    assert any(r.startswith("Hotline") for r in rows), rows
    assert len(sizes) == 2 and all(w > 300 and h > 100 for w, h in sizes), sizes
    assert "Internal: third toner this month." in ticket and EVIL in ticket


def test_raw_queue_and_attachment_links_in_the_browser(
    pipeline: Pipeline, browser: object, tmp_path: Path
) -> None:
    """Issue 20's page parts: the raw queue waits on the overview; the customer's page
    offers an attachment as a download link, which Chromium saves instead of showing."""
    import time

    from selenium.webdriver.common.by import By
    from test_attachments import with_files

    from otrs_mailgate.config.schema import Config, QueueConfig
    from otrs_mailgate.tickets import agents

    from web_helpers import link_in

    data = pipeline.config.model_dump()
    data["queue"].append(QueueConfig(name="Raw", addresses=["dispatch@example.com"]).model_dump())
    data["system"]["catch_all"] = "Raw"
    data["web"]["port"] = free_port()
    p = Pipeline(Config.model_validate(data))
    p.ensure_queues()
    with db.transaction(p.sessions) as s:
        agents.add(s, "alice", "alice@agents.test", "Alice", [])
        agents.grant(s, p.queue_id("Raw"), "alice", "rw")
        _agent, login = notify.mail_login_link(s, p.config, "alice")
    raw = with_files("Stray", ("notes.html", "text/html", b"<script>alert(1)</script>"))
    stray = p.deliver_one(raw.replace(b"To: hotline@", b"To: old@"), "old@example.com")
    [ack] = [m for m in outbox_mails(p) if "thank you" in m.get_content()]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(  # type: ignore[attr-defined]
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    with running(p.config):
        browser.get(login)  # type: ignore[attr-defined]
        overview = browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        browser.get(link_in(ack))  # type: ignore[attr-defined]
        link = browser.find_element(By.LINK_TEXT, "notes.html")  # type: ignore[attr-defined]
        link.click()
        for _ in range(100):
            if list(downloads.glob("notes*.html")):
                break
            time.sleep(0.1)
        assert no_alert(browser)
        page = browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert "To dispatch: Raw" in overview and stray.ticket_number in overview
    assert "Replies go by mail" in page  # still the ticket page: the file was not shown
    [saved] = list(downloads.glob("notes*.html"))
    assert saved.read_bytes() == b"<script>alert(1)</script>"
    p.engine.dispose()


def test_encryption_markers_on_the_pages(
    pipeline: Pipeline, browser: object, tmp_path: Path
) -> None:
    """Issue 29: the agents' page marks an encrypted, validly signed request and shows
    its text; the customer's page (opened by a link from a plain mail) does not show it."""
    from crypto_helpers import (
        QUEUE,
        entity,
        make_keys,
        pgp_mime_encrypted,
        require_tools,
        site_keys,
    )
    from selenium.webdriver.common.by import By

    from otrs_mailgate.ingest.pipeline import Pipeline as P
    from otrs_mailgate.tickets import refs

    from helpers import make_config

    require_tools()
    (tmp_path / "client").mkdir()
    keys = make_keys(tmp_path / "client")
    config = make_config(str(pipeline.engine.url.render_as_string(hide_password=False)),
                         web={"port": free_port()}, **site_keys(keys, tmp_path))  # fmt: skip
    p = P(config)
    d = Desk(p, SigningDomain())
    raw = pgp_mime_encrypted(keys, "Locked out", entity("My PIN is 4711, please reset."), sign=True)
    number = p.deliver_one(raw, QUEUE).ticket_number
    with db.transaction(p.sessions) as s:
        _agent, url = notify.mail_login_link(s, p.config, "alice")
        ticket_id = refs.id_of(s.connection(), number)
        customer_url = p.site.status_url(s.connection(), ticket_id)
    with running(p.config):
        browser.get(url)  # type: ignore[attr-defined]
        browser.get(url.split("/agent/")[0] + f"/agent/ticket/{number}")  # type: ignore[attr-defined]
        flags = [
            f.text
            for f in browser.find_elements(By.CSS_SELECTOR, "article .shield")  # type: ignore[attr-defined]
        ]
        agent_page = browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        assert browser.save_screenshot(str(tmp_path / "agent-crypto.png"))  # type: ignore[attr-defined]
        browser.get(customer_url)  # type: ignore[attr-defined]
        customer_page = browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert d is not None
    assert any("encrypted" in f and "signed: valid" in f for f in flags), flags
    assert "signature valid by Carla Customer <cus@customer.test>" in agent_page
    assert "My PIN is 4711" in agent_page
    assert "My PIN is 4711" not in customer_page
    assert "sent encrypted: not shown here" in customer_page


def test_watchers_companies_and_templates_through_the_daemon_and_the_page(
    db_url: str, browser: object, tmp_path: Path
) -> None:
    """Issue 30 end to end: a customer of a company writes, an agent watches and another
    answers with a template, all by LMTP into the running daemon; the page shows the
    company, the watcher, "Tickets I watch" and the report by company."""
    from selenium.webdriver.common.by import By
    from sqlalchemy import select

    from otrs_mailgate.store.models import Outbox, Ticket
    from otrs_mailgate.tickets import answers, companies

    from agent_helpers import agent_mail
    from helpers import mail, make_config
    from lmtp_helpers import RawLMTP

    signing = SigningDomain()  # the daemon knows the agents' key pinned, as a site may
    keys = tmp_path / "agent-keys"
    keys.write_text(f"{signing.selector}._domainkey.{signing.domain} {signing.txt.decode()}\n")
    config = make_config(db_url, agents={"dkim_keys": str(keys)}, web={"port": free_port()})
    desk = Desk(Pipeline(config), signing)
    with db.transaction(desk.p.sessions) as s:
        companies.add(s, "ACME Corp", ["acme.example"])
        answers.save(s, "toner", "", "en", "Dear {{ customer.name }}, new toner is on its way.")

    def lmtp(sender: str, to: str, raw: bytes) -> str:
        client = RawLMTP(desk.p.config.lmtp.port)
        client.cmd("LHLO mx.test")
        _, replies = client.send(sender, [to], raw)
        client.close()
        return replies[0]

    def command(login: str, number: str, words: str, body: str) -> str:
        to = desk.reply_address(login, number)
        raw = agent_mail(f"{login}@agents.test", to, f"Re: [Ticket#{number} {words}] Toner", body)
        return lmtp(f"{login}@agents.test", to, desk.domain.sign(raw))

    with running(desk.p.config):
        first = mail("Toner empty", "The printer says toner.", sender="Bob <bob@acme.example>")
        assert lmtp("bob@acme.example", "hotline@example.com", first).startswith("250")
        with desk.p.sessions() as s:
            number = s.execute(select(Ticket.number)).scalar_one()
        assert command("bob", number, "watch", "").startswith("250")
        assert command("alice", number, "template=toner", "Sorry!").startswith("250")
        with db.transaction(desk.p.sessions) as s:
            _agent, url = notify.mail_login_link(s, desk.p.config, "bob")
        base = url.split("/agent/")[0]
        browser.get(url)  # type: ignore[attr-defined]
        watched = browser.find_element(By.CSS_SELECTOR, "table.watched").text  # type: ignore[attr-defined]
        browser.get(f"{base}/agent/ticket/{number}")  # type: ignore[attr-defined]
        company = browser.find_element(By.CSS_SELECTOR, "dd.company").text  # type: ignore[attr-defined]
        watchers = browser.find_element(By.CSS_SELECTOR, "dd.watchers").text  # type: ignore[attr-defined]
        browser.get(f"{base}/agent/reports")  # type: ignore[attr-defined]
        by_company = browser.find_element(By.CSS_SELECTOR, "table.companies").text  # type: ignore[attr-defined]
        assert browser.save_screenshot(str(tmp_path / "reports.png"))  # type: ignore[attr-defined]
        browser.find_element(By.LINK_TEXT, "ACME Corp").click()  # type: ignore[attr-defined]
        found = browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        assert no_alert(browser)
    assert number in watched and "Toner empty" in watched
    assert company == "ACME Corp" and watchers == "bob"
    assert "ACME Corp 1 0 1" in by_company, by_company
    assert number in found  # the company's link searches company:"ACME Corp"
    sent = [m for m in outbox_mails(desk.p) if str(m["To"]).endswith("<bob@acme.example>")]
    answer = next(m.get_content() for m in sent if "new toner" in m.get_content())
    assert answer.index("Sorry!") < answer.index("Dear Bob, new toner is on its way.")
    with desk.p.sessions() as s:
        kinds = s.execute(select(Outbox.kind).where(Outbox.kind == "transcript")).scalars().all()
    assert len(kinds) == 2
