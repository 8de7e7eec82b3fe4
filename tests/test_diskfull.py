"""The disk under the SQLite database fills up (issue 9, part 3): new mail gets 451 and
is not stored, the database stays intact, and mail goes in again once there is space.

The database lives on a small tmpfs mounted for the test (root only); a filler file
takes the rest of it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article

from helpers import mail, make_config, need
from lmtp_helpers import RawLMTP, running

HOT = "hotline@example.com"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    need(os.geteuid() == 0, "mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True
    )
    need(mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def stored(url: str, subject: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(Article).where(Article.subject == subject)
        ).scalar_one()
    engine.dispose()
    return n


def test_disk_full_is_451_then_mail_goes_in_again(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk}/mailgate.sqlite"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    config = make_config(url)
    with running(config) as daemon:
        client = RawLMTP(daemon.config.lmtp.port)
        client.cmd("LHLO disk.test")
        for i in range(10):
            _, [reply] = client.send(
                "a@b.test", [HOT], mail(f"Before {i}", ("x" * 70 + "\r\n") * 30)
            )
            assert reply.startswith("250"), reply
        filler = fill(small_disk)
        refused: list[tuple[str, bytes]] = []
        accepted: list[str] = []
        for i in range(60):  # until the full disk shows (WAL space may be reused a while)
            subject = f"During {i}"
            raw = mail(subject, ("y" * 70 + "\r\n") * 300)
            _, [reply] = client.send("a@b.test", [HOT], raw)
            if reply.startswith("451"):
                refused.append((subject, raw))
            else:
                assert reply.startswith("250"), reply
                accepted.append(subject)
            if len(refused) >= 3:
                break
        print(f"disk full: {len(accepted)} still accepted, {len(refused)} refused with 451")
        assert refused, "the disk never filled"
        for subject, _ in refused:
            assert stored(url, subject) == 0, f"{subject}: answered 451 yet stored"
        for subject in accepted:
            assert stored(url, subject) == 1, f"{subject}: answered 250 yet not stored"
        filler.unlink()
        for _subject, raw in refused:  # Postfix tries again
            _, [reply] = client.send("a@b.test", [HOT], raw)
            assert reply.startswith("250"), reply
        client.close()
    check = create_engine(url)
    with check.connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
    check.dispose()
    for subject, _ in refused:
        assert stored(url, subject) == 1
    for i in range(10):
        assert stored(url, f"Before {i}") == 1
