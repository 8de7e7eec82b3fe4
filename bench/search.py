"""Search over a big database: two-word queries with one filter, 1,000,000 articles.

    python bench/search.py [--articles 1000000] [--db sqlite|URL]

The database holds --articles articles on a quarter as many tickets in 5 queues.
Each article has a subject of 5 and a text of 40 words drawn from a 20,000-word
vocabulary with Zipf's law (s = 1), as words in natural text are: the commonest
is in nearly every article, the 100th in about 4 %, the 1,000th in about 0.4 %.
Articles and their index rows are written as ingest writes them (search.document,
the same INSERT), in batches; PostgreSQL is ANALYZEd afterwards.

Measured through search.results, the code `otrs-mailgate search` and the status
page run: the median of 30 queries `WORD1 WORD2 queue:Qn` for word pairs of each
frequency class.  Goal (issue 8): under 100 ms median.  Then the status page's
queue overview (GET /agent over HTTP, as served inside `serve`) for an agent who
sees all five queues; one ticket in ten is open with a first-response deadline.
Goal: under 200 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest import scratch_databases

from otrs_mailgate.config.schema import Config
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db, search
from otrs_mailgate.store.models import Article, Ticket
from otrs_mailgate.tickets import queries

VOCABULARY = 20_000
QUEUES = [f"Q{i}" for i in range(5)]
CLASSES = {  # frequency rank ranges of the two words
    "rare (ranks 2,000-20,000)": (2000, 20000),
    "medium (ranks 200-2,000)": (200, 2000),
    "common (ranks 20-200)": (20, 200),
    "very common (ranks 2-20)": (2, 20),
}


def vocabulary(rng: random.Random) -> list[str]:
    """Pronounceable made-up words, so no engine treats any as a stop word."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered


def make_config(url: str) -> Config:
    return Config.model_validate(
        {
            "system": {"domain": "mailgate.test"},
            "database": {"url": url},
            "queue": [{"name": q, "addresses": [f"{q.lower()}@example.com"]} for q in QUEUES],
        }
    )


def load(pipeline: Pipeline, articles: int, words: list[str], rng: random.Random) -> float:
    weights = list(itertools.accumulate(1 / (r + 1) for r in range(len(words))))
    queue_ids = [pipeline.queue_id(q) for q in QUEUES]
    tickets = max(1, articles // 4)
    start = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    dialect = pipeline.engine.dialect.name
    batch = 10_000
    with pipeline.engine.begin() as conn:
        conn.execute(
            insert(Ticket.__table__),
            [
                {
                    "number": f"B{i:09d}",
                    "title": "bench",
                    "queue_id": queue_ids[i % len(queue_ids)],
                    # one in ten open, with a first response due (some overdue)
                    "state": "open" if i // 5 % 10 == 0 else "closed",
                    "closed_at": None if i // 5 % 10 == 0 else now,
                    "first_response_due": (
                        now + dt.timedelta(minutes=i % 1000 - 100) if i // 5 % 10 == 0 else None
                    ),
                    "priority": 3,
                    "language": "en",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(tickets)
            ],
        )
    for first in range(0, articles, batch):
        rows, docs = [], []
        for i in range(first, min(first + batch, articles)):
            drawn = rng.choices(words, cum_weights=weights, k=45)
            subject, body = " ".join(drawn[:5]), " ".join(drawn[5:])
            rows.append(
                {
                    "id": i + 1,
                    "ticket_id": i % tickets + 1,
                    "direction": "in",
                    "sender_type": "customer",
                    "from_addr": f"c{i % 5000}@customer.test",
                    "subject": subject,
                    "body_text": body,
                    "created_at": now,
                }
            )
            docs.append(
                {
                    "article_id": i + 1,
                    "text": search.document(subject, body, [], [rows[-1]["from_addr"]]),
                }
            )
        with pipeline.engine.begin() as conn:
            conn.execute(insert(Article.__table__), rows)
            conn.execute(search._INSERT[dialect], docs)
    if dialect == "postgresql":
        with pipeline.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - start


def measure(pipeline: Pipeline, words: list[str], rng: random.Random) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name, (low, high) in CLASSES.items():
        times = out[name] = []
        for _ in range(30):
            a, b = rng.sample(words[low:high], 2)
            query = f"{a} {b} queue:{rng.choice(QUEUES)}"
            with pipeline.sessions() as session:
                begin = time.perf_counter()
                queries.results(session, pipeline.config, query, 50)
                times.append(time.perf_counter() - begin)
    return out


def overview(pipeline: Pipeline, runs: int = 30) -> list[float]:
    """GET /agent through the status page served as `serve` serves it, for an agent who
    sees every queue; seconds per request, measured by the HTTP client."""
    import asyncio

    import aiohttp

    from otrs_mailgate.metrics import Metrics
    from otrs_mailgate.tickets import agents, links
    from otrs_mailgate.web.statuspage import COOKIE, StatusPage

    with db.transaction(pipeline.sessions) as session:
        agent = agents.add(session, "bench", "bench@agents.test", "Bench", [])
        for queue in QUEUES:
            agents.grant(session, pipeline.queue_id(queue), "bench", "ro")
    token = links.session_token(pipeline.config, agent)

    async def run() -> list[float]:
        page = StatusPage(lambda: pipeline.config, pipeline.engine, Metrics(pipeline.engine))
        await page.start("127.0.0.1", 0)
        assert page.runner is not None
        port = page.runner.addresses[0][1]
        times = []
        async with aiohttp.ClientSession(headers={"Cookie": f"{COOKIE}={token}"}) as client:
            for _ in range(runs + 1):
                begin = time.perf_counter()
                async with client.get(f"http://127.0.0.1:{port}/agent") as response:
                    body = await response.text()
                    assert response.status == 200 and "Q4" in body, response.status
                times.append(time.perf_counter() - begin)
        await page.stop()
        return times[1:]  # the first builds the template cache

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=1_000_000)
    ap.add_argument(
        "--db", default="sqlite", help="sqlite (files in ./), or a PostgreSQL admin URL"
    )
    args = ap.parse_args()
    rng = random.Random(8)
    words = vocabulary(rng)
    with (
        tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp,
        scratch_databases(args.db, tmp) as urls,
    ):
        url = urls[1]
        engine = db.make_engine(url)
        db.upgrade(engine)
        pipeline = Pipeline(make_config(url), engine)
        pipeline.ensure_queues()
        took = load(pipeline, args.articles, words, rng)
        times = measure(pipeline, words, rng)
        pages = overview(pipeline)
        engine.dispose()
    print(f"search benchmark: {args.articles} articles on {engine.dialect.name}")
    print(f"  loading articles and index:        {took:8.1f} s")
    for name, values in times.items():
        median, worst = statistics.median(values) * 1000, max(values) * 1000
        print(f"  two words + queue:, {name:<27} median {median:7.1f} ms, worst {worst:7.1f} ms")
    print("  goal: under 100 ms median")
    median, worst = statistics.median(pages) * 1000, max(pages) * 1000
    print(
        f"  status page queue overview (GET /agent, {args.articles // 40} open tickets): "
        f"median {median:.1f} ms, worst {worst:.1f} ms  (goal < 200 ms)"
    )


if __name__ == "__main__":
    main()
