"""The Postfix side, generated from our config: main.cf settings, transport and recipient maps.

Queue addresses live in relay_domains with a transport to our LMTP listener, and
relay_recipient_maps lists them, so Postfix itself refuses unknown recipients at
SMTP time (no backscatter).  recipient_delimiter = + lets token addresses
(hotline+<token>@...) match their queue address.  smtpd_milters points at our
milter (in `serve`, or `otrs-mailgate milter`); milter_default_action = tempfail.
"""

from __future__ import annotations

from .config import Config

RECIPIENTS_MAP = "/etc/postfix/otrs-mailgate-recipients"
TRANSPORT_MAP = "/etc/postfix/otrs-mailgate-transport"


def destination(config: Config) -> str:
    lmtp = config.lmtp
    if lmtp.socket:
        return f"lmtp:unix:{lmtp.socket}"
    return f"lmtp:inet:{lmtp.host}:{lmtp.port}"


def domains(config: Config) -> list[str]:
    return sorted({a.split("@", 1)[1] for q in config.queue for a in q.addresses})


def addresses(config: Config) -> list[str]:
    return sorted(a for q in config.queue for a in q.addresses)


def milter(config: Config) -> str:
    m = config.milter
    return f"unix:{m.socket}" if m.socket else f"inet:{m.host}:{m.port}"


def main_cf(
    config: Config, transport_map: str = TRANSPORT_MAP, recipients_map: str = RECIPIENTS_MAP
) -> str:
    lines = [
        "# otrs-mailgate: for /etc/postfix/main.cf (from `otrs-mailgate postfix-config`)",
        f"relay_domains = {', '.join(domains(config))}",
        f"relay_recipient_maps = hash:{recipients_map}",
        f"transport_maps = hash:{transport_map}",
        "recipient_delimiter = +",
        "# one LMTP session may carry many recipients; each gets its own reply",
        "lmtp_destination_recipient_limit = 50",
        "# the daemon answers 451 while its database is away: retry soon",
        "minimal_backoff_time = 60s",
    ]
    if config.milter.enabled:
        lines += [
            "# our milter checks mail to the hotline while the sender is connected",
            f"smtpd_milters = {milter(config)}",
            "milter_protocol = 6",
            "# milter down (serve stopped): answer 451 4.7.1, the sender retries; nothing",
            "# passes unchecked and nothing is lost",
            "milter_default_action = tempfail",
            "milter_connect_timeout = 10s",
            "# DKIM keys come from DNS: give a slow lookup time before tempfailing",
            "milter_command_timeout = 60s",
            "milter_content_timeout = 300s",
        ]
    return "\n".join([*lines, ""])


def transport(config: Config) -> str:
    dest = destination(config)
    lines = ["# otrs-mailgate: postmap this file; one line per queue address"]
    lines += [f"{a}\t{dest}" for a in addresses(config)]
    return "\n".join(lines) + "\n"


def recipients(config: Config) -> str:
    lines = ["# otrs-mailgate: postmap this file; the addresses Postfix accepts for us"]
    lines += [f"{a}\tOK" for a in addresses(config)]
    return "\n".join(lines) + "\n"
