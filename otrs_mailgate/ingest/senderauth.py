"""Is the sender who the mail says? SPF, DKIM and DMARC, for the automatic mail we send.

An acknowledgement, an auto-reply or a rejection goes to an address only when its
sender is authenticated for it: DMARC passes for the From domain, or SPF passes for an
envelope sender aligned with From, or a DKIM signature aligned with From passes. A
forged From never turns us into a backscatter source.

The milter, which knows the client's IP, MAIL FROM and HELO, computes all three and
writes them into our Authentication-Results (SPF with pyspf, DKIM with dkimpy, DMARC's
policy and alignment with the dmarc package, the organisational domain from the Public
Suffix List via publicsuffixlist); the daemon believes only that header (or, without
one, a DKIM signature it verifies itself: SPF needs the connection it does not see).
Lookups go to `[system] dns_servers` when set (the tests' own DNS server), else to
the system's resolver.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dmarc
import dns.resolver
import spf
from publicsuffixlist import PublicSuffixList

from otrs_mailgate.ingest import auth
from otrs_mailgate.ingest.trip import Trip

log = logging.getLogger(__name__)
TIMEOUT = 10.0  # seconds for SPF's lookups together (RFC 7208 says 20)


def configure(servers: Sequence[str]) -> None:
    """Send this process's lookups (pyspf's, dkimpy's, DMARC's) to these servers, each
    "host" or "host:port"; none: the system's resolver. One resolver for all, as the
    libraries ask dnspython's default one."""
    if not servers:
        dns.resolver.default_resolver = None  # made again from /etc/resolv.conf
        return
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = []
    ports = {}
    for server in servers:
        host, port = server.strip(), ""
        if host.count(":") == 1:  # host:port (an IPv6 address alone has more colons)
            host, _, port = host.partition(":")
        resolver.nameservers.append(host)
        if port:
            ports[host] = int(port)
    resolver.nameserver_ports = ports
    resolver.timeout = resolver.lifetime = 5.0
    dns.resolver.default_resolver = resolver


def txt(name: str | bytes, timeout: int = 5) -> bytes | None:
    """A TXT record through the configured resolver (dkimpy's dnsfunc)."""
    text = name.decode() if isinstance(name, bytes) else name
    try:
        answer = dns.resolver.resolve(text.rstrip("."), "TXT", lifetime=timeout)
    except Exception:
        return None
    for record in answer:
        return b"".join(record.strings)
    return None


@dataclass(frozen=True)
class SenderAuth:
    spf: str  # pass | fail | softfail | neutral | none | temperror | permerror
    spf_domain: str  # the domain SPF was checked for (MAIL FROM's, else HELO's)
    dmarc: str  # pass | fail | none | temperror
    policy: str  # none | quarantine | reject ("" without a record)
    from_domain: str


class _Suffixes:
    """publicsuffixlist as the dmarc package asks for it: the organisational domain."""

    def __init__(self) -> None:
        self.list = PublicSuffixList()

    def get_public_suffix(self, domain: str) -> str:
        return self.list.privatesuffix(domain.lower()) or domain.lower()


@functools.cache
def _suffixes() -> _Suffixes:
    return _Suffixes()


def check_spf(ip: str, mail_from: str, helo: str) -> tuple[str, str]:
    """(result, domain) of SPF for the connection; a null sender is checked for HELO."""
    domain = mail_from.rpartition("@")[2] if "@" in mail_from else helo
    if not ip or not domain:
        return "none", domain
    try:
        result, _why = spf.check2(i=ip, s=mail_from or f"postmaster@{helo}", h=helo or domain,
                                  querytime=TIMEOUT)  # fmt: skip
    except Exception as exc:  # a library surprise is no verdict
        log.info("SPF check of %s failed: %s", domain, exc)
        return "temperror", domain
    return str(result or "none"), domain


def check_dmarc(
    from_domain: str, spf_result: str, spf_domain: str, signatures: Sequence[auth.Signature]
) -> tuple[str, str]:
    """(result, policy) of DMARC for the From domain: its record, else its organisational
    domain's; pass when SPF or a DKIM signature passes and is aligned as the record asks."""
    if not from_domain:
        return "none", ""
    suffixes = _suffixes()
    org = suffixes.get_public_suffix(from_domain)
    record, where = _record(from_domain), from_domain
    if record is None and org != from_domain:
        record, where = _record(org), org
    if record is None:
        return "none", ""
    checker = dmarc.DMARC(publicsuffix=suffixes)
    try:
        policy = checker.parse_record(record, from_domain, org if where == org else None)
    except dmarc.Error as exc:
        log.info("DMARC record of %s unreadable: %s", where, exc)
        return "permerror", ""
    results = dmarc.AuthResults(
        spf=dmarc.SPF(spf_domain, dmarc.SPFResult(spf_result))
        if spf_domain and spf_result in {r.value for r in dmarc.SPFResult}
        else None,
        dkim=[
            dmarc.DKIM(sig.domain, dmarc.DKIMResult(sig.result))
            for sig in signatures
            if sig.domain and sig.result in {r.value for r in dmarc.DKIMResult}
        ]
        or None,
    )
    outcome = checker.get_result(policy, auth_results=results)
    subdomain = where == org and policy.sp is not dmarc.DMARCDisposition.UNSPECIFIED
    disposition = policy.sp if subdomain else policy.p
    value = getattr(disposition, "value", "") or ""
    return ("pass" if outcome.result is dmarc.DMARCResult.PASS else "fail"), str(value)


def _record(domain: str) -> str | None:
    try:
        answer = dns.resolver.resolve(f"_dmarc.{domain}", "TXT", lifetime=5.0)
    except Exception:
        return None
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    found = [t for t in texts if t.lower().startswith("v=dmarc1")]
    return found[0] if len(found) == 1 else None


def check(
    ip: str, mail_from: str, helo: str, from_domain: str, signatures: Sequence[auth.Signature]
) -> SenderAuth:
    """SPF and DMARC for one message (the DKIM signatures verified already)."""
    spf_result, spf_domain = check_spf(ip, mail_from, helo)
    dmarc_result, policy = check_dmarc(from_domain, spf_result, spf_domain, signatures)
    return SenderAuth(spf_result, spf_domain, dmarc_result, policy, from_domain)


def aligned(domain: str, from_domain: str) -> bool:
    """DMARC's relaxed alignment: the same organisational domain."""
    if not domain or not from_domain:
        return False
    a, b = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return a == b or _suffixes().get_public_suffix(a) == _suffixes().get_public_suffix(b)


def vouched(mail: Any, authserv_id: str, dnsfunc: auth.DNSFunc) -> tuple[bool, str]:
    """Is the mail's From authenticated: DMARC pass, or SPF pass for an aligned envelope
    sender, or an aligned DKIM pass, as our milter's Authentication-Results says (the
    topmost, with our authserv-id); without one, a DKIM signature verified here.
    (True, what vouched) or (False, why not)."""
    from_domain = (mail.from_addr or "").rpartition("@")[2]
    if not from_domain:
        return False, "no From address"
    header = auth.our_results(mail, authserv_id)
    if header is not None:
        seen = []
        for result in header.results:
            props = {(p.type, p.name): str(p.value) for p in result.properties}
            word = f"{result.method}={result.result}"
            if result.method == "dmarc" and result.result == "pass":
                return True, "DMARC pass"
            if result.method == "spf" and result.result == "pass":
                domain = props.get(("smtp", "mailfrom"), "").rpartition("@")[2]
                if aligned(domain, from_domain):
                    return True, f"SPF pass for {domain}"
                word += f" ({domain} not aligned with {from_domain})"
            if result.method == "dkim" and result.result == "pass":
                domain = props.get(("header", "d"), "")
                if aligned(domain, from_domain):
                    return True, f"DKIM pass for {domain}"
                word += f" ({domain} not aligned with {from_domain})"
            if result.method == "dmarc" and props.get(("policy", "dmarc")):
                word += f" (p={props[('policy', 'dmarc')]})"
            seen.append(word)
        return False, f"{from_domain} not authenticated: " + ", ".join(seen)
    for sig in auth.signatures(mail.raw, dnsfunc):
        if sig.result == "pass" and aligned(sig.domain, from_domain):
            return True, f"DKIM pass for {sig.domain}"
    return False, f"{from_domain} not authenticated: no Authentication-Results of ours, no DKIM"


def for_trip(trip: Trip) -> tuple[bool, str]:
    """vouched() for a mail on its way through the pipeline, asked only where an
    automatic answer would go out (so a mail that gets none costs no DKIM check)."""
    config = trip.site.config
    dnsfunc = auth.dns_with_pins(trip.site.dkim_keys, trip.dns)
    return vouched(trip.mail, config.agents.authserv_id, dnsfunc)
