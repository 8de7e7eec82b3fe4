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
ALIASES_NAME = "otrs-mailgate-aliases"  # queue addresses in a virtual alias domain
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
MERGED = (
    "relay_domains", "relay_recipient_maps", "transport_maps", "smtpd_milters",
    "virtual_mailbox_maps", "virtual_alias_maps", "local_recipient_maps",
)  # fmt: skip

# How a Postfix serves a domain, in the order Postfix itself asks (ADDRESS_CLASS_README):
# the class decides which recipient table must know a queue address.
CLASSES = (
    ("mydestination", "local"),
    ("virtual_alias_domains", "virtual_alias"),
    ("virtual_mailbox_domains", "virtual_mailbox"),
    ("relay_domains", "relay"),
)


class CannotFit(ValueError):
    """A set-up postfix-config cannot write lines for; the message says why and what to do."""


def domain_classes(config: Config, postfix_dir: str) -> dict[str, str]:
    """Each queue domain's address class in the Postfix at postfix_dir ("none": a domain
    it does not serve yet, which becomes ours); {} without a Postfix there."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("postconf") is None or not (Path(postfix_dir) / "main.cf").exists():
        return {}
    found = {}
    for domain in domains(config):
        found[domain] = "none"
        for setting, kind in CLASSES:
            value = subprocess.run(
                ["postconf", "-c", postfix_dir, "-x", "-h", setting],
                capture_output=True, text=True, timeout=30,
            ).stdout  # fmt: skip
            if _lists(value, domain, postfix_dir):
                found[domain] = kind
                break
    return found


def _lists(value: str, domain: str, postfix_dir: str) -> bool:
    """Whether a Postfix domain list names the domain: literally, or in a table of it."""
    import subprocess

    for entry in re.split(r"[\s,]+", value.strip()):
        if not entry:
            continue
        if ":" in entry and not entry.startswith("["):  # type:table
            done = subprocess.run(
                ["postmap", "-c", postfix_dir, "-q", domain, entry],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if done.returncode == 0:
                return True
        elif entry.lower().rstrip(".") == domain:
            return True
    return False


def shared(classes: Mapping[str, str]) -> bool:
    """Postfix serves a queue domain already: the server carries other mail of it."""
    return any(kind != "none" for kind in classes.values())


def check_fit(config: Config, classes: Mapping[str, str]) -> None:
    """CannotFit for what no lines can do right: the raw queue takes every address of
    its domains, which is taking over a domain the site's Postfix serves already."""
    taken = [d for d, kind in classes.items() if kind != "none"]
    if config.system.catch_all and taken:
        raise CannotFit(
            f"system.catch_all takes every address of {', '.join(taken)}, which this "
            "Postfix serves already; give the hotline a subdomain of its own (e.g. "
            "help.example.com), or leave catch_all unset and list the queue addresses"
        )


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
    classes: Mapping[str, str] | None = None,
    aliases_map: str = "",
) -> str:
    """The main.cf lines for our queues; `current`: the site's own values of the settings
    we add to (from postconf), so the lines keep them; `classes`: how the site's Postfix
    serves each queue domain already (domain_classes), so a domain it serves is not
    taken over: its queue addresses are routed by transport_maps entries and made known
    to the recipient table of that domain's class."""
    classes = classes or {}
    check_fit(config, classes)
    nexthops = destinations(config, lmtp)
    delimiter = (current or {}).get("recipient_delimiter", "")
    kinds = {classes.get(d, "none") for d in domains(config)}
    new = [d for d in domains(config) if classes.get(d, "none") == "none"]
    ours = f"hash:{recipients_map}"
    lines = [
        "# otrs-mailgate: lines to merge into /etc/postfix/main.cf (`postconf -e` each);",
        "# from `otrs-mailgate postfix-config`",
    ]
    if new:
        lines += [_merged("relay_domains", ", ".join(new), current), *_open_relay_note(current)]
    if kinds & {"none", "relay"}:
        lines.append(_merged("relay_recipient_maps", ours, current))
    lines += _shared_lines(classes, ours, aliases_map, current)
    lines += [
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
        if shared(classes):
            ours = f"{{ {milter(config)}, {MILTER_SHARED} }}"
            lines += [
                "# our milter checks mail to the hotline while the sender is connected and",
                "# answers every other recipient at once; this server carries other mail of",
                "# these domains, so while the milter is down (serve stopped) mail passes",
                "# (default_action=accept) instead of all of it being deferred: the hotline's",
                "# waits in Postfix's queue for the daemon, which checks it on delivery",
            ]
        else:
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


def open_relay_domains(current: Mapping[str, str] | None) -> list[str]:
    """The site's relay domains that took any recipient (no relay_recipient_maps): once
    ours is set Postfix checks every relay domain against it, so ours lists them whole
    (`@domain OK`) and they go on taking any recipient, as before."""
    theirs = (current or {}).get("relay_domains", "")
    if not theirs or (current or {}).get("relay_recipient_maps"):
        return []
    return [d.lower() for d in re.split(r"[\s,]+", theirs) if d and ":" not in d and "$" not in d]


def _open_relay_note(current: Mapping[str, str] | None) -> list[str]:
    """Relay domains of the site in a table (not listed one by one): ours cannot list
    them, so say what changes for them."""
    theirs = (current or {}).get("relay_domains", "")
    if not theirs or (current or {}).get("relay_recipient_maps"):
        return []
    tables = [d for d in re.split(r"[\s,]+", theirs) if ":" in d or "$" in d]
    if not tables:
        return [f"# your relay domains ({theirs}) took any recipient: the recipient map",
                "# lists them whole (@domain OK), so they still do"]  # fmt: skip
    return [
        f"# NOTE: your relay_domains ({theirs}) had no relay_recipient_maps, so every",
        "# recipient there was taken; with this line Postfix looks them up here too. To",
        "# keep taking all of them, add a map of yours before ours listing `@domain OK`.",
    ]


def _shared_lines(
    classes: Mapping[str, str], ours: str, aliases_map: str, current: Mapping[str, str] | None
) -> list[str]:
    """The recipient tables of the domains the site serves already: each learns the
    queue addresses (and only them), the rest of the domain stays the site's."""
    kinds = set(classes.values())
    lines = []
    if "virtual_mailbox" in kinds:
        lines += [
            "# queue addresses in your virtual mailbox domain(s): known to the mailbox",
            "# table, delivered to us by the transport map (the rest stays yours)",
            _merged("virtual_mailbox_maps", ours, current),
        ]
    if "virtual_alias" in kinds:
        lines += [
            "# queue addresses in your virtual alias domain(s): each an alias of itself",
            _merged("virtual_alias_maps", f"hash:{aliases_map}", current),
        ]
    if "local" in kinds:
        theirs = (current or {}).get("local_recipient_maps", "")
        lines += (
            [
                "# queue addresses in a local domain (mydestination): known to the local",
                "# recipient table, delivered to us by the transport map",
                _merged("local_recipient_maps", ours, current),
            ]
            if theirs
            else ["# a local domain that takes any recipient (local_recipient_maps empty)"]
        )
    return lines


def aliases(config: Config) -> str:
    lines = ["# otrs-mailgate: postmap this file; queue addresses in a virtual alias domain"]
    lines += [f"{a}\t{a}" for a in addresses(config)]
    return "\n".join(lines) + "\n"


RSPAMD_SETTINGS = "protocol=6, default_action=accept, command_timeout=60s"
MILTER_SHARED = (
    "protocol=6, default_action=accept, connect_timeout=10s, command_timeout=60s, "
    "content_timeout=300s"
)
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


def recipients(config: Config, keep: Sequence[str] = ()) -> str:
    """The addresses Postfix accepts for us; `keep`: the site's relay domains that took
    any recipient before (open_relay_domains), listed whole so they still do."""
    lines = ["# otrs-mailgate: postmap this file; the addresses Postfix accepts for us"]
    lines += [f"{a}\tOK" for a in addresses(config)]
    if keep:
        lines.append("# your relay domains, which took any recipient before: they still do")
        lines += [f"@{d}\tOK" for d in keep if d not in domains(config)]
    if config.system.catch_all:
        lines.append(f"# system.catch_all = {config.system.catch_all}: any other address too")
        lines += [f"@{d}\tOK" for d in domains(config)]
    return "\n".join(lines) + "\n"


def next_steps(*maps: object) -> str:
    """What to run after the files are in place."""
    return (
        "# then: merge the main.cf lines (postconf -e '...' each, or by hand), "
        f"postmap {' '.join(str(m) for m in maps)}, and postfix reload"
    )
