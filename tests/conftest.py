"""Fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from $OTRS_MAILGATE_TEST_PG_URL (default: the local server over
its UNIX socket, as .ci/run sets it up).  Without a server the PostgreSQL half
skips with the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from otrs_mailgate.config.schema import Config
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Base

from agent_helpers import SigningDomain
from helpers import CORPUS, TEST_DNS, make_config, need
from spam_helpers import local_dns

PG_ADMIN_URL = os.environ.get(
    "OTRS_MAILGATE_TEST_PG_URL", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)


@pytest.fixture(scope="session", autouse=True)
def test_dns() -> Iterator[None]:
    """SPF, DMARC and DKIM look-ups of every test go to a DNS server of the tests' own
    that knows no name (a test wanting records starts its own, spam_helpers.local_dns),
    never to the machine's resolver: no test waits on, or depends on, the outside."""
    if shutil.which("dnsmasq") is None:
        yield
        return
    with local_dns({}) as server:
        TEST_DNS[:] = [server]
        yield
        TEST_DNS.clear()


@pytest.fixture(autouse=True)
def stop_gpg_agents(request: pytest.FixtureRequest) -> Iterator[None]:
    """gpg starts an agent for every GnuPG home it uses (a test's own, or a site's key
    store); each is stopped when its test ends, or they would outlive the run."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")  # torn down after this one
    yield
    for ring in tmp_path.rglob("pubring.kbx"):
        subprocess.run(["gpgconf", "--homedir", str(ring.parent), "--kill", "gpg-agent"],
                       capture_output=True, check=False)  # fmt: skip


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str | None]:
    """A fresh database for this test run, migrated once; None when there is no server."""
    try:
        admin = create_engine(  # pre-ping: the outage test restarts the server under it
            db.normalise_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT", pool_pre_ping=True
        )
        with admin.connect() as conn:
            name = f"otrs_mailgate_test_{uuid.uuid4().hex[:8]}"
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.pg_unavailable = f"no PostgreSQL at {PG_ADMIN_URL}: {exc}"  # type: ignore[attr-defined]
        yield None
        return
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite"
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """For the tests that are about SQLite itself (its locks)."""
    path = tmp_path / "test.sqlite"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def corpus() -> Path:
    """../shared/corpus, the real-world mails every build must ingest."""
    need(CORPUS.is_dir(), f"the shared corpus is not at {CORPUS} (set OTRS_MAILGATE_CORPUS)")
    return CORPUS


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "test.sqlite"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    yield _empty_pg(request)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty PostgreSQL database, for what only PostgreSQL can show
    (several processes at once on one database)."""
    return _empty_pg(request)


def _empty_pg(request: pytest.FixtureRequest) -> str:
    url = request.getfixturevalue("pg_base_url")
    need(url is not None, getattr(pytest, "pg_unavailable", "no PostgreSQL"))
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def config(db_url: str) -> Config:
    return make_config(db_url)


@pytest.fixture
def pipeline(config: Config) -> Iterator[Pipeline]:
    p = Pipeline(config)
    yield p
    p.engine.dispose()


@pytest.fixture(scope="session")
def signing() -> SigningDomain:
    """The agents' mail domain with its DKIM key (one for the whole run)."""
    return SigningDomain()
