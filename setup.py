"""The build's one step of its own: the manual page, made from the click commands
(otrs_mailgate/admin/manpage.py) into build/man/ before setuptools reads setup.cfg,
whose data_files install it as share/man/man1/otrs-mailgate.1.  Everything else is in
setup.cfg."""

import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def man_page() -> None:
    sys.path.insert(0, str(HERE))
    from otrs_mailgate.admin.cli import main  # needs click and pydantic (pyproject.toml)
    from otrs_mailgate.admin.manpage import render

    out = HERE / "build" / "man"
    out.mkdir(parents=True, exist_ok=True)
    (out / "otrs-mailgate.1").write_text(render(main), encoding="utf-8")


man_page()
setup()
