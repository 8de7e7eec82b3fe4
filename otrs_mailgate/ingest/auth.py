"""Is this mail an agent's command mail?  All of these, or it is a plain follow-up:

- a valid, unexpired token for this purpose in the recipient address;
- the agent exists and is enabled;
- From is that agent's registered address (never Reply-To or Sender);
- DKIM passes, aligned with the From domain (dkimpy), or an Authentication-Results
  header with our own authserv-id says so (only when one is configured), unless
  the policy is `dkim = optional`;
- the Message-ID has not been seen before (no replays);
- the Date is within the configured window;
- no From, Sender, To, Cc, Subject, Date, Message-ID, In-Reply-To or References comes
  twice;
- the passing DKIM signature signs every one of From, To, Cc, Subject, Date, Message-ID,
  In-Reply-To and References the mail has, and the whole body (no `l=` shorter than
  it): a copy of an agent's mail with a new Message-ID, a swapped Subject or text
  appended below the signed part is another mail (issue 25).

Every failing check is named, so the transcript can say exactly why.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import authres
import dkim
from sqlalchemy import Connection, bindparam, select

from otrs_mailgate.config.schema import AgentsConfig
from otrs_mailgate.mail import addresses, tokens
from otrs_mailgate.mail.parse import ParsedMail, raw_headers, spec
from otrs_mailgate.site import Site
from otrs_mailgate.store.models import MessageRef
from otrs_mailgate.tickets import agents, refs
from otrs_mailgate.tickets.agents import AgentRef

log = logging.getLogger(__name__)
DNSFunc = Callable[..., bytes | None]
# Headers a command mail has once: with two, the DKIM verifier (the bottom one) and the
# parser (the top one) would read different mails.
SINGLE_HEADERS = (
    "From", "Sender", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References"
)  # fmt: skip
# What the DKIM signature of a command mail must sign, of those the mail has.
COVERED = ("from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references")


@dataclass
class Verdict:
    token: tokens.Token | None  # what the token says (verified only when ok)
    agent: AgentRef | None  # whom to tell: the agent the token names, if it exists
    reasons: list[str] = field(default_factory=list)
    ticket_id: int | None = None  # the token's ticket: its MAC holds and the ticket exists
    authentic: bool = False  # the token's MAC holds (it may still be expired or the like)

    @property
    def ok(self) -> bool:
        return (
            not self.reasons
            and self.agent is not None
            and self.token is not None
            and self.ticket_id is not None
        )


def dns_with_pins(pins: Mapping[str, bytes], fallback: DNSFunc | None) -> DNSFunc:
    def lookup(name: bytes | str, timeout: int = 5) -> bytes | None:
        key = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        if key in pins:
            return pins[key]
        if fallback is None:
            return dkim.dnsplug.get_txt(name, timeout=timeout)
        return fallback(name, timeout=timeout)

    return lookup


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment: the signing domain is the From domain or a parent of it."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return from_domain == domain or (from_domain.endswith("." + domain) and "." in domain)


@dataclass(frozen=True)
class Signature:
    """One DKIM-Signature and what became of it (RFC 8601 result words), with what it
    signs: the header names of h=, the body length of l= and the body's own length."""

    domain: str
    selector: str
    result: str  # pass | fail | permerror | temperror ("" before it was verified)
    reason: str = ""
    signed: tuple[str, ...] = ()  # h=, lower-cased
    length: int | None = None  # l=, when the signer limited the body it signs
    body_length: int = 0  # the canonical body's length under the signature's c=
    b: str = ""  # b= without white space: an Authentication-Results header.b names it

    def gaps(self, present: Mapping[str, int]) -> str:
        """Why this signature does not vouch for a command mail with these headers (name
        -> how often), or "": a header it does not sign, a body it signs only part of."""
        problems = []
        missing = [name for name in COVERED if present.get(name, 0) > self.signed.count(name)]
        if missing:
            problems.append("it does not sign " + ", ".join(missing))
        if self.length is not None and self.length < self.body_length:
            unsigned = self.body_length - self.length
            problems.append(f"its l={self.length} leaves {unsigned} bytes of the body unsigned")
        return "; ".join(problems)


def present(mail: ParsedMail) -> dict[str, int]:
    """How often each header a command mail's signature must sign occurs."""
    return {name: len(raw_headers_of(mail, name)) for name in COVERED}


def _declared(checker: dkim.DKIM) -> list[Signature]:
    """Every DKIM-Signature as it declares itself (not verified): d=, s=, h=, l=, b=."""
    found = []
    for name, value in checker.headers:
        if name.lower() != b"dkim-signature":
            continue
        try:
            tags = dkim.util.parse_tag_value(value)
        except Exception:
            found.append(Signature("", "", ""))
            continue
        length = tags.get(b"l", b"").strip()
        try:
            canon = dkim.CanonicalizationPolicy.from_c_value(tags.get(b"c", b"simple/simple"))
            body_length = len(canon.canonicalize_body(checker.body))
        except Exception:
            body_length = 0
        found.append(
            Signature(
                _ascii(tags.get(b"d", b"")),
                _ascii(tags.get(b"s", b"")),
                "",
                signed=tuple(
                    _ascii(h).strip().lower() for h in tags.get(b"h", b"").split(b":") if h.strip()
                ),
                length=int(length) if length.isdigit() else None,
                body_length=body_length,
                b=_ascii(re.sub(rb"\s+", b"", tags.get(b"b", b""))),
            )
        )
    return found


def _ascii(value: bytes) -> str:
    return value.decode("ascii", "replace")


_DKIM_FIELD = re.compile(rb"(?:^|\n)dkim-signature[ \t]*:", re.IGNORECASE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")


def _signed(raw: bytes) -> bool:
    """Whether the header block has a DKIM-Signature field at all."""
    end = _HEAD_END.search(raw)
    return _DKIM_FIELD.search(raw, 0, end.start() if end else len(raw)) is not None


def signatures(raw: bytes, dnsfunc: DNSFunc) -> list[Signature]:
    """Every DKIM-Signature of a message, verified; [] when it has none.  A message
    dkimpy cannot read at all gives one permerror."""
    if not _signed(raw):  # dkimpy would copy a big mail's body a few times to say so
        return []
    try:
        checker = dkim.DKIM(raw, timeout=5)
        declared = _declared(checker)
    except Exception as exc:
        return [Signature("", "", "permerror", f"the message cannot be checked ({exc})")]
    found = []
    for idx, sig in enumerate(declared):
        try:
            ok = checker.verify(idx=idx, dnsfunc=dnsfunc)
            result, reason = ("pass", "") if ok else ("fail", "signature does not verify")
        except dkim.ValidationError as exc:  # e.g. the body hash does not match
            result, reason = "fail", str(exc)
        except dkim.DKIMException as exc:  # no usable key, a malformed signature
            result, reason = "permerror", str(exc)
        except Exception as exc:  # DNS trouble: worth trying again later
            result, reason = "temperror", f"{type(exc).__name__}: {exc}"
        found.append(dataclasses.replace(sig, result=result, reason=reason))
    return found


def dkim_verdict(
    found: list[Signature], from_domain: str, headers: Mapping[str, int] | None = None
) -> tuple[bool, str]:
    """(an aligned signature passes, what was found); with `headers` (what a command mail
    has), the passing signature must also sign them and the whole body."""
    if not found:
        return False, "DKIM: the mail is not signed"
    seen = []
    for sig in found:
        if sig.result == "pass" and aligned(sig.domain, from_domain):
            gaps = sig.gaps(headers) if headers is not None else ""
            if not gaps:
                return True, f"DKIM pass, d={sig.domain}"
            seen.append(f"d={sig.domain} passes, but {gaps}")
        elif sig.result == "pass":
            seen.append(f"d={sig.domain} passes but is not aligned with {from_domain}")
        else:
            word = "fails" if sig.result == "fail" else sig.result
            seen.append(f"d={sig.domain or '?'} {word}: {sig.reason}")
    return False, "DKIM: " + "; ".join(seen)


def dkim_result(
    raw: bytes, from_domain: str, dnsfunc: DNSFunc, headers: Mapping[str, int] | None = None
) -> tuple[bool, str]:
    """(an aligned signature verifies, what was found) over every DKIM-Signature."""
    return dkim_verdict(signatures(raw, dnsfunc), from_domain, headers)


def _parse_results(value: str) -> authres.AuthenticationResultsHeader | None:
    try:
        return authres.AuthenticationResultsHeader.parse_value(value)
    except Exception:
        return None


def claims_ours(value: str, authserv_id: str) -> bool:
    """An Authentication-Results value the milter deletes: it names our authserv-id, or
    it cannot be read (so nobody reads it one way here and another way there).  The
    daemon reads with the same parser (authres), so a comment glued to the id
    (`mx.example(x); dkim=pass`) is ours to both (issue 19, item 4)."""
    header = _parse_results(value)
    if header is None:
        return True
    return bool(authserv_id) and str(header.authserv_id).lower() == authserv_id.lower()


def our_results(mail: ParsedMail, authserv_id: str) -> authres.AuthenticationResultsHeader | None:
    """The topmost Authentication-Results, when it carries our authserv-id (the milter
    puts its own on top and deletes every other claiming that id)."""
    if not authserv_id or mail.message is None:
        return None
    values = raw_headers(mail.message, "Authentication-Results")
    header = _parse_results(values[0]) if values else None
    if header is not None and str(header.authserv_id).lower() == authserv_id.lower():
        return header
    return None


def trusted_results(
    mail: ParsedMail,
    authserv_id: str,
    from_domain: str,
    headers: Mapping[str, int] | None = None,
) -> tuple[bool, str]:
    """The milter's Authentication-Results with an aligned dkim=pass.  Only the topmost
    such header is read: the milter inserts its own at the top and deletes every other
    that claims our authserv-id, so anything below is somebody else's.  With `headers`
    the signature it names (header.b) must also sign them and the whole body: that is
    read from the DKIM-Signature itself, the result says nothing of it."""
    if not authserv_id or mail.message is None:
        return False, ""
    values = raw_headers(mail.message, "Authentication-Results")
    header = _parse_results(values[0]) if values else None
    gaps = ""
    if header is not None and str(header.authserv_id).lower() == authserv_id.lower():
        for result in header.results:
            if result.method != "dkim" or result.result != "pass":
                continue
            props = {(p.type, p.name): str(p.value) for p in result.properties}
            signer = props.get(("header", "d")) or props.get(("header", "i")) or ""
            if not aligned(signer.rpartition("@")[2], from_domain):
                continue
            if headers is not None:
                gaps = _gaps_of(mail, props.get(("header", "b"), ""), headers)
                if gaps:
                    continue
            return True, f"Authentication-Results of {authserv_id}: dkim=pass"
    if gaps:
        return False, f"Authentication-Results of {authserv_id}: dkim=pass, but {gaps}"
    return False, f"no Authentication-Results of {authserv_id} with an aligned dkim=pass"


def _gaps_of(mail: ParsedMail, named: str, headers: Mapping[str, int]) -> str:
    """What the signature an Authentication-Results header.b names leaves unsigned."""
    if len(named) < 8:
        return "the result names no signature (header.b)"
    try:
        declared = _declared(dkim.DKIM(mail.raw, timeout=5))
    except Exception as exc:
        return f"the message cannot be checked ({exc})"
    for sig in declared:
        if sig.b.startswith(named):
            return sig.gaps(headers)
    return "the signature it names is not in the mail"


def check_token(conn: Connection, token_text: str, now: dt.datetime) -> Verdict:
    """What the reply address alone says: a token of ours, for an enabled agent, valid."""
    claimed = tokens.peek(token_text)
    if claimed is None:
        return Verdict(None, None, ["the reply address carries no valid token"])
    agent = agents.by_id(conn, claimed.agent_id)
    verdict = Verdict(claimed, agent)
    if agent is None:
        verdict.reasons.append("the token names no agent of ours")
        return verdict
    verdict.authentic = tokens.authentic(token_text, agent.secret)
    try:
        verdict.token = tokens.verify(token_text, agent.secret, "command", now.date())
    except tokens.TokenError as exc:
        verdict.reasons.append(str(exc))
    if not agent.enabled:
        verdict.reasons.append(f"agent {agent.login} is disabled")
    return verdict


def check(
    conn: Connection,
    config: AgentsConfig,
    mail: ParsedMail,
    token_text: str,
    now: dt.datetime,
    dnsfunc: DNSFunc,
    dkim_found: list[Signature] | None = None,
) -> Verdict:
    """Every check; dkim_found are the signatures already verified on these bytes (the
    milter's, before it has written its Authentication-Results)."""
    verdict = check_token(conn, token_text, now)
    agent = verdict.agent
    if agent is None:
        return verdict
    froms = [a for a in email.utils.getaddresses(raw_headers_of(mail, "From")) if "@" in a[1]]
    sender = froms[0][1].strip() if len(froms) == 1 else ""
    if addresses.imitates(sender, agent.address):  # a Kelvin sign for a k, fullwidth, ...
        verdict.reasons.append(
            f"From {sender} imitates the agent's address {agent.address} with look-alike characters"
        )
    elif len(froms) != 1 or spec(sender) != agent.address:  # exact: A-Z lower-cased only
        shown = mail.from_addr or "(none)"
        verdict.reasons.append(f"From is {shown}, not the agent's address {agent.address}")
    for name in SINGLE_HEADERS:
        count = len(raw_headers_of(mail, name))
        if count > 1:  # DKIM covers the bottom one, a reader sees the top one (item 2)
            verdict.reasons.append(f"the mail has {count} {name} headers, a command mail one")
    if config.dkim == "required":
        from_domain = (mail.from_addr or "").rpartition("@")[2]
        headers = present(mail)
        if dkim_found is not None:
            passed, why = dkim_verdict(dkim_found, from_domain, headers)
        else:
            passed, why = trusted_results(mail, config.authserv_id, from_domain, headers)
            if not passed:
                passed, why = dkim_result(mail.raw, from_domain, dnsfunc, headers)
        if not passed:  # a signature by a key registered for the agent proves it too
            proven, said = signature_proof(conn, agent, mail, headers)
            passed, why = (True, said) if proven else (False, f"{why}; {said}" if said else why)
        if not passed:
            verdict.reasons.append(f"{why} (policy: dkim = required)")
    if not mail.message_id:
        verdict.reasons.append("the mail has no Message-ID")
    elif conn.execute(_SEL_SEEN, {"m": mail.message_id[:998]}).first() is not None:
        verdict.reasons.append(f"Message-ID <{mail.message_id}> was seen before (a replay)")
    verdict.reasons.extend(_date_problem(mail.date, now, config.date_window_hours))
    return verdict


def signature_proof(
    conn: Connection, agent: AgentRef, mail: ParsedMail, headers: Mapping[str, int]
) -> tuple[bool, str]:
    """An OpenPGP or S/MIME signature instead of DKIM (issue 29): valid, by a key
    registered for the agent (`agent add-key`), by the From address, and covering every
    header DKIM would have to sign (protected headers: a copy inside the signed part,
    as Thunderbird writes them), the subject with its commands among them."""
    shield = mail.protection
    if shield is None or not shield.signature:
        return False, ""
    if shield.signature != "valid":
        return False, f"the {shield.kind} signature is {shield.signature}"
    registered = agents.keys_of(conn, agent.id)
    fingerprint = shield.fingerprint.upper()
    if not any(fingerprint == k or fingerprint.endswith(k) for k in registered if k):
        return False, f"the {shield.kind} signature's key is not registered for {agent.login}"
    if not shield.signer_is_sender:
        return False, f"the {shield.kind} signature is not by the From address"
    missing = [name for name, count in headers.items() if count and name not in shield.covered]
    if missing:
        return False, (
            f"the {shield.kind} signature does not cover {', '.join(missing)} (send with "
            "protected headers)"
        )
    return True, f"{shield.kind} signature by {shield.signer or fingerprint}"


def reason_class(reasons: list[str]) -> str:
    """What the SMTP refusal may say of why a mail to a reply address is no command
    mail: the class of the agent's own mistake (an unsigned first reply looked like a
    wrong address, issue 27), nothing when the mail is not even from the agent (the
    token, the From: an attacker learns nothing of what held)."""
    if any(r.startswith(("From ", "the token", "agent ", "the reply address")) for r in reasons):
        return ""
    for reason in reasons:
        if reason.startswith(("DKIM", "no Authentication-Results", "Authentication-Results")):
            return "not DKIM-signed by your domain, or the signature leaves part of it out"
        if "was seen before" in reason:
            return "a copy of a mail taken before"
        if "hours away from now" in reason or "no readable Date" in reason:
            return "its Date is missing or too far from now"
        if reason.startswith("the mail has") and "headers" in reason:
            return "a header appears twice"
    return ""


def raw_headers_of(mail: ParsedMail, name: str) -> list[str]:
    return raw_headers(mail.message, name) if mail.message is not None else []


def _date_problem(date: str, now: dt.datetime, hours: int) -> list[str]:
    try:
        sent = email.utils.parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError, IndexError):
        sent = None
    if sent is None:
        return ["the mail has no readable Date"]
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=dt.UTC)
    if abs(now - sent) > dt.timedelta(hours=hours):
        return [f"the Date ({date}) is more than {hours} hours away from now"]
    return []


_SEL_SEEN = select(MessageRef.__table__.c.id).where(
    MessageRef.__table__.c.message_id == bindparam("m"),
    MessageRef.__table__.c.direction == "in",
)


def verify(
    conn: Connection,
    site: Site,
    mail: ParsedMail,
    token: str,
    dns: DNSFunc | None,
    now: dt.datetime,
) -> Verdict:
    """check, plus: the ticket the token names exists and is the one the subject names."""
    verdict = check(conn, site.config.agents, mail, token, now, dns_with_pins(site.dkim_keys, dns))
    if verdict.token is None or not verdict.authentic:
        return verdict  # nothing from a token is used before its MAC holds (item 3)
    number = refs.number_of(conn, verdict.token.ticket_id)
    if number is None:
        verdict.reasons.append("the ticket of this reply address does not exist")
        return verdict
    verdict.ticket_id = verdict.token.ticket_id
    named = [tag.number for tag in site.tags.find(mail.subject)]
    if named and number not in named:
        verdict.reasons.append(
            f"the reply address is for ticket {number}, the subject names {named[0]}"
        )
    return verdict
