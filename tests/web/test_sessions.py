"""Issue 19 on the status page: agents' sessions (random per login, revoked on logout,
rotate-secret and disable, ended after session_hours) and searches made only of filters
(item 11: they were HTTP 500)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.outbound import notify
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, WebSession
from otrs_mailgate.tickets import agents

from agent_helpers import Desk, SigningDomain
from lmtp_helpers import free_port, running
from web_helpers import Browser, link_in, story


@pytest.fixture
def desk(pipeline: Pipeline, signing: SigningDomain) -> Desk:
    pipeline.config.web.port = free_port()
    return Desk(pipeline, signing)


def login_url(desk: Desk, login: str) -> str:
    with db.transaction(desk.p.sessions) as s:
        _agent, url = notify.mail_login_link(s, desk.p.config, login)
    mailed = [m for m in desk.to(f"{login}@{desk.domain.domain}") if "status page" in
              str(m["Subject"])]  # fmt: skip
    assert link_in(mailed[-1]) == url
    return url


def cookie(web: Browser) -> str:
    [value] = [c.value for c in web.jar if c.name == "otrs_mailgate_session"]
    return value


def test_a_session_is_random_per_login_and_ends_at_logout(desk: Desk) -> None:
    story(desk)
    url = login_url(desk, "alice")
    with running(desk.p.config) as daemon:
        base = f"http://127.0.0.1:{daemon.config.web.port}"
        first, second = Browser(base), Browser(base)
        assert first.get(url).status == 200 and second.get(url).status == 200
        assert cookie(first) != cookie(second), "the same cookie on every login that day"
        stolen = cookie(first)
        with desk.p.sessions() as s:  # the database holds no cookie, only its hash
            ids = s.execute(select(WebSession.id)).scalars().all()
        assert stolen not in ids and len(ids) == 2
        assert first.get("/agent/logout").status == 200
        replay = Browser(base)
        replay.jar.set_cookie(_copy(second, stolen))
        assert replay.get("/agent").status == 403, "a cookie still works after logout"
        assert second.get("/agent").status == 200  # the other login goes on
        # session_hours: a session past its end is refused
        with db.transaction(desk.p.sessions) as s:
            s.execute(update(WebSession).values(expires_at=dt.datetime.now(dt.UTC)))
        assert second.get("/agent").status == 403
        # rotate-secret and disable end every session of the agent
        third = Browser(base)
        assert third.get(url).status == 200 and third.get("/agent").status == 200
        with db.transaction(desk.p.sessions) as s:
            agents.rotate_secret(s, "alice")
        assert third.get("/agent").status == 403


def _copy(browser: Browser, value: str):  # type: ignore[no-untyped-def]
    """The session cookie of `browser`, with another value (what a thief would send)."""
    import copy

    [c] = [c for c in browser.jar if c.name == "otrs_mailgate_session"]
    stolen = copy.copy(c)
    stolen.value = value
    return stolen


@pytest.mark.parametrize(
    "query",
    ["state:open", "owner:none", "created:2026", "created:2026-01-01..9999-12-31", "queue:Hotline"],
)
def test_searches_made_only_of_filters_answer(desk: Desk, query: str) -> None:
    number, _ = story(desk)
    url = login_url(desk, "alice")
    with desk.p.sessions() as s:
        before = s.execute(select(func.count()).select_from(Article)).scalar_one()
    with running(desk.p.config) as daemon:
        web = Browser(f"http://127.0.0.1:{daemon.config.web.port}")
        assert web.get(url).status == 200
        page = web.get(f"/agent/search?q={query}")
    assert page.status == 200, page.body
    if query in ("state:open", "queue:Hotline", "created:2026-01-01..9999-12-31"):
        assert number in page.body
    with desk.p.sessions() as s:
        assert s.execute(select(func.count()).select_from(Article)).scalar_one() == before
