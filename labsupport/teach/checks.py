"""Check cells: teaching claims and exercise checks that speak in words.

Two kinds of check appear in the notebooks:

* :func:`claim` and :func:`claim_true` back a sentence of the lesson ("the first host a
  sender tries is mx1") with the lab's behaviour. A claim that holds prints a line that
  says so; one that stops being true raises :class:`~labsupport.core.errors.CheckFailed` with
  what was expected and what happened, so the notebook fails in CI.
* Exercise checks (``check_*``) take the student's answer, say whether it is right and
  give a hint when it is not. An answer that was not given yet (the answer cell raised
  ``NotImplementedError``, or the name is undefined) is reported as "not answered yet",
  not as an error. The expected answers are computed from the lab, never typed in.

Introduced in ``notebooks/00-start-here.ipynb``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import LabError
from ..dns.mx import PROBLEM_KINDS, ResolverLike, mx_hosts
from ..dns.zone import ZoneSet
from .verdicts import FAIL as FAIL
from .verdicts import PASS as PASS
from .verdicts import TODO as TODO
from .verdicts import Verdict as Verdict
from .verdicts import answer_of as answer_of
from .verdicts import claim as claim
from .verdicts import claim_true as claim_true
from .verdicts import report as report

if TYPE_CHECKING:
    from types import ModuleType


def _spf() -> ModuleType:
    """labsupport.auth.spf, imported when an SPF check first runs (keeps the import cheap)."""
    from ..auth import spf

    return spf


def _dkim() -> ModuleType:
    """labsupport.auth.dkim, imported when a DKIM check first runs."""
    from ..auth import dkim

    return dkim

def _normalise_host(name: Any) -> str:
    return str(name).strip().rstrip(".").lower()


# -- notebooks/00-start-here.ipynb ---------------------------------------------------------

def judge_address(answer: Any, name: str, resolver: ResolverLike) -> Verdict:
    """Exercise: the IPv4 address of ``name``, as the lab's DNS gives it."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: what is the address of {name}?")
    try:
        expected = sorted(rr.address for rr in resolver.resolve(name, "A"))
    except Exception as exc:  # noqa: BLE001 - the lab itself is broken: say so
        return Verdict("wrong", f"the lab could not look {name} up ({exc}); is it running?")
    said = str(value).strip()
    if said in expected:
        return Verdict("right", f"right: {name} has the address {said}.")
    return Verdict("wrong", f"{said!r} is not an address of {name}. Hint: "
                   f"lab.query({name!r}, 'A') and read the ANSWER SECTION.")


def check_address(answer: Any, name: str, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_address`."""
    report(judge_address(answer, name, resolver))


# -- notebooks/01-dns-mx.ipynb -------------------------------------------------------------

def judge_try_order(answer: Any, domain: str, resolver: ResolverLike) -> Verdict:
    """Exercise: the hosts a sender tries for ``domain``, in order (a list of names)."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: list the hosts for {domain} in "
                       "the order a sender tries them.")
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        return Verdict("wrong", "the answer should be a list of host names, e.g. "
                       "['mx1.example.test', 'mx2.example.test'].")
    names = [_normalise_host(v) for v in value]
    result = mx_hosts(domain, resolver, rng=random.Random(0))
    groups: dict[int, set[str]] = {}
    for host in result.hosts:
        if host.usable:
            groups.setdefault(host.preference, set()).add(host.name.lower())
    expected_len = sum(len(g) for g in groups.values())
    if len(names) != expected_len:
        return Verdict("wrong", f"{domain} has {expected_len} usable mail host(s), your "
                       f"list has {len(names)}. Hint: look at every MX record, and leave "
                       "out hosts a sender cannot use.")
    position = 0
    for preference in sorted(groups):
        block = set(names[position : position + len(groups[preference])])
        if block != groups[preference]:
            return Verdict("wrong", f"position {position + 1} should hold the host(s) of "
                           f"preference {preference}: {', '.join(sorted(groups[preference]))}."
                           " Hint: lower preference values are tried first.")
        position += len(groups[preference])
    return Verdict("right", f"right: a sender tries {', '.join(names)} in that order"
                   + (" (hosts of equal preference in either order)."
                      if any(len(g) > 1 for g in groups.values()) else "."))


def judge_diagnosis(answer: Any, resolver: ResolverLike, domains: list[str]) -> Verdict:
    """Exercise: map each domain to what is wrong with its mail set-up.

    Allowed diagnoses: the keys of :data:`~labsupport.dns.mx.PROBLEM_KINDS` plus ``"ok"``,
    ``"null-mx"`` (accepts no mail, on purpose) and ``"implicit-mx"`` (no MX; the
    domain's address takes mail).
    """
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: fill in a diagnosis for each domain.")
    if not isinstance(value, Mapping):
        return Verdict("wrong", "the answer should be a dict: {'domain': 'diagnosis', ...}.")
    allowed = {"ok", "null-mx", "implicit-mx", *PROBLEM_KINDS}
    wrong = []
    for domain in domains:
        result = mx_hosts(domain, resolver, rng=random.Random(0))
        if result.problems:
            expected = result.problems[0]
        elif result.verdict in ("null-mx", "implicit-mx"):
            expected = result.verdict
        else:
            expected = "ok"
        raw = value.get(domain)
        said = "" if raw is None else str(raw).strip().lower()
        if said not in allowed:
            wrong.append(f"{domain}: {said or 'no answer'!r} is not one of "
                         f"{', '.join(sorted(allowed))}")
        elif said != expected:
            wrong.append(f"{domain}: not {said!r}. Hint: run lab.mx({domain!r}) and read "
                         "the trace, step by step")
    if wrong:
        return Verdict("wrong", f"{len(domains) - len(wrong)} of {len(domains)} right. "
                       + "; ".join(wrong) + ".")
    return Verdict("right", f"all {len(domains)} diagnoses are right.")


def judge_mx_fix(answer: Any, domain: str, zones: ZoneSet, resolver: ResolverLike) -> Verdict:
    """Exercise: a new MX set that fixes ``domain``. The answer (one MX value such as
    ``"10 host.example.test."`` or a list of them) is put into the live zone, so the
    student can query it afterwards; ``zones.reset(domain)`` puts the old one back."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: write the MX value that fixes "
                       f"{domain}.")
    if isinstance(value, str):
        values = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        values = list(value)
    else:
        return Verdict("wrong", "the answer should be an MX value as text, such as "
                       "'10 host.example.test.' (or a list of them).")
    try:
        zones.set(domain, "MX", *values)
    except LabError as exc:
        return Verdict("wrong", f"the zone does not accept that: {exc}")
    result = mx_hosts(domain, resolver, rng=random.Random(0))
    if result.verdict == "mx" and not result.problems:
        return Verdict("right", f"fixed: {result.summary}")
    if result.verdict == "mx":
        return Verdict("wrong", f"mail for {domain} is deliverable, but still: "
                       + "; ".join(h.problem or "" for h in result.hosts if h.problem)
                       + ". Hint: an MX must name the host that has the address.")
    return Verdict("wrong", f"not yet: {result.summary} Hint: which name in the zone has "
                   "an A record?")


def check_try_order(answer: Any, domain: str, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_try_order`."""
    report(judge_try_order(answer, domain, resolver))


def check_diagnosis(answer: Any, resolver: ResolverLike, domains: list[str]) -> None:
    """Check cell for :func:`judge_diagnosis`."""
    report(judge_diagnosis(answer, resolver, domains))


def check_mx_fix(answer: Any, domain: str, zones: ZoneSet, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_mx_fix`."""
    report(judge_mx_fix(answer, domain, zones, resolver))


# -- notebooks/02-smtp-dialogue.ipynb ------------------------------------------------------

def judge_commands_to_354(answer: Any, host: str, port: int) -> Verdict:
    """Exercise: the commands that bring a server to answer 354 (the last one is DATA).

    The commands are sent, one by one, to the server at ``host``:``port``; the session is
    then reset and closed, so nothing is delivered.
    """
    from ..mail.smtp import SMTPSession

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: list the commands, one string each.")
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        return Verdict("wrong", "the answer should be a list of command lines, e.g. "
                       "['EHLO me.example', ...].")
    session = SMTPSession(host, port, timeout=10)
    last = None
    try:
        session.connect()
        for command in value:
            last = session.send(command)
            if last.code >= 400:
                return Verdict("wrong", f"the server refused {command!r} with {last.first_line!r}."
                               " Hint: which command must come before it?")
        if last is None or last.code != 354:
            got = last.first_line if last else "nothing"
            return Verdict("wrong", f"the last reply was {got!r}, not 354. Hint: 354 is the "
                           "server's answer to DATA, once a sender and a recipient are set.")
        return Verdict("right", f"right: after {len(value)} commands the server answered "
                       f"{last.first_line!r}.")
    finally:
        # Inside DATA, closing the connection before the final dot abandons the message
        # (RFC 5321 section 3.3): nothing is delivered. Otherwise leave politely.
        try:
            if session.connected and not (last is not None and last.code == 354):
                session.rset()
                session.quit()
        except LabError:
            pass
        session.close()


def judge_partly_accepted(answer: Any, host: str, port: int, message: str) -> Verdict:
    """Exercise: two recipients for which the MX role accepts one and refuses the other."""
    from ..mail.smtp import send_mail

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: give two recipient addresses.")
    if isinstance(value, str) or len(list(value)) != 2:
        return Verdict("wrong", "the answer should be a list of exactly two addresses.")
    transcript = send_mail(host, port, mail_from="student@northwind.test",
                           rcpt_to=[str(v) for v in value], message=message)
    if transcript.verdict == "partly accepted" and len(transcript.accepted) == 1:
        return Verdict("right", f"right: {transcript.accepted[0]} was accepted and "
                       f"{', '.join(r for r, _ in transcript.refused)} refused; the message "
                       "went to one of them only.")
    return Verdict("wrong", f"the server's verdict was {transcript.verdict!r} "
                   f"(accepted: {list(transcript.accepted)}). Hint: one address must exist "
                   "in the lab (lab.accounts), the other must not.")


def check_commands_to_354(answer: Any, host: str, port: int) -> None:
    """Check cell for :func:`judge_commands_to_354`."""
    report(judge_commands_to_354(answer, host, port))


def check_partly_accepted(answer: Any, host: str, port: int, message: str) -> None:
    """Check cell for :func:`judge_partly_accepted`."""
    report(judge_partly_accepted(answer, host, port, message))


# -- notebooks/05-dkim.ipynb ---------------------------------------------------------------

# Imported here so that ``labsupport.auth.dkim`` is there after ``import labsupport``.

#: The message the DKIM exercises sign (Northwind's lab key) before changing it.
DKIM_EXERCISE_MESSAGE = (
    b"From: Alice Adams <alice@northwind.test>\r\n"
    b"To: Bob <bob@northwind.test>\r\n"
    b"Subject: Quarterly figures\r\n"
    b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <exercise@northwind.test>\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"the figures are attached.\r\n"
)

#: The changes of the exercise "which survive relaxed canonicalization but not simple?":
#: letter -> (what the change is, in words; the change made to the signed message).
DKIM_CHANGES: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "a": ("the Subject's text changed (figures -> figurez)",
          lambda m: m.replace(b"Subject: Quarterly figures", b"Subject: Quarterly figurez")),
    "b": ("the Subject field folded onto two lines (CR LF and a tab before 'figures')",
          lambda m: m.replace(b"Subject: Quarterly figures\r\n",
                              b"Subject: Quarterly\r\n\tfigures\r\n")),
    "c": ("a footer line added at the end of the body, as a mailing list does",
          lambda m: m + b"-- \r\nSent through the course list\r\n"),
    "d": ("an empty line added at the end of the body",
          lambda m: m + b"\r\n"),
    "e": ("three spaces added at the end of the body's last line",
          lambda m: m.replace(b"attached.\r\n", b"attached.   \r\n")),
    "f": ("the To field's name written in capitals (TO:)",
          lambda m: m.replace(b"\r\nTo: Bob", b"\r\nTO: Bob")),
}


def dkim_survival(change: Callable[[bytes], bytes], resolver: ResolverLike,
                  message: bytes = DKIM_EXERCISE_MESSAGE) -> dict[str, str]:
    """Sign ``message`` with Northwind's lab key under simple/simple and under
    relaxed/relaxed, apply ``change`` to each signed copy and verify it against
    ``resolver``: ``{"simple": verdict, "relaxed": verdict}``."""
    key = _dkim().lab_key("northwind.test")
    assert key.domain is not None and key.selector is not None
    verdicts: dict[str, str] = {}
    for canon in ("simple", "relaxed"):
        signed = _dkim().sign(message, domain=key.domain, selector=key.selector, private_key=key,
                      canonicalization=(canon, canon))
        verdicts[canon] = _dkim().verify(change(signed), resolver).verdict
    return verdicts


def _letters(value: Any) -> set[str] | None:
    if isinstance(value, str):
        return {c for c in value.lower() if c.isalnum()}
    try:
        return {str(v).strip().lower() for v in value}
    except TypeError:
        return None


def judge_relaxed_only(answer: Any, resolver: ResolverLike) -> Verdict:
    """Exercise: the letters of :data:`DKIM_CHANGES` whose signature survives relaxed
    canonicalization but not simple. The verdicts are computed by signing and verifying
    against ``resolver`` (the lab's zones), never typed in."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: give the letters of the changes that "
                       "survive relaxed but not simple, e.g. {'a', 'c'}.")
    said = _letters(value)
    if said is None or not said:
        return Verdict("wrong", "the answer should be letters, such as {'a', 'c'} or 'ac'.")
    unknown = sorted(said - set(DKIM_CHANGES))
    if unknown:
        return Verdict("wrong", f"{', '.join(map(repr, unknown))} is not one of the changes "
                       f"({', '.join(DKIM_CHANGES)}).")
    outcome = {letter: dkim_survival(change, resolver)
               for letter, (_what, change) in DKIM_CHANGES.items()}
    expected = {k for k, v in outcome.items() if v["relaxed"] == "pass" and v["simple"] != "pass"}
    if said == expected:
        return Verdict("right", f"right: {', '.join(sorted(expected))} survive relaxed and "
                       "break simple; relaxed forgives white space and the case of field "
                       "names, never a changed word.")

    def fate(letter: str) -> str:
        v = outcome[letter]
        if v["relaxed"] == "pass" and v["simple"] == "pass":
            return "survives both"
        if v["relaxed"] != "pass" and v["simple"] != "pass":
            return "breaks both"
        return "survives relaxed only"

    problems = [f"({k}) {fate(k)}" for k in sorted(said - expected)]
    missing = len(expected - said)
    text = "not quite: " + ("; ".join(problems) if problems else "")
    if missing:
        text += ("; " if problems else "") + f"{missing} change(s) that survive relaxed " \
            "only are missing"
    return Verdict("wrong", text + ". Hint: sign, change and verify each one, as in the "
                   "tamper table of section 5.")


def check_relaxed_only(answer: Any, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_relaxed_only`."""
    report(judge_relaxed_only(answer, resolver))


def _shipped_selectors(domain: str, shipped: ZoneSet | None) -> set[str]:
    """The DKIM selectors the course's own zone files publish for ``domain``."""
    import re

    if shipped is None:
        from ..core.paths import DATA_DIR
        shipped = ZoneSet.from_directory(DATA_DIR / "zones")
    suffix = f"._domainkey.{domain.rstrip('.').lower()}."
    found = set()
    for origin in shipped.origins:
        for line in shipped.zone_text(origin).splitlines():
            owner = line.split(None, 1)[0].lower() if line.strip() else ""
            if owner.endswith(suffix):
                found.add(re.sub(re.escape(suffix) + r"\Z", "", owner))
    return found


def judge_key_rotation(answer: Any, zones: ZoneSet, domain: str,
                       shipped: ZoneSet | None = None) -> Verdict:
    """Exercise: a message signed for ``domain`` with a new key under a new selector.

    The answer is the signed message (bytes or text). It is verified against ``zones``
    (the running lab's ``lab.zones``, where the new key must be published); the selector
    must be one the course's zone files (``shipped``, by default ``data/zones``) do not
    already publish.
    """
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: sign a message with your new key and "
                       "put it in the answer.")
    if not isinstance(value, (bytes, str)):
        return Verdict("wrong", "the answer should be the signed message (bytes, as "
                       f"dkim.sign returns it), not a {type(value).__name__}.")
    result = _dkim().verify(value, zones)
    if not result.signatures:
        return Verdict("wrong", "the message has no DKIM-Signature. Hint: dkim.sign(message, "
                       f"domain={domain!r}, selector=..., private_key=new_key).")
    ours = [s for s in result.signatures if (s.domain or "").lower() == domain.lower()]
    if not ours:
        others = ", ".join(sorted({s.domain or "?" for s in result.signatures}))
        return Verdict("wrong", f"the message is signed for {others}, not {domain}.")
    old = _shipped_selectors(domain, shipped)
    new = [s for s in ours if (s.selector or "").lower() not in old]
    if not new:
        used = ", ".join(sorted({s.selector or "?" for s in ours}))
        return Verdict("wrong", f"signed with selector {used}, which the course already "
                       "publishes. A rotation moves to a new selector: pick a new name, "
                       "publish the new key there, and sign with it.")
    good = [s for s in new if s.passed]
    if good:
        s = good[0]
        return Verdict("right", f"right: the signature by {domain} with the new selector "
                       f"{s.selector} verifies against the key published at {s.key_name} "
                       f"({s.algorithm}). Old mail still verifies as long as the old "
                       "selector stays published.")
    s = new[0]
    if s.verdict == "permerror" and "no key" in s.summary:
        hint = (f"publish the new public key first: dkim.publish(lab.zones, {domain!r}, "
                f"{s.selector!r}, new_key)")
    elif s.verdict == "fail":
        hint = (f"the key published at {s.key_name} is not the one that signed, or the "
                "message changed after signing")
    else:
        hint = "read dkim.verify(answer, lab.zones) for the whole trace"
    return Verdict("wrong", f"the signature with selector {s.selector} gives {s.verdict}: "
                   f"{s.summary}. Hint: {hint}.")


def check_key_rotation(answer: Any, zones: ZoneSet, domain: str,
                       shipped: ZoneSet | None = None) -> None:
    """Check cell for :func:`judge_key_rotation`."""
    report(judge_key_rotation(answer, zones, domain, shipped))


# -- notebooks/04-spf.ipynb ----------------------------------------------------------------
# Importing labsupport.auth.spf here also makes it an attribute of the package after a plain
# ``import labsupport`` (the index names spf.check_host, spf.spf_verdict, spf.parse_record).

#: Addresses no lab SPF record authorizes, tried by the record-fixing exercise besides the
#: addresses the records themselves name: the lab's attacker, and two unused ones.
SPF_OUTSIDERS = ("203.0.113.66", "192.0.2.254", "2001:db8:ffff::1")


def spf_scratch_zones(zones: ZoneSet) -> ZoneSet:
    """A copy of ``zones`` as they stand now, to try SPF records in without touching the
    lab's own zones; the copy's ``reset()`` puts it back to this snapshot."""
    scratch = ZoneSet()
    for origin in zones.origins:
        scratch.load_text(zones.zone_text(origin), origin)
    return scratch


def spf_record_of(domain: str, resolver: ResolverLike) -> str | None:
    """The SPF record ``domain`` publishes (the first, if it wrongly has several), or None."""
    import dns.exception

    try:
        answer = resolver.resolve(domain, "TXT")
    except dns.exception.DNSException:
        return None
    for rdata in answer:
        text = b"".join(rdata.strings)
        if _spf().is_spf_record(text):
            return text.decode("utf-8", errors="replace")
    return None


def put_spf_record(zones: ZoneSet, domain: str, record: str) -> None:
    """Make ``record`` the one SPF record of ``domain`` in ``zones``; its other TXT records
    stay. Raises :class:`~labsupport.core.errors.ZoneEditError` when no zone holds ``domain``."""
    import dns.exception

    try:
        answer = zones.resolve(domain, "TXT")
        others = [rd.to_text() for rd in answer
                  if not _spf().is_spf_record(b"".join(rd.strings))]
    except dns.exception.DNSException:
        others = []
    zones.set(domain, "TXT", *others, record)


def _spf_sender(domain: str) -> str:
    return f"postmaster@{domain}"


def _spf_candidates(record: str, domain: str, resolver: ResolverLike) -> set[str]:
    """Addresses worth testing a record with: the ends of every network it (or a record it
    includes or redirects to) names, the addresses just outside them, and the addresses
    of its ``a`` and ``mx`` targets."""
    import ipaddress

    import dns.exception

    found: set[str] = set()
    seen: set[str] = set()

    def add(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        first, last = int(network.network_address), int(network.broadcast_address)
        top = 2 ** network.max_prefixlen - 1
        cls = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
        for value in (first, last, first - 1, last + 1):
            if 0 <= value <= top:
                found.add(str(cls(value)))

    def addresses(name: str) -> None:
        for rdtype in ("A", "AAAA"):
            try:
                for rdata in resolver.resolve(name, rdtype):
                    found.add(rdata.address)
            except dns.exception.DNSException:
                pass

    def walk(text: str, at: str, depth: int) -> None:
        try:
            parsed = _spf().parse_record(text)
        except _spf().SPFSyntaxError:
            return
        for term in parsed.terms:
            target = term.target.text if term.target is not None else at
            if "%" in target:
                continue  # a macro: its target depends on the client
            if term.name in ("ip4", "ip6") and term.network is not None:
                network = ipaddress.ip_network((term.network, term.prefix or 0))
                add(network)
            elif term.name == "a":
                addresses(target)
            elif term.name == "mx":
                try:
                    for rdata in resolver.resolve(target, "MX"):
                        addresses(rdata.exchange.to_text())
                except dns.exception.DNSException:
                    pass
            elif term.name in ("include", "redirect") and depth < _spf().MAX_DNS_TERMS \
                    and target.lower() not in seen:
                seen.add(target.lower())
                inner = spf_record_of(target, resolver)
                if inner is not None:
                    walk(inner, target, depth + 1)

    walk(record, domain, 0)
    return found


def spf_intended(record: str, domain: str, ips: list[str] | set[str],
                 zones: ZoneSet) -> dict[str, str]:
    """What ``record`` at ``domain`` means for each address, the lookup limit aside: its
    mechanisms are tried left to right, each alone (so no evaluation comes near the limit),
    and the first that matches decides (RFC 7208 section 4.6.2); then ``redirect``, or
    neutral (section 4.7). Evaluated in a scratch copy of ``zones``."""
    parsed = _spf().parse_record(record)
    scratch = spf_scratch_zones(zones)
    decided: dict[str, str] = {}
    for term in parsed.mechanisms:
        open_ips = [ip for ip in ips if ip not in decided]
        if not open_ips:
            break
        put_spf_record(scratch, domain, f"v=spf1 {term.text}")
        for ip in open_ips:
            result = _spf().check_host(ip, domain, _spf_sender(domain), resolver=scratch,
                                     trace=False)
            if result.verdict in ("permerror", "temperror") or (
                    result.mechanism == term.text and result.mechanism_domain == domain):
                decided[ip] = result.verdict
    open_ips = [ip for ip in ips if ip not in decided]
    if open_ips and parsed.redirect is not None:
        put_spf_record(scratch, domain, f"v=spf1 {parsed.redirect.text}")
        for ip in open_ips:
            decided[ip] = _spf().check_host(ip, domain, _spf_sender(domain), resolver=scratch,
                                          trace=False).verdict
    return {ip: decided.get(ip, "neutral") for ip in ips}


def _sort_ips(ips: Any) -> list[str]:
    import ipaddress

    return sorted(ips, key=lambda ip: (ipaddress.ip_address(ip).version,
                                       int(ipaddress.ip_address(ip))))


def _listing(ips: list[str], limit: int = 6) -> str:
    shown = ", ".join(ips[:limit])
    return shown + (f" and {len(ips) - limit} more" if len(ips) > limit else "")


def judge_spf_result(answer: Any, ip: str, domain: str, resolver: ResolverLike) -> Verdict:
    """Exercise: the SPF result (one of the seven) that ``ip`` gets for ``domain``."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: which SPF result does {ip} get for "
                       f"{domain}?")
    said = str(value).strip().lower()
    if said not in _spf().RESULTS:
        return Verdict("wrong", f"{str(value)!r} is not an SPF result; the seven results are "
                       f"{', '.join(_spf().RESULTS)} (RFC 7208 section 2.6).")
    result = _spf().check_host(ip, domain, _spf_sender(domain), resolver=resolver)
    if said == result.verdict:
        return Verdict("right", f"right: {result.summary}")
    return Verdict("wrong", f"{ip} does not get {said} for {domain}. Hint: read {domain}'s "
                   f"record from left to right; the first mechanism that matches {ip} "
                   "decides, and its qualifier (+ - ~ ?) gives the result.")


def judge_spf_fix(answer: Any, domain: str, zones: ZoneSet,
                  outsiders: tuple[str, ...] = SPF_OUTSIDERS) -> Verdict:
    """Exercise: a new SPF record for ``domain`` that stays within the lookup limits and
    authorizes exactly the senders its current record means to authorize.

    The answer (the record as one string) is tried in a scratch copy of ``zones``; the lab's
    zone is not changed. The addresses tried are those either record names (the ends of
    each network and the addresses just outside) and ``outsiders``; for each, the new
    record must give what the current one means (:func:`spf_intended`).
    """
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: write the new SPF record of {domain}.")
    if not isinstance(value, str):
        return Verdict("wrong", "the answer should be the record as one string, such as "
                       "'v=spf1 ip4:192.0.2.0/24 -all'.")
    record = " ".join(value.split())
    if not _spf().is_spf_record(record):
        return Verdict("wrong", f"{record[:40]!r} is not an SPF record: it must start with "
                       "'v=spf1' followed by a space (RFC 7208 section 4.5).")
    try:
        _spf().parse_record(record)
    except _spf().SPFSyntaxError as exc:
        return Verdict("wrong", f"the record has a syntax error, so it would be a permerror: "
                       f"{exc}")
    original = spf_record_of(domain, zones)
    if original is None:
        return Verdict("wrong", f"the lab has no SPF record for {domain} to compare with; "
                       f"was it changed? lab.zones.reset({domain!r}) puts it back.")
    scratch = spf_scratch_zones(zones)
    put_spf_record(scratch, domain, record)
    ips = _sort_ips(_spf_candidates(original, domain, zones)
                    | _spf_candidates(record, domain, scratch) | set(outsiders))
    intended = spf_intended(original, domain, ips, zones)
    got = {ip: _spf().check_host(ip, domain, _spf_sender(domain), resolver=scratch,
                               trace=False) for ip in ips}
    errors = [ip for ip in ips if got[ip].verdict in ("permerror", "temperror")
              and intended[ip] != got[ip].verdict]
    if errors:
        first = got[errors[0]]
        return Verdict("wrong", f"for {len(errors)} of {len(ips)} test addresses your record "
                       f"gives {first.verdict}, for example from {errors[0]}: {first.summary}")
    lost = [ip for ip in ips if intended[ip] == "pass" and got[ip].verdict != "pass"]
    gained = [ip for ip in ips if got[ip].verdict == "pass" and intended[ip] != "pass"]
    other = [ip for ip in ips if got[ip].verdict != intended[ip] and ip not in lost + gained]
    problems = []
    if lost:
        problems.append(f"these senders may no longer send: {_listing(lost)}")
    if gained:
        problems.append(f"your record lets these send, the old one does not: "
                        f"{_listing(gained)}")
    if other:
        problems.append(f"from {other[0]} your record gives {got[other[0]].verdict}, the "
                        f"old one means {intended[other[0]]}")
    if problems:
        return Verdict("wrong", "who may send changed: " + "; ".join(problems) + ". Hint: "
                       "list, with ip4:, the addresses the included records name.")
    allowed = sum(1 for ip in ips if intended[ip] == "pass")
    most = max(result.dns_terms for result in got.values())
    return Verdict("right", f"right: for all {len(ips)} test addresses your record gives the "
                   f"result the old one means ({allowed} may send, {len(ips) - allowed} may "
                   f"not), with at most {most} of {_spf().MAX_DNS_TERMS} DNS-querying terms.")


def check_spf_result(answer: Any, ip: str, domain: str, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_spf_result`."""
    report(judge_spf_result(answer, ip, domain, resolver))


def check_spf_fix(answer: Any, domain: str, zones: ZoneSet,
                  outsiders: tuple[str, ...] = SPF_OUTSIDERS) -> None:
    """Check cell for :func:`judge_spf_fix`."""
    report(judge_spf_fix(answer, domain, zones, outsiders))


# -- notebooks/03-starttls-vs-implicit-tls.ipynb -------------------------------------------

def judge_round_trips(answer: Any, capture: Any, what: str = "this capture") -> Verdict:
    """Exercise: round trips before the first protected byte, counted in ``capture``
    (a :class:`labsupport.wire.capture.Capture`)."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: how many round trips in {what}?")
    expected = capture.round_trips()
    try:
        said = int(value)
    except (TypeError, ValueError):
        return Verdict("wrong", "the answer should be a whole number of round trips.")
    if said == expected:
        return Verdict("right", f"right: {what} waits {expected} round trips before its first "
                       "protected byte.")
    return Verdict("wrong", f"not {said}. Hint: count each time the client sends and must "
                   "wait for the server: the TCP handshake, each command in the clear before "
                   "TLS, and TLS 1.3's own round trip (capture.summary() lists them).")


def judge_stolen_password(answer: Any, capture: Any) -> Verdict:
    """Exercise: the password read from a capture of a downgraded session."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: which password crossed the wire?")
    found = capture.dialogue().credentials()
    passwords = found[1::2] if len(found) > 1 else found
    if str(value) in passwords:
        return Verdict("right", "right: that password was readable by anyone on the path; "
                       "base64 is an encoding, not encryption.")
    if str(value) in found:
        return Verdict("wrong", "that is the user name. Hint: AUTH PLAIN carries "
                       "NUL, user name, NUL, password.")
    return Verdict("wrong", "not that. Hint: find the AUTH PLAIN line in "
                   "capture.dialogue() and decode its base64 (base64.b64decode).")


def judge_verifying_context(answer: Any, port: int, hostname: str = "smtp.lab.test") -> Verdict:
    """Exercise: an ``ssl.SSLContext`` that verifies the lab's certificate and host name.
    The check connects to the implicit-TLS role at ``port`` with it."""
    import socket
    import ssl

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: build an ssl.SSLContext.")
    if not isinstance(value, ssl.SSLContext):
        return Verdict("wrong", "the answer should be an ssl.SSLContext, e.g. from "
                       "ssl.create_default_context(...).")
    if value.verify_mode != ssl.CERT_REQUIRED or not value.check_hostname:
        return Verdict("wrong", "this context does not check the certificate and the host "
                       "name: anyone in the middle could answer. Hint: do not turn "
                       "verify_mode or check_hostname off.")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                value.wrap_socket(raw, server_hostname=hostname):
            pass
    except ssl.SSLCertVerificationError as exc:
        return Verdict("wrong", f"it verifies, but refuses the lab's server: "
                       f"{exc.verify_message}. Hint: trust the lab CA (cafile=lab.ca.ca_file).")
    except (OSError, ssl.SSLError) as exc:
        return Verdict("wrong", f"the TLS connection failed: {exc}")
    return Verdict("right", f"right: it verifies the lab's certificate for {hostname}.")


def check_round_trips(answer: Any, capture: Any, what: str = "this capture") -> None:
    """Check cell for :func:`judge_round_trips`."""
    report(judge_round_trips(answer, capture, what))


def check_stolen_password(answer: Any, capture: Any) -> None:
    """Check cell for :func:`judge_stolen_password`."""
    report(judge_stolen_password(answer, capture))


def check_verifying_context(answer: Any, port: int, hostname: str = "smtp.lab.test") -> None:
    """Check cell for :func:`judge_verifying_context`."""
    report(judge_verifying_context(answer, port, hostname))


# -- Lab 07: what a receiver concludes about a domain's mail (the capstone) ---------------

#: The lab's attacker (``phisher.example``'s host), as XCLIENT tells the MX role.
CAPSTONE_ATTACKER = {"ADDR": "203.0.113.66", "HELO": "out.phisher.example"}
#: The steps of securing a domain, in the order the capstone takes them.
CAPSTONE_STEPS = ("mx", "spf", "dkim", "dmarc-none", "dmarc-reject")


@dataclass(frozen=True)
class ReceiverOutcome:
    """What the receiving MX role did with one test message, and why, in words."""

    label: str
    legitimate: bool
    action: str  # "INBOX", "Junk", "rejected (550 5.7.1)" or "not received"
    spf: str
    dkim: str
    dmarc: str
    reply: str
    meaning: str

    @property
    def delivered(self) -> bool:
        return self.action in ("INBOX", "Junk")

    @property
    def rejected(self) -> bool:
        return self.action.startswith("rejected")

    @property
    def passes(self) -> bool:
        """Delivered to INBOX with DMARC pass: the receiver knows it is genuine."""
        return self.action == "INBOX" and self.dmarc == "pass"

    def as_row(self) -> list[object]:
        return [self.label, self.action, f"spf={self.spf} dkim={self.dkim} dmarc={self.dmarc}",
                self.meaning]


@dataclass(frozen=True)
class ReceiverReport:
    """One legitimate message and two forgeries in a domain's name, as a receiver saw them
    (made by :func:`receiver_report`)."""

    domain: str
    receiving: str
    outcomes: tuple[ReceiverOutcome, ...]

    @property
    def legitimate(self) -> list[ReceiverOutcome]:
        return [o for o in self.outcomes if o.legitimate]

    @property
    def forgeries(self) -> list[ReceiverOutcome]:
        return [o for o in self.outcomes if not o.legitimate]

    @property
    def legitimate_pass(self) -> bool:
        """Every legitimate message reached the INBOX with DMARC pass."""
        return all(o.passes for o in self.legitimate)

    @property
    def forgeries_rejected(self) -> bool:
        """Every forgery was refused (550 5.7.1)."""
        return all(o.rejected for o in self.forgeries)

    @property
    def secured(self) -> bool:
        return self.legitimate_pass and self.forgeries_rejected

    def conclusion(self) -> str:
        if self.secured:
            return (f"{self.domain} is secured: its own mail passes DMARC and every forgery "
                    "is refused.")
        fooled = [o for o in self.forgeries if o.delivered]
        if fooled:
            return (f"{len(fooled)} of {len(self.forgeries)} forgeries in {self.domain}'s "
                    "name still reach the recipient.")
        return f"the forgeries are refused, but {self.domain}'s own mail does not pass DMARC."

    HEADERS = ["message", "receiver's action", "Authentication-Results", "what it means"]

    def __str__(self) -> str:
        from ..core.results import text_table

        rows = [o.as_row() for o in self.outcomes]
        return (f"Receiver's view of {self.domain}\n{text_table(self.HEADERS, rows)}\n"
                f"Mail to {self.domain}: {self.receiving}\n=> {self.conclusion()}")

    def _repr_html_(self) -> str:
        from ..core.results import html_table as _html_table

        rows = [o.as_row() for o in self.outcomes]
        return (_html_table(self.HEADERS, rows,
                            caption=f"What a receiver concludes about mail from {self.domain}")
                + f"<p>Mail <em>to</em> {self.domain}: {self.receiving}</p>"
                + f"<p><strong>{self.conclusion()}</strong></p>")


def _capstone_message(sender: str, display: str, rcpt: str, subject: str, msgid: str) -> str:
    return (f"From: {display} <{sender}>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid}>\r\n\r\nThis is a test of what a receiver concludes.\r\n")


def _capstone_evaluation(lab: Any, msgid: str) -> Any:
    for evaluation in reversed(lab.smtp.evaluations.all()):
        if evaluation.message_id and msgid in evaluation.message_id:
            return evaluation
    return None


def _capstone_meaning(legitimate: bool, action: str, spf: str, dkim: str, dmarc: str,
                      evaluation: Any) -> str:
    if action == "not received":
        return "never reached the receiver's MX role"
    if action.startswith("rejected"):
        if legitimate:
            return "genuine mail refused: DMARC fails, and the policy says reject"
        return "refused: DMARC fails and the domain's policy says reject"
    where = "Junk (quarantine)" if action == "Junk" else "the inbox"
    if dmarc == "pass":
        how = []
        if getattr(evaluation.dmarc, "spf_aligned", False):
            how.append("SPF")
        if getattr(evaluation.dmarc, "dkim_aligned", False):
            how.append("DKIM")
        proof = " and ".join(how) or "an aligned identifier"
        if legitimate:
            return f"authenticated: {proof} pass aligned with the From domain"
        return f"a forgery that passes DMARC ({proof}): the domain's records are too loose"
    if dmarc == "none":
        if legitimate:
            return (f"delivered to {where}, but nothing proves it is genuine (no DMARC "
                    "record)")
        if spf in ("fail", "softfail"):
            return (f"delivered to {where}: SPF fails, but with no DMARC record the "
                    "receiver does not act on it")
        return f"delivered to {where}: the receiver cannot tell it from genuine mail"
    if legitimate:
        return f"genuine mail that fails DMARC ({dmarc}), delivered to {where}"
    return (f"fails DMARC, yet delivered to {where}: the policy asks only for "
            + ("quarantine" if action == "Junk" else "monitoring (p=none)"))


def receiver_report(domain: str, lab: Any, rcpt: str = "carol@campus.test",
                    timeout: float = 15.0) -> ReceiverReport:
    """Send three messages in ``domain``'s name to ``rcpt`` at another organisation and
    report what its MX role concludes about each:

    * legitimate: the domain's user (its lab account) submits through the submission role
      (STARTTLS, AUTH); the lab's queue delivers it from the domain's outbound host
      ``out.<domain>``;
    * forgery 1: the attacker (203.0.113.66, via XCLIENT) sends ``From: <domain>`` with
      its own envelope sender (``mallory@phisher.example``);
    * forgery 2: the attacker claims the domain in MAIL FROM as well.

    Each outcome gives the receiver's action (INBOX, Junk, rejected), the spf, dkim and
    dmarc results of its Authentication-Results, and what that means. ``receiving`` says
    whether mail *to* the domain can be delivered (its MX). Introduced in
    ``notebooks/07-capstone-secure-a-domain.ipynb``.
    """
    import secrets

    from ..mail.smtp import send_mail

    domain = domain.lower().rstrip(".")
    account = next((a for a in lab.accounts.all() if a.domain == domain), None)
    if account is None:
        raise LabError(f"the lab has no account at {domain} to send its mail with")
    tag = secrets.token_hex(4)
    plans = [
        ("legitimate", True, f"{account.name} through out.{domain}", account.address),
        ("forgery-1", False, "forgery from 203.0.113.66, MAIL FROM mallory@phisher.example",
         "mallory@phisher.example"),
        ("forgery-2", False, f"forgery from 203.0.113.66, MAIL FROM {account.address}",
         account.address),
    ]
    replies: dict[str, str] = {}
    ids: dict[str, str] = {}
    for key, legitimate, _label, mail_from in plans:
        msgid = f"{key}.{tag}@capstone.{domain}"
        ids[key] = msgid
        display = account.name if legitimate else "Accounts team"
        subject = "Our new price list" if legitimate else "Please pay this invoice today"
        message = _capstone_message(account.address, display, rcpt, subject, msgid)
        if legitimate:
            sent = send_mail("127.0.0.1", lab.smtp.port("submission"), mail_from=mail_from,
                             rcpt_to=[rcpt], message=message, tls="starttls",
                             auth=(account.address, account.password),
                             ca_file=lab.ca.ca_file)
            if lab.queue is not None:
                lab.queue.wait_idle(timeout)
        else:
            sent = send_mail("127.0.0.1", lab.smtp.port("mx"), mail_from=mail_from,
                             rcpt_to=[rcpt], message=message, xclient=CAPSTONE_ATTACKER)
        # the answer to the message itself: the last reply before QUIT's 221
        answers = [r for r in getattr(sent, "replies", ()) if r.code != 221]
        replies[key] = answers[-1].first_line if answers else str(sent.verdict)
    outcomes = []
    for key, legitimate, label, _mail_from in plans:
        evaluation = _capstone_evaluation(lab, ids[key])
        if evaluation is None:
            outcomes.append(ReceiverOutcome(label, legitimate, "not received", "-", "-", "-",
                                            replies[key], _capstone_meaning(
                                                legitimate, "not received", "", "", "", None)))
            continue
        results = evaluation.results

        def result_of(method: str, results: Any = results) -> str:
            found = results.find(method)
            return found.result if found is not None else "none"

        spf, dkim, dmarc = result_of("spf"), result_of("dkim"), result_of("dmarc")
        action = evaluation.action
        outcomes.append(ReceiverOutcome(label, legitimate, action, spf, dkim, dmarc,
                                        replies[key], _capstone_meaning(
                                            legitimate, action, spf, dkim, dmarc, evaluation)))
    found = mx_hosts(domain, lab.zones)
    if found.deliverable:
        hosts = ", ".join(h.name if hasattr(h, "name") else str(h) for h in found.hosts)
        receiving = f"deliverable ({found.verdict}: {hosts}); replies and bounces arrive"
    else:
        receiving = f"undeliverable ({found.verdict}): replies and bounces have nowhere to go"
    return ReceiverReport(domain, receiving, tuple(outcomes))


def judge_secure_step(answer: Any, step: str, domain: str, lab: Any) -> Verdict:
    """Has the capstone step ``step`` (one of :data:`CAPSTONE_STEPS`) been done for
    ``domain`` in the running lab? ``answer`` is what the student published (any value:
    it only has to be given). Judged from the lab's DNS and mail server, not the answer.

    The steps build on each other: a step that is in place while an earlier one is not
    (a student skipped it) is "not answered yet", and the message names the missing step."""
    given, _value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: step {step!r} is not done: fill "
                                     "in the cell above")
    verdict = _secure_step_state(step, domain, lab)
    if not verdict.right:
        return verdict
    missing = _missing_step(CAPSTONE_STEPS[: CAPSTONE_STEPS.index(step)], domain, lab)
    if missing is not None:
        return Verdict("unanswered", f"not answered yet: step {missing!r} above is not "
                                     f"done, and step {step!r} builds on it: do step "
                                     f"{missing!r}, then run this cell again. This step "
                                     f"itself is in place: {verdict.message}")
    return verdict


def _missing_step(steps: tuple[str, ...], domain: str, lab: Any) -> str | None:
    """The first of the capstone's ``steps`` not in place for ``domain``, or None. The p=none
    record of "dmarc-none" is replaced at "dmarc-reject", so it is never required here."""
    for step in steps:
        if step != "dmarc-none" and not _secure_step_state(step, domain, lab).right:
            return step
    return None


def _secure_step_state(step: str, domain: str, lab: Any) -> Verdict:
    """Is ``step`` in place for ``domain`` in the lab, taken alone ("right" or "wrong")?"""
    from ..auth import dmarc as dmarc_mod

    zones = lab.zones
    if step == "mx":
        found = mx_hosts(domain, zones)
        if found.verdict == "mx" and found.deliverable:
            return Verdict("right", f"{domain} publishes an MX whose host has an address.")
        return Verdict("wrong", f"MX selection for {domain} gives {found.verdict!r}: publish "
                                "an MX record naming a host that has an A record")
    if step == "spf":
        record = spf_record_of(domain, zones)
        if record is None:
            return Verdict("wrong", f"{domain} publishes no SPF record (TXT v=spf1 ...)")
        spf = _spf()
        ok = spf.spf_verdict(_out_ip(domain, zones), f"postmaster@{domain}", f"out.{domain}",
                             zones).verdict
        bad = spf.spf_verdict(CAPSTONE_ATTACKER["ADDR"], f"postmaster@{domain}",
                              CAPSTONE_ATTACKER["HELO"], zones).verdict
        if ok == "pass" and bad == "fail":
            return Verdict("right", f"SPF of {domain}: pass for out.{domain}, fail for the "
                                    f"attacker ({record}).")
        return Verdict("wrong", f"with {record!r}, out.{domain} gets {ok!r} and the attacker "
                                f"{bad!r}: authorise the outbound host and end with -all")
    if step == "dkim":
        key = lab.smtp.signing_key(domain)
        if key is None:
            return Verdict("wrong", f"the submission roles do not sign {domain}'s mail yet: "
                                    "lab.smtp.set_signing_key(domain, key, selector)")
        selector = lab.smtp.signing_selector(domain)
        from ..auth.dkim_keys import key_name

        try:
            published = zones.resolve(key_name(domain, selector), "TXT")
            text = "".join(b"".join(r.strings).decode() for r in published)
        except Exception:  # noqa: BLE001 - no record is the answer
            text = ""
        if key.public and key.public in text.replace(" ", ""):
            return Verdict("right", f"{domain} signs with selector {selector!r}, and its "
                                    "public key is published.")
        return Verdict("wrong", f"nothing at {key_name(domain, selector)} matches the key "
                                "the server signs with: publish it under the same selector")
    if step in ("dmarc-none", "dmarc-reject"):
        want = step.split("-")[1]
        discovered = dmarc_mod.discover(domain, zones)
        policy = discovered.record
        if policy is None or discovered.record_domain != domain:
            return Verdict("wrong", f"no DMARC record at _dmarc.{domain}")
        if policy.p != want:
            return Verdict("wrong", f"_dmarc.{domain} has p={policy.p}; this step wants "
                                    f"p={want}")
        return Verdict("right", f"_dmarc.{domain} publishes p={want}.")
    raise LabError(f"unknown step {step!r}: use one of {', '.join(CAPSTONE_STEPS)}")


def _out_ip(domain: str, zones: Any) -> str:
    answer = zones.resolve(f"out.{domain}", "A")
    return str(next(iter(answer)))


def check_secure_step(answer: Any, step: str, domain: str, lab: Any) -> None:
    report(judge_secure_step(answer, step, domain, lab))


# -- notebooks/06-dmarc.ipynb --------------------------------------------------------------


def dmarc_scratch_zones(zones: ZoneSet) -> ZoneSet:
    """An empty root zone plus a copy of every zone of ``zones`` as they stand now: DMARC
    records can be tried there for any name, and the lab's own zones never change. The
    copy's ``reset()`` puts it back to this snapshot."""
    scratch = ZoneSet.empty()
    for origin in zones.origins:
        if origin.rstrip(".") == "":
            continue
        scratch.load_text(zones.zone_text(origin), origin)
    return scratch


def _with_modes(record: str, aspf: str, adkim: str) -> str:
    parts = [p.strip() for p in record.split(";") if p.strip()
             and p.split("=")[0].strip().lower() not in ("aspf", "adkim")]
    return "; ".join([*parts, f"aspf={aspf}", f"adkim={adkim}"])


def alignment_of(from_domain: str, *, mail_from_domain: str | None, dkim_domain: str | None,
                 zones: ZoneSet, aspf: str = "r", adkim: str = "r", spf_result: str = "pass",
                 dkim_result: str = "pass", method: str = "treewalk",
                 scratch: ZoneSet | None = None) -> Any:
    """The DMARC result (:class:`labsupport.auth.dmarc.DMARCResult`) for a message
    ``From: someone@<from_domain>`` whose SPF result for ``mail_from_domain`` and DKIM
    result for ``d=dkim_domain`` are given (None: no such identifier), with ``aspf`` and
    ``adkim`` (``"r"`` or ``"s"``) in force. The record that applies to the From domain
    in ``zones`` gets those modes (in a scratch copy: ``zones`` never change); a From
    domain without a record is given ``v=DMARC1; p=reject`` at its own name. No network:
    :func:`labsupport.auth.dmarc.evaluate` asks the in-memory zones."""
    from ..auth.dkim import DKIMResult, DKIMVerification
    from ..auth.dmarc import discover, evaluate
    from ..auth.spf import SPFResult

    author = from_domain.strip().rstrip(".").lower()
    scratch = scratch if scratch is not None else dmarc_scratch_zones(zones)
    scratch.reset()
    found = discover(author, scratch, method=method)
    where = found.record_domain if found.record is not None else author
    text = found.record.text if found.record is not None else "v=DMARC1; p=reject"
    scratch.set(f"_dmarc.{where}", "TXT", _with_modes(text, aspf, adkim))
    spf = None
    if mail_from_domain:
        domain = mail_from_domain.strip().rstrip(".").lower()
        spf = SPFResult(verdict=spf_result, summary=f"SPF {spf_result} (given)",
                        ip="192.0.2.1", domain=domain, sender=f"bounce@{domain}")
    dkim = None
    if dkim_domain:
        d = dkim_domain.strip().rstrip(".").lower()
        sig = DKIMResult(verdict=dkim_result, summary=f"DKIM {dkim_result} (given)",
                         index=0, domain=d, selector="s1")
        dkim = DKIMVerification(verdict=dkim_result, summary="given", signatures=(sig,))
    message = (f"From: someone@{author}\r\nTo: bob@northwind.test\r\nSubject: alignment\r\n"
               f"\r\nHello.\r\n")
    return evaluate(message, mail_from=f"bounce@{mail_from_domain or author}", spf=spf,
                    dkim=dkim, resolver=scratch, method=method)


#: The pairs of the exercise "which align in relaxed mode?": letter -> (From domain,
#: the domain of an identifier that passed, SPF's MAIL FROM or DKIM's d=).
DMARC_PAIRS: dict[str, tuple[str, str]] = {
    "a": ("northwind.test", "northwind.test"),
    "b": ("billing.northwind.test", "northwind.test"),
    "c": ("northwind.test", "mailcloud.example"),
    "d": ("campus.test", "lists.campus.test"),
    "e": ("news.campus.test", "mail.campus.test"),
    "f": ("northwind.test", "northwind.test.phisher.example"),
    "g": ("campus.test", "test"),
}


def relaxed_pairs(zones: ZoneSet) -> set[str]:
    """The letters of :data:`DMARC_PAIRS` that align in relaxed mode, computed by
    :func:`alignment_of` (a passing DKIM ``d=``) on the lab's zones."""
    scratch = dmarc_scratch_zones(zones)
    return {letter for letter, (author, ident) in DMARC_PAIRS.items()
            if alignment_of(author, mail_from_domain=None, dkim_domain=ident, zones=zones,
                            scratch=scratch).dkim_aligned}


def judge_relaxed_pairs(answer: Any, zones: ZoneSet) -> Verdict:
    """Exercise: the letters of :data:`DMARC_PAIRS` whose two domains align in relaxed
    mode, as the DNS Tree Walk on ``zones`` (the lab's) finds them."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: give the letters of the pairs that "
                       "align in relaxed mode, e.g. {'a', 'c'}.")
    said = _letters(value)
    if not said:
        return Verdict("wrong", "the answer should be letters, such as {'a', 'c'} or 'ac'.")
    unknown = sorted(said - set(DMARC_PAIRS))
    if unknown:
        return Verdict("wrong", f"{', '.join(map(repr, unknown))} is not one of the pairs "
                       f"({', '.join(DMARC_PAIRS)}).")
    expected = relaxed_pairs(zones)
    if said == expected:
        return Verdict("right", f"right: {', '.join(sorted(expected))} align. Relaxed mode "
                       "compares Organizational Domains, which the tree walk finds by the "
                       "DMARC records on the way up; a look-alike name elsewhere never "
                       "aligns.")
    wrong_in = sorted(said - expected)
    missing = sorted(expected - said)
    parts = []
    if wrong_in:
        parts.append("these do not align: " + ", ".join(
            f"({k}) {DMARC_PAIRS[k][0]} / {DMARC_PAIRS[k][1]}" for k in wrong_in))
    if missing:
        parts.append(f"{len(missing)} aligned pair(s) are missing")
    return Verdict("wrong", "not quite: " + "; ".join(parts) + ". Hint: find each domain's "
                   "Organizational Domain with dmarc.organizational_domain(name, lab.zones) "
                   "and compare, or try the pair in the alignment explorer.")


def check_relaxed_pairs(answer: Any, zones: ZoneSet) -> None:
    """Check cell for :func:`judge_relaxed_pairs`."""
    report(judge_relaxed_pairs(answer, zones))


#: What the record exercise tries, under ``campus.test``: (From domain, what it is, the
#: disposition a failing message must get).
DMARC_RECORD_CASES = (
    ("campus.test", "the domain itself", "quarantine"),
    ("lists.campus.test", "an existing subdomain", "reject"),
    ("nosuch.campus.test", "a subdomain that does not exist", "reject"),
)


def judge_subdomain_record(answer: Any, zones: ZoneSet, domain: str = "campus.test") -> Verdict:
    """Exercise: a DMARC record asking for quarantine for ``domain`` itself and reject for
    every subdomain (existing or not). It is published at ``_dmarc.<domain>`` in a scratch
    copy of ``zones``, and a forged message from each case of :data:`DMARC_RECORD_CASES`
    is evaluated (no aligned identifier): each must get the disposition asked for."""
    from ..auth.dmarc import DMARCRecordError, evaluate, parse_record

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: write the record as a string, "
                       "starting with v=DMARC1.")
    if not isinstance(value, str):
        return Verdict("wrong", f"the record should be a string, not a {type(value).__name__}.")
    try:
        record = parse_record(value)
    except DMARCRecordError as exc:
        return Verdict("wrong", str(exc))
    if record.problems:
        return Verdict("wrong", "the record has problems: " + "; ".join(record.problems))
    scratch = dmarc_scratch_zones(zones)
    scratch.set(f"_dmarc.{domain}", "TXT", value.strip())
    got = []
    for name, what, wanted in DMARC_RECORD_CASES:
        name = name.replace("campus.test", domain)
        result = evaluate(f"From: forger@{name}\r\nSubject: x\r\n\r\nx\r\n",
                          mail_from="mallory@phisher.example", spf=None, dkim=None,
                          resolver=scratch)
        got.append((name, what, wanted, result.disposition, result.policy))
    bad = [g for g in got if g[2] != g[3]]
    if not bad:
        return Verdict("right", "right: " + "; ".join(f"{n} ({w}): {d} by {t}="
                                                      for n, w, _e, d, t in got)
                       + (" (np= absent: sp= covers names that do not exist too)"
                          if record.np is None else ""))
    hints = "; ".join(f"a forgery from {n} ({w}) gets {d}, not {e}" for n, w, e, d, _t in bad)
    tip = " p= is the domain's own policy, sp= its subdomains', np= non-existent names'."
    if record.testing:
        tip += " t=y (testing mode) lowers every policy by one step."
    return Verdict("wrong", f"not yet: {hints}.{tip}")


def check_subdomain_record(answer: Any, zones: ZoneSet, domain: str = "campus.test") -> None:
    """Check cell for :func:`judge_subdomain_record`."""
    report(judge_subdomain_record(answer, zones, domain))


def _capstone_forgery_action(domain: str, lab: Any, sub: str = "pay",
                             rcpt: str = "carol@campus.test") -> str:
    """Send one forgery ``From: billing@<sub>.<domain>`` from the attacker and return the
    receiver's action in one word: INBOX, Junk or rejected."""
    import secrets

    from ..mail.smtp import send_mail

    msgid = f"sub.{secrets.token_hex(4)}@capstone.{domain}"
    message = _capstone_message(f"billing@{sub}.{domain}", "Billing", rcpt,
                                "Your invoice is overdue", msgid)
    send_mail("127.0.0.1", lab.smtp.port("mx"), mail_from="mallory@phisher.example",
              rcpt_to=[rcpt], message=message, xclient=CAPSTONE_ATTACKER)
    evaluation = _capstone_evaluation(lab, msgid)
    if evaluation is None:
        raise LabError("the receiver recorded no evaluation of the subdomain forgery")
    return "rejected" if evaluation.action.startswith("rejected") else evaluation.action


def judge_subdomain_forgery(answer: Any, domain: str, lab: Any) -> Verdict:
    """Exercise of lab 07: what does the receiver do with a forgery from a subdomain that
    does not exist (``pay.<domain>``)? Answer INBOX, Junk or rejected. The question is
    about the secured domain: until the capstone's last step is done, the check says which
    step is missing instead of judging."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: set subdomain_action")
    missing = _missing_step(CAPSTONE_STEPS, domain, lab)
    if missing is not None:
        return Verdict("unanswered", f"not answered yet: this exercise is about {domain} "
                                     f"once it is secured, and step {missing!r} above is "
                                     "not done: do it first, then run this cell again.")
    said = str(value).strip().lower()
    said = "rejected" if said.startswith("reject") else said
    actual = _capstone_forgery_action(domain, lab)
    if said == actual.lower():
        return Verdict("right", f"the receiver's action: {actual}. With no sp= tag the "
                                "organizational domain's p= covers its subdomains too "
                                "(RFC 9989, the tree walk finds _dmarc." + domain + ").")
    return Verdict("wrong", f"you said {value!r}; the receiver's action was {actual}. Hint: "
                            f"the tree walk from pay.{domain} finds _dmarc.{domain}, and "
                            "without sp= its p= applies to subdomains.")


def check_subdomain_forgery(answer: Any, domain: str, lab: Any) -> None:
    """Check cell for :func:`judge_subdomain_forgery`."""
    report(judge_subdomain_forgery(answer, domain, lab))


# -- notebooks/08-troubleshooting.ipynb ----------------------------------------------------
# The judges live beside what they judge (troubleshoot, replycodes, providers); these
# are the check cells' names, imported when first called.

def check_diagnoses(answer: Any, hunt: Any) -> None:
    """Check cell: a cause for each ticket (see
    :func:`labsupport.teach.troubleshoot.judge_diagnoses`)."""
    from .troubleshoot import check_diagnoses as check

    check(answer, hunt)


def check_ticket_fixed(answer: Any, hunt: Any, number: int) -> None:
    """Check cell: ticket ``number`` fixed in the running lab
    (:func:`labsupport.teach.troubleshoot.judge_fixed`)."""
    from .troubleshoot import check_fixed

    check_fixed(answer, hunt, number)


def judge_reply_actions(answer: Any, replies: Mapping[str, str] | Sequence[str]) -> Verdict:
    """Exercise: for each reply, what does the sending side do next?

    ``replies`` is a list of reply lines, or a mapping of labels to reply lines. The answer
    maps each reply (its line, or its label) to one of "done", "continue", "retry later"
    or "give up" (variants such as "retry" or "bounce" count); a list in the same order as
    ``replies`` is accepted too. The expected word comes from :func:`decode`'s class-based
    category (RFC 5321 section 4.2.1).
    """
    from ..mail import replycodes

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: for each reply, say what the sending "
                       "side does next: done, continue, retry later or give up.")
    items = (list(replies.items()) if isinstance(replies, Mapping)
             else [(line, line) for line in replies])
    if isinstance(value, Mapping):
        said_for = {str(k).strip(): v for k, v in value.items()}

        def said_of(label: str, line: str) -> Any:
            return said_for.get(label.strip(), said_for.get(line.strip()))
    elif isinstance(value, Sequence) and not isinstance(value, str) and \
            len(value) == len(items):
        by_position = {label: v for (label, _), v in zip(items, value, strict=True)}

        def said_of(label: str, line: str) -> Any:
            return by_position[label]
    else:
        return Verdict("wrong", "the answer should be a dict: {reply: 'done' | 'continue' | "
                       "'retry later' | 'give up', ...}, one entry for each reply.")
    problems = []
    for label, line in items:
        shown = line if label == line else f"{label} ({line})"
        decoded = replycodes.decode(line)
        raw = said_of(label, line)
        if raw is None or not str(raw).strip():
            problems.append(f"no answer for {shown!r}")
            continue
        said = replycodes.normalise_action(raw)
        if said is None:
            problems.append(f"for {shown!r}, {str(raw)!r} is not one of done, continue, "
                            "retry later, give up")
        elif said != decoded.category:
            digit = (f"the first digit of {decoded.code}" if decoded.code is not None
                     else f"the class of {decoded.enhanced}")
            problems.append(f"{shown!r}: not {said!r}. Hint: look at {digit} "
                            f"({decoded.reply_class}) and what that class means "
                            f"({replycodes.RFC_REPLY_CLASSES})")
    if problems:
        return Verdict("wrong", "; ".join(problems) + ".")
    summary = ", ".join(f"{(line if label == line else label)!r}: "
                        f"{replycodes.decode(line).category}" for label, line in items)
    return Verdict("right", f"right: {summary}.")


def check_reply_actions(answer: Any, replies: Mapping[str, str] | Sequence[str]) -> None:
    """Check cell for :func:`judge_reply_actions`."""
    report(judge_reply_actions(answer, replies))
def check_lab_pairing(answer: Any, lab: Any) -> None:
    """Check cell: a port and TLS mode that work with the lab's submission service
    (:func:`labsupport.teach.providers.judge_lab_pairing`)."""
    from .providers import check_lab_pairing as check

    check(answer, lab)
