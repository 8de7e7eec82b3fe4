"""The Postfix side, generated from our config: main.cf settings, transport and recipient maps.

Queue addresses live in relay_domains with a transport to our LMTP listener, and
relay_recipient_maps lists them, so Postfix itself refuses unknown recipients at
SMTP time (no backscatter).  recipient_delimiter = + lets token addresses
(hotline+<token>@...) match their queue address.  With several `serve` processes
(--lmtp, once each) a randmap spreads the deliveries over them.  smtpd_milters points at our
milter (in `serve`, or `otrs-mailgate milter`); milter_default_action = tempfail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from otrs_mailgate.config.schema import Config

MAPS_DIR = "/etc/postfix"
MAIN_NAME = "otrs-mailgate-main.cf"  # lines to merge into main.cf, never a main.cf
TRANSPORT_NAME = "otrs-mailgate-transport"
RECIPIENTS_NAME = "otrs-mailgate-recipients"
RECIPIENTS_MAP = f"{MAPS_DIR}/{RECIPIENTS_NAME}"
TRANSPORT_MAP = f"{MAPS_DIR}/{TRANSPORT_NAME}"


DESTINATION = re.compile(r"^(inet:[A-Za-z0-9.:\[\]-]+:\d{1,5}|unix:/[^\s,{}]+)$")


def destination(config: Config) -> str:
    lmtp = config.lmtp
    if lmtp.socket:
        return f"lmtp:unix:{lmtp.socket}"
    return f"lmtp:inet:{lmtp.host}:{lmtp.port}"


def destinations(config: Config, extra: Sequence[str] = ()) -> list[str]:
    """The LMTP nexthops: this config's daemon, or the `serve` processes named (scale-out).

    Each is inet:HOST:PORT or unix:/PATH; ValueError names one that is not.
    """
    for dest in extra:
        if not DESTINATION.match(dest):
            raise ValueError(f"{dest!r}: use inet:HOST:PORT or unix:/PATH")
    return [f"lmtp:{d}" for d in dict.fromkeys(extra)] or [destination(config)]


def transport_maps(map_file: str, nexthops: list[str]) -> str:
    """One daemon: the map.  Several: the map says which addresses are ours, and a
    randmap picks a daemon for each delivery (pipemap feeds one into the other)."""
    if len(nexthops) == 1:
        return f"hash:{map_file}"
    return f"pipemap:{{hash:{map_file}, randmap:{{{', '.join(nexthops)}}}}}"


def domains(config: Config) -> list[str]:
    return sorted({a.split("@", 1)[1] for q in config.queue if not q.junk for a in q.all_addresses})


def addresses(config: Config) -> list[str]:
    return sorted(a for q in config.queue if not q.junk for a in q.all_addresses)


def milter(config: Config) -> str:
    m = config.milter
    return f"unix:{m.socket}" if m.socket else f"inet:{m.host}:{m.port}"


# The site's own values of the list settings we add to (postconf -h, see current()):
# ours is added to theirs, never put in their place (a site's transport_maps or milters
# replaced by ours would stop its other mail, issue 27).
MERGED = ("relay_domains", "relay_recipient_maps", "transport_maps", "smtpd_milters")


def _merged(name: str, ours: str, current: Mapping[str, str] | None) -> str:
    """`name = theirs, ours`: the site's value first, ours added once."""
    theirs = (current or {}).get(name, "").strip()
    if not theirs or ours in theirs:
        return f"{name} = {theirs or ours}"
    return f"{name} = {theirs}, {ours}"


def main_cf(
    config: Config,
    transport_map: str = TRANSPORT_MAP,
    recipients_map: str = RECIPIENTS_MAP,
    lmtp: Sequence[str] = (),
    current: Mapping[str, str] | None = None,
) -> str:
    """The main.cf lines for our queues; `current`: the site's own values of the settings
    we add to (from postconf), so the lines keep them."""
    nexthops = destinations(config, lmtp)
    delimiter = (current or {}).get("recipient_delimiter", "")
    lines = [
        "# otrs-mailgate: lines to merge into /etc/postfix/main.cf (`postconf -e` each);",
        "# from `otrs-mailgate postfix-config`",
        _merged("relay_domains", ", ".join(domains(config)), current),
        *_open_relay_note(current),
        _merged("relay_recipient_maps", f"hash:{recipients_map}", current),
        *(
            ["# several daemons: each delivery goes to one of them, picked at random"]
            if len(nexthops) > 1
            else []
        ),
        _merged("transport_maps", transport_maps(transport_map, nexthops), current),
        f"recipient_delimiter = {delimiter if '+' in delimiter else delimiter + '+'}",
        "# one LMTP session may carry many recipients; each gets its own reply",
        "lmtp_destination_recipient_limit = 50",
        "# long lines go to the daemon whole, as they came (it takes lines of any length)",
        "lmtp_line_length_limit = 0",
        "# the daemon answers 451 while its database is away: retry soon (all deferred",
        "# mail of this Postfix: leave this line out to keep your site's value)",
        "minimal_backoff_time = 60s",
    ]
    if config.milter.enabled:
        ours = f"{{ {milter(config)}, {MILTER_SETTINGS} }}"
        lines += [
            "# our milter checks mail to the hotline while the sender is connected; its",
            "# settings are its own (other milters keep theirs): down (serve stopped) it",
            "# answers 451 4.7.1 and the sender retries, nothing passes unchecked; DKIM",
            "# keys come from DNS, so a slow lookup gets time before it tempfails",
        ]
        rspamd = config.spam.rspamd_milter if config.spam.filter == "rspamd" else ""
        theirs = (current or {}).get("smtpd_milters", "")
        if rspamd and rspamd not in theirs:
            lines += [
                "# rspamd's proxy first, then ours: its verdict headers are in the mail",
                "# Postfix queues (its reject action refuses at SMTP time); rspamd down lets",
                "# mail pass unscored (default_action=accept) and our checks still hold",
            ]
            ours = f"{{ {rspamd}, {RSPAMD_SETTINGS} }}, {ours}"
        lines.append(_merged("smtpd_milters", ours, current))
    return "\n".join([*lines, ""])


def _open_relay_note(current: Mapping[str, str] | None) -> list[str]:
    """The site relays domains of its own without a recipient map (every recipient
    there taken): with ours set, Postfix checks those against it too."""
    theirs = (current or {}).get("relay_domains", "")
    if not theirs or (current or {}).get("relay_recipient_maps"):
        return []
    return [
        f"# NOTE: your relay_domains ({theirs}) had no relay_recipient_maps, so every",
        "# recipient there was taken; with this line Postfix looks them up here too. To",
        "# keep taking all of them, add a map of yours before ours listing `@domain OK`.",
    ]


RSPAMD_SETTINGS = "protocol=6, default_action=accept, command_timeout=60s"
MILTER_SETTINGS = (
    "protocol=6, default_action=tempfail, connect_timeout=10s, command_timeout=60s, "
    "content_timeout=300s"
)


def current(postfix_dir: str) -> dict[str, str]:
    """The site's values of the settings our lines add to, as its Postfix reads them
    (`postconf -c DIR -h`); {} where there is no Postfix or no main.cf there."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("postconf") is None or not (Path(postfix_dir) / "main.cf").exists():
        return {}
    found = {}
    for name in (*MERGED, "recipient_delimiter"):
        done = subprocess.run(
            ["postconf", "-c", postfix_dir, "-h", "-n", name],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if done.returncode == 0 and done.stdout.strip():
            found[name] = done.stdout.strip()
    return found


def transport(config: Config, lmtp: Sequence[str] = ()) -> str:
    dest = destinations(config, lmtp)[0]
    lines = ["# otrs-mailgate: postmap this file; one line per queue address"]
    if len(destinations(config, lmtp)) > 1:
        lines.append("# (main.cf's randmap replaces the daemon named here by one of all)")
    lines += [f"{a}\t{dest}" for a in addresses(config)]
    if config.system.catch_all:  # every other address of these domains: the raw queue
        lines += [f"{d}\t{dest}" for d in domains(config)]
    return "\n".join(lines) + "\n"


def recipients(config: Config) -> str:
    lines = ["# otrs-mailgate: postmap this file; the addresses Postfix accepts for us"]
    lines += [f"{a}\tOK" for a in addresses(config)]
    if config.system.catch_all:
        lines.append(f"# system.catch_all = {config.system.catch_all}: any other address too")
        lines += [f"@{d}\tOK" for d in domains(config)]
    return "\n".join(lines) + "\n"


def next_steps(transport: object, recipients: object) -> str:
    """What to run after the files are in place."""
    return (
        "# then: merge the main.cf lines (postconf -e '...' each, or by hand), "
        f"postmap {transport} {recipients}, and postfix reload"
    )
