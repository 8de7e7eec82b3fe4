"""`otrs-mailgate doctor`: check a live installation and say what is wrong and how to fix it.

Each check gives one line or more: ok, warn or fail, what it found, and for warn and
fail the fix.  It only reads: the config, the database (schema, history chains,
grants), file modes, DNS (the DKIM key, when DNS answers), the Postfix that
`postconf` reads (what `postfix-config` would write, the maps answering for every
queue address), and the outgoing MTA, rspamd and the key directory where configured.
Exit 0: all ok; 1: warnings; 2: failures.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from otrs_mailgate.admin.base import Ctx, pass_ctx


@dataclass
class Finding:
    check: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def ok(check: str, detail: str) -> Finding:
    return Finding(check, "ok", detail)


def warn(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, "warn", detail, fix)


def fail(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, "fail", detail, fix)


Checks = Iterator[Finding]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the findings.")
@click.option(
    "--postfix-dir",
    default=None,
    metavar="DIR",
    help="The Postfix configuration to read (postconf -c DIR; default: Postfix's own).",
)
@click.option("--no-dns", is_flag=True, help="Skip the DNS look-ups (DKIM key).")
@pass_ctx
def doctor(ctx: Ctx, as_json: bool, postfix_dir: str | None, no_dns: bool) -> None:
    """Check the installation: config, database, file modes, DKIM in DNS, Postfix, the
    outgoing MTA, the status page, grants, SLAs, spam and crypto settings.
    Exit 0 all ok, 1 warnings, 2 failures."""
    findings = list(run_checks(ctx, postfix_dir, dns=not no_dns))
    worst = max((("ok", "warn", "fail").index(f.status) for f in findings), default=0)
    if as_json:
        click.echo(json.dumps({"findings": [asdict(f) for f in findings], "exit": worst}, indent=2))
    else:
        for f in findings:
            mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[f.status]
            click.echo(f"{mark} {f.check}: {f.detail}")
            if f.fix:
                click.echo(f"     fix: {f.fix}")
        counts = {s: sum(f.status == s for f in findings) for s in ("ok", "warn", "fail")}
        click.echo(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")
    sys.exit(worst)


def run_checks(ctx: Ctx, postfix_dir: str | None, dns: bool) -> Checks:
    from otrs_mailgate.config.schema import ConfigError

    try:
        config = ctx.config
    except (ConfigError, SystemExit) as exc:
        yield fail("config", str(exc), "correct the config file; `serve` refuses it too")
        return
    yield ok("config", f"{config.source or 'defaults'} read")
    for warning in config.warnings:
        yield warn("config", warning, "remove or correct the key (a typo is never read)")
    steps: list[Callable[[], Checks]] = [
        lambda: _database(ctx),
        lambda: _files(ctx),
        lambda: _dkim(config, dns),
        lambda: _postfix(config, postfix_dir),
        lambda: _mta(config),
        lambda: _web(config),
        lambda: _spam(config),
        lambda: _crypto(config),
    ]
    for step in steps:
        try:
            yield from step()
        except Exception as exc:  # a check that breaks is a finding, not a traceback
            yield fail("doctor", f"a check failed to run: {type(exc).__name__}: {exc}", "")


def _database(ctx: Ctx) -> Checks:
    from sqlalchemy.exc import DBAPIError

    from otrs_mailgate.store import db

    config = ctx.config
    engine = db.make_engine(config.database.url)
    try:
        try:
            revision = db.check_ready(engine)
        except (db.DatabaseProblem, DBAPIError) as exc:
            yield fail(
                "database", db.explain(exc), "start the database, or run `otrs-mailgate init`"
            )
            return
        yield ok(
            "database", f"{engine.url.render_as_string(hide_password=True)}, schema {revision}"
        )
        yield from _grants_and_slas(ctx, engine)
        yield from _audit(ctx)
    finally:
        engine.dispose()


def _grants_and_slas(ctx: Ctx, engine: Any) -> Checks:
    from sqlalchemy import select

    from otrs_mailgate.store.models import Company, Queue
    from otrs_mailgate.tickets import agents

    config = ctx.config
    with engine.connect() as conn:
        ids = dict(conn.execute(select(Queue.name, Queue.id)).all())
        idle = [
            q.name
            for q in config.queue
            if not q.junk and not (ids.get(q.name) and agents.workers(conn, ids[q.name]))
        ]
        for name in idle:
            yield warn(
                "grants",
                f"queue {name}: no enabled agent has rw, nobody is told of its mail",
                f"otrs-mailgate queue grant {name} AGENT rw",
            )
        if not idle:
            yield ok("grants", "every queue has an enabled agent with rw")
        companies = {n.lower() for n in conn.execute(select(Company.name)).scalars()}
    calendars = {c.name for c in config.calendar}
    for rule in config.sla:
        if rule.calendar not in calendars:
            yield fail(
                "sla",
                f"SLA {rule.name} names calendar {rule.calendar!r}, which is not defined",
                "add a [[calendar]] of that name or correct the SLA",
            )
        unknown = [c for c in rule.companies if c.lower() not in companies]
        if unknown:
            yield warn(
                "sla",
                f"SLA {rule.name} names unknown companies: {', '.join(unknown)}",
                "otrs-mailgate company add NAME --domain DOMAIN, or correct the SLA",
            )
    if config.sla:
        yield ok(
            "sla", f"{len(config.sla)} SLA(s), calendars {', '.join(sorted(calendars)) or '-'}"
        )


def _audit(ctx: Ctx) -> Checks:
    from otrs_mailgate.tickets.history import Broken, keys_for, verify

    keys = keys_for(ctx.config, create=False)
    broken, rows = 0, 0
    with ctx.session() as session:
        for item in verify(session, keys, None):  # as `audit verify` walks them
            if isinstance(item, Broken):
                broken += 1
            elif isinstance(item, int):
                rows = item
    if broken:
        yield fail(
            "audit",
            f"{broken} broken link(s) in the history chains",
            "otrs-mailgate audit verify lists them; restore from a backup",
        )
    else:
        yield ok("audit", f"history chains intact ({rows} rows)")
    if not keys.keys:
        yield warn(
            "audit",
            "no audit key: the chain is plain SHA-256",
            "set [system] audit_keys and run `otrs-mailgate init`",
        )


def _files(ctx: Ctx) -> Checks:
    from otrs_mailgate.admin.system import _loose_files

    loose = _loose_files(ctx)
    for problem in loose:
        yield fail("files", problem, "chmod 600 the file (and chown it to the daemon's user)")
    key_dir = ctx.config.crypto.key_dir
    if key_dir and Path(key_dir).exists() and Path(key_dir).stat().st_mode & 0o077:
        yield fail("files", f"{key_dir} may be read by others", f"chmod 700 {key_dir}")
    if not loose:
        yield ok("files", "database and keys are the owner's alone")


def _dkim(config: Any, use_dns: bool) -> Checks:
    dk = config.dkim
    if not dk.key_file:
        yield warn(
            "dkim",
            "mail we send is not DKIM-signed",
            "otrs-mailgate dkim keygen, publish the record, set [dkim] key_file",
        )
        return
    path = Path(dk.key_file)
    if not path.exists():
        yield fail("dkim", f"key_file {path} does not exist", "otrs-mailgate dkim keygen")
        return
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    mine = base64.b64encode(public).decode()
    name = f"{dk.selector or 'mailgate'}._domainkey.{dk.domain or config.system.domain}"
    if not use_dns:
        yield ok("dkim", f"{path} readable; DNS not asked (--no-dns)")
        return
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver()
    if config.system.dns_servers:
        server = config.system.dns_servers[0]
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        resolver.nameservers = [host or server]
        if port:
            resolver.port = int(port)
    resolver.lifetime = 5
    try:
        answer = resolver.resolve(name, "TXT")
    except dns.resolver.NXDOMAIN:
        yield fail("dkim", f"no TXT record {name}", "publish the record `dkim keygen` printed")
        return
    except (dns.exception.DNSException, OSError) as exc:
        yield warn(
            "dkim",
            f"could not ask DNS for {name}: {type(exc).__name__}",
            "check again where DNS answers",
        )
        return
    texts = ["".join(s.decode() for s in r.strings) for r in answer]
    published = [t.replace(" ", "").partition("p=")[2].split(";")[0] for t in texts]
    if mine in published:
        yield ok("dkim", f"{name} publishes the key of {path}")
    else:
        yield fail(
            "dkim",
            f"{name} publishes another key than {path}",
            "publish the record for this key (or point key_file at the published one)",
        )


def postconf(postfix_dir: str | None, name: str) -> str | None:
    command = ["postconf", *(["-c", postfix_dir] if postfix_dir else []), "-h", name]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return done.stdout.strip() if done.returncode == 0 else None


def _postfix(config: Any, postfix_dir: str | None) -> Checks:
    from otrs_mailgate.admin import postfix

    if shutil.which("postconf") is None:
        yield warn(
            "postfix",
            "no postconf here: Postfix not checked",
            "run doctor on the mail server, or install postfix",
        )
        return
    if postconf(postfix_dir, "mail_version") is None:
        yield fail(
            "postfix",
            f"postconf cannot read {postfix_dir or 'the Postfix config'}",
            "name the folder with --postfix-dir",
        )
        return
    relay = _list(postconf(postfix_dir, "relay_domains"))
    for domain in postfix.domains(config):
        if domain not in relay:
            yield fail(
                "postfix",
                f"relay_domains does not list {domain}",
                "otrs-mailgate postfix-config, merge its main.cf lines",
            )
    transport = _list(postconf(postfix_dir, "transport_maps"))
    recipients = _list(postconf(postfix_dir, "relay_recipient_maps"))
    for table in [*transport, *recipients]:
        yield from _indexed(table)
    want = {postfix.destination(config)}
    for address in postfix.addresses(config):
        routed = _lookup(transport, address, postfix_dir)
        if routed is None:
            yield fail(
                "postfix",
                f"transport_maps ({', '.join(transport) or 'none'}) do not route {address}",
                "postfix-config --write DIR, postmap the transport map, postfix reload",
            )
        elif routed.split(",")[0].strip() not in want and not routed.startswith("lmtp:"):
            yield warn(
                "postfix",
                f"{address} goes to {routed}, not our LMTP ({', '.join(want)})",
                "correct the transport map entry",
            )
        if recipients and _lookup(recipients, address, postfix_dir) is None:
            yield fail(
                "postfix",
                f"relay_recipient_maps refuse {address}: mail to it bounces",
                "postfix-config --write DIR, postmap the recipient map, postfix reload",
            )
    if not recipients:
        yield warn(
            "postfix",
            "no relay_recipient_maps: Postfix takes any recipient of the "
            "relay domains and we refuse them after the fact (backscatter)",
            "set relay_recipient_maps as postfix-config writes it",
        )
    delimiter = postconf(postfix_dir, "recipient_delimiter") or ""
    if "+" not in delimiter:
        yield fail(
            "postfix",
            f"recipient_delimiter is {delimiter!r}: agents' reply addresses "
            "(hotline+token@) bounce",
            "postconf -e 'recipient_delimiter = +'",
        )
    limit = postconf(postfix_dir, "lmtp_line_length_limit")
    if limit not in ("0", None):
        yield warn(
            "postfix",
            f"lmtp_line_length_limit = {limit}: long lines are folded on their way to us",
            "postconf -e 'lmtp_line_length_limit = 0'",
        )
    if config.milter.enabled:
        milters = postconf(postfix_dir, "smtpd_milters") or ""
        if postfix.milter(config) not in milters:
            yield warn(
                "postfix",
                f"smtpd_milters does not name our milter ({postfix.milter(config)})",
                "merge the smtpd_milters line of postfix-config",
            )
    yield ok("postfix", f"read {postfix_dir or 'the default configuration'}")


def _list(value: str | None) -> list[str]:
    """A Postfix list setting as its entries, braces kept together."""
    if not value:
        return []
    out, depth, word = [], 0, ""
    for ch in value:
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0 and (ch in ", \t\n"):
            if word:
                out.append(word)
            word = ""
        else:
            word += ch
    return [*out, word] if word else out


def _indexed(table: str) -> Checks:
    """A hash:/btree:/lmdb:/cdb: table must be postmapped after its last change."""
    kind, _, path = table.partition(":")
    suffix = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}.get(kind)
    if suffix is None or not path.startswith("/"):
        return
    source, index = Path(path), Path(path + suffix)
    if not source.exists():
        yield fail("postfix", f"{table}: {source} does not exist", "postfix-config --write DIR")
    elif not index.exists() or index.stat().st_mtime < source.stat().st_mtime:
        yield fail(
            "postfix",
            f"{source} changed after its last postmap",
            f"postmap {source} && postfix reload",
        )


def _lookup(tables: list[str], key: str, postfix_dir: str | None) -> str | None:
    """What the first of the tables answers for key (postmap -q, with the Postfix
    configuration asked about), as Postfix reads them; recipient maps may list the
    whole domain (`@domain`)."""
    config = ["-c", postfix_dir] if postfix_dir else []
    for table in tables:
        for asked in (key, "@" + key.rpartition("@")[2]):
            done = subprocess.run(
                ["postmap", *config, "-q", asked, table],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
    return None


def _reachable(host: str, port: int) -> str:
    try:
        socket.create_connection((host, port), timeout=5).close()
        return ""
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else str(exc)


def _mta(config: Any) -> Checks:
    smtp = config.smtp
    why = _reachable(smtp.host, smtp.port)
    if why:
        yield fail(
            "mta",
            f"the outgoing MTA {smtp.host}:{smtp.port} does not answer ({why}): "
            "acknowledgements and answers wait in the outbox",
            "start the MTA, or set [smtp] host/port",
        )
    else:
        yield ok("mta", f"outgoing mail goes to {smtp.host}:{smtp.port}")


def _web(config: Any) -> Checks:
    web = config.web
    if not web.enabled:
        yield ok("web", "status page off")
    elif not web.public_url:
        yield warn(
            "web",
            f"links in mail name {web.base_url()}, which only this host opens",
            "set [web] public_url to the address customers and agents reach",
        )
    elif not web.public_url.startswith("https://"):
        yield warn(
            "web",
            f"public_url {web.public_url} is not https: links travel in clear",
            "put a TLS reverse proxy in front and use its https URL",
        )
    else:
        yield ok("web", f"links name {web.public_url}")


def _spam(config: Any) -> Checks:
    spam = config.spam
    if not spam.filter:
        return
    for what, address in (("milter", spam.rspamd_milter), ("controller", spam.rspamd_controller)):
        if not address or spam.filter != "rspamd":
            continue
        hostport = address.removeprefix("inet:").removeprefix("http://").split("/")[0]
        host, _, port = hostport.rpartition(":")
        why = _reachable(host or "127.0.0.1", int(port or 80))
        if why:
            yield warn(
                "spam",
                f"rspamd's {what} {address} does not answer ({why})",
                "start rspamd, or correct [spam]",
            )
        else:
            yield ok("spam", f"rspamd's {what} answers at {address}")
    if not config.agents.authserv_id:
        yield warn(
            "spam",
            "no [agents] authserv_id: verdict headers tie to our MTA by its hostnames only",
            "set authserv_id to what our milter writes",
        )


def _crypto(config: Any) -> Checks:
    wanting = [q.name for q in config.queue if q.sign]
    if not wanting:
        return
    from otrs_mailgate.crypto.keyring import Keyring
    from otrs_mailgate.crypto.wrap import can_sign

    ring = Keyring.for_config(config)
    for queue in config.queue:
        if queue.sign and not can_sign(ring, queue.addresses[0]):
            yield fail(
                "crypto",
                f"queue {queue.name} signs, but has no key of its own",
                f"otrs-mailgate keys generate {queue.name}",
            )
    if ring is not None:
        yield ok("crypto", f"key directory {ring.root}")


COMMANDS = [doctor]
