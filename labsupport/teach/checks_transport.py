"""Lesson 09, ``notebooks/09-transport-security.ipynb``: DNSSEC's chain of trust checked by
hand, deliveries through the downgrade relay against each defence a domain can publish,
and the lesson's exercise checks. Part of :mod:`labsupport.teach.checks`.

* :func:`trust_chain` checks, with dnspython and no validator, the three links that make
  an answer from a lab zone authentic: the trust anchor's DS is the digest of the zone's
  DNSKEY (RFC 4034 section 5.1.4), that key signed the DNSKEY RRset, and it signed the
  answer (RFC 4035 section 5.3). :func:`failing_rrset` reads which RRset a bogus
  validation stopped at.
* :func:`try_delivery` sends one message the way the lab's delivering MTA does (MTA-STS
  and DANE on), in its own queue, optionally through the STARTTLS-stripping relay of
  notebook 03, and says what became of it (:class:`DefenceRun`); :func:`compare_defences`
  runs every case of :data:`DEFENCE_CASES` with and without the relay.
* The exercises: the association data of a TLSA record (:func:`judge_tlsa_data`), an
  MTA-STS policy for a lab domain (:func:`judge_sts_policy`) and the verdict of a broken
  chain (:func:`judge_broken_chain`, after :func:`break_for_exercise`).
"""

from __future__ import annotations

import html
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder
from .verdicts import Verdict, answer_of, report

if TYPE_CHECKING:
    from ..dns.dnssec_validate import DNSSECResult
    from ..mail.delivery_items import DeliveryAttempt

# -- the chain of trust, by hand ------------------------------------------------------------


@dataclass(frozen=True)
class ChainLink:
    """One link of a chain of trust: ``source`` vouches for ``target`` (``how``);
    ``ok`` says whether the check holds, ``detail`` what was compared; ``reached`` is False
    below a link that fails (its key is then not trusted, whatever this check says)."""

    source: str
    target: str
    how: str
    ok: bool
    detail: str = ""
    reached: bool = True


@dataclass(frozen=True, kw_only=True)
class TrustChain(Result):
    """The links from a lab zone's trust anchor down to one signed RRset, each checked by
    hand: ``verdict`` ``"secure"`` when all hold, ``"bogus"`` when one does not."""

    qname: str
    rdtype: str
    zone: str
    anchor: str
    key: str
    data: str
    links: tuple[ChainLink, ...] = ()

    def title(self) -> str:
        return f"The chain of trust of {self.qname} {self.rdtype}: {self.verdict}"


def _server(source: Any) -> Any:
    server = getattr(source, "dns", source)
    if getattr(server, "dnssec", None) is None or not callable(getattr(server, "answer", None)):
        raise LabError("trust_chain() asks the lab's DNS server: pass the lab or lab.dns")
    return server


def _ask(server: Any, qname: str, rdtype: str) -> Any:
    """Ask the lab's server in memory, with the DO bit, as a validating resolver does."""
    import dns.message

    query = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
    wire = server.answer(query.to_wire(), "lesson-09", "tcp")
    if wire is None:
        raise LabError(f"the lab's DNS server gave no answer to {qname} {rdtype}")
    return dns.message.from_wire(wire)


def _signature_check(rrset: Any, sigs: Any, zone: Any, keys: Any, now: float) -> tuple[bool, str]:
    import dns.dnssec

    if sigs is None:
        return False, "no RRSIG in the answer"
    try:
        dns.dnssec.validate(rrset, sigs, {zone: keys}, now=now)
    except dns.dnssec.ValidationFailure as exc:
        return False, f"the signature does not verify ({exc})"
    return True, "the signature verifies with the key"


def trust_chain(source: Any, qname: str, rdtype: str = "A") -> TrustChain:
    """Check by hand why ``qname`` ``rdtype`` from the lab is authentic (or not).

    ``source`` is the lab (or ``lab.dns``). The lab serves no parent zones (no ``test.``,
    no root), so each signed lab zone's own DS is the validator's trust anchor
    (``lab.dns.dnssec.trust_anchors()``). The answer's RRset is the data; for a name or
    type that does not exist, the NSEC record that proves it is.
    """
    import dns.dnssec
    import dns.name
    import dns.rdatatype

    server = _server(source)
    signer = server.dnssec
    name = dns.name.from_text(qname)
    origin = signer.zones.zone_for(name)
    anchors = signer.trust_anchors()
    if origin is None or origin not in anchors:
        raise LabError(f"{qname} is in no signed lab zone with a trust anchor")
    clock = getattr(server, "clock", None)
    now = float(clock.time()) if clock is not None else time.time()
    trace = TraceBuilder()
    ds = anchors[origin][0]
    anchor_text = (f"DS {ds.key_tag} {int(ds.algorithm)} {int(ds.digest_type)} "
                   f"{ds.digest.hex()[:16]}…")
    trace.add(f"trust anchor for {origin.to_text()}: {anchor_text}", kind="decision",
              rfc="RFC 4035 section 5.2")
    keys_reply = _ask(server, origin.to_text(), "DNSKEY")
    keys = keys_reply.get_rrset(keys_reply.answer, origin, 1, dns.rdatatype.DNSKEY)
    key_sigs = keys_reply.get_rrset(keys_reply.answer, origin, 1, dns.rdatatype.RRSIG,
                                    dns.rdatatype.DNSKEY)
    if keys is None:
        raise LabError(f"{origin.to_text()} publishes no DNSKEY record")
    key = next((k for k in keys if dns.dnssec.key_id(k) == ds.key_tag), keys[0])
    tag = dns.dnssec.key_id(key)
    key_text = f"{origin.to_text()} DNSKEY {key.flags} 3 {int(key.algorithm)} (key tag {tag})"
    digest = dns.dnssec.make_ds(origin, key, ds.digest_type).digest
    links = [ChainLink(anchor_text, key_text, f"SHA-256 digest of DNSKEY {tag}",
                       digest == ds.digest,
                       f"digest of the key {digest.hex()[:16]}…, DS says {ds.digest.hex()[:16]}…")]
    ok, why = _signature_check(keys, key_sigs, origin, keys, now)
    links.append(ChainLink(key_text, key_text, f"RRSIG by key {tag} over the DNSKEY RRset",
                           ok, why))
    reply = _ask(server, qname, rdtype)
    wanted = dns.rdatatype.from_text(rdtype)
    data = [r for r in reply.answer if r.rdtype == wanted]
    section = reply.answer
    if not data:
        data = [r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC]
        section = reply.authority
    if not data:
        raise LabError(f"the answer to {qname} {rdtype} holds neither the records nor an NSEC")
    rrset = data[0]
    sigs = next((r for r in section if r.rdtype == dns.rdatatype.RRSIG
                 and r.covers == rrset.rdtype and r.name == rrset.name), None)
    data_text = (f"{rrset.name.to_text()} {dns.rdatatype.to_text(rrset.rdtype)} "
                 + " ".join(r.to_text() for r in rrset)[:40])
    ok, why = _signature_check(rrset, sigs, origin, keys, now)
    links.append(ChainLink(key_text, data_text,
                           f"RRSIG by key {tag} over {rrset.name.to_text()} "
                           f"{dns.rdatatype.to_text(rrset.rdtype)}", ok, why))
    for number, link in enumerate(links):
        if not all(above.ok for above in links[:number]):
            links[number] = link = replace(link, reached=False)
        words = ("holds" if link.ok else "FAILS") if link.reached else "not reached"
        trace.add(f"{link.how}: {words} ({link.detail})",
                  kind="info" if not link.reached else "ok" if link.ok else "error",
                  rfc="RFC 4035 section 5.3")
    broken = [link for link in links if not link.ok]
    verdict = "bogus" if broken else "secure"
    summary = ("every link holds: the answer is what the zone's key signed" if not broken
               else f"the link '{broken[0].how}' fails: a validator answers SERVFAIL")
    return TrustChain(verdict=verdict, summary=summary, trace=trace.freeze(), qname=qname,
                      rdtype=rdtype, zone=origin.to_text(), anchor=anchor_text, key=key_text,
                      data=data_text, links=tuple(links))


_RRSIG_STEP = re.compile(r"\ARRSIG over (?P<label>.+?): signer ")


def failing_rrset(result: DNSSECResult) -> str | None:
    """The RRset (``"campus.test. DNSKEY"``) whose signature a bogus validation failed
    at, read from its trace; None when the result is not bogus or no signature failed."""
    if result.verdict != "bogus":
        return None
    label = None
    for step in result.trace:
        found = _RRSIG_STEP.match(step.text)
        if found:
            label = found.group("label")
        elif step.kind == "error" and label is not None:
            return label
    return None


def break_for_exercise(lab: Any, zone: str = "campus.test") -> str:
    """Damage one signature in ``zone`` for the last exercise (the one over its DNSKEY
    RRset); returns a name to validate. ``lab.reset()`` repairs it."""
    lab.dns.dnssec.corrupt(zone, "DNSKEY")
    hosts = _mx_hosts(lab.zones, zone)
    return hosts[0] if hosts else zone


def _mx_hosts(zones: Any, domain: str) -> list[str]:
    from ..mail.dane import mx_host_names

    return mx_host_names(zones, domain)


# -- deliveries under attack ---------------------------------------------------------------

#: The lesson's cases: a name, the recipient, and the MTA-STS mode its domain serves during
#: the run (None: as published). alumni.example publishes no defence, northwind.test an
#: MTA-STS policy (the mode is switched for the run), campus.test TLSA records for DANE.
DEFENCE_CASES: dict[str, tuple[str, str | None]] = {
    "no defence": ("grace@alumni.example", None),
    "MTA-STS testing": ("alice@northwind.test", "testing"),
    "MTA-STS enforce": ("alice@northwind.test", "enforce"),
    "DANE": ("carol@campus.test", None),
}
#: Who sends to each recipient domain (a domain never sends to itself in the lesson).
_SENDERS = {"campus.test": "bob@northwind.test"}
_DEFAULT_SENDER = "carol@campus.test"


@dataclass(frozen=True, kw_only=True)
class DefenceRun(Result):
    """One message from the lab's delivering MTA (MTA-STS and DANE on), with or without
    the downgrade relay on the path. ``verdict`` is the outcome in words: ``"delivered
    over TLS"``, ``"delivered in the clear"``, ``"delivered in the clear, reported"``,
    ``"deferred (454 4.7.4)"``..."""

    case: str
    recipient: str
    relay: bool
    attempt: DeliveryAttempt
    sts: str = "no-policy"       # the MTA-STS mode the sender found, or "no-policy"
    dane: str = "none"           # dane_status's verdict for the domain
    tls: bool = False            # the sender's TLS handshake with the MX host succeeded
    stripped: bool = False       # the relay removed STARTTLS from the EHLO reply
    reported: tuple[str, ...] = ()  # TLS-RPT result types of the failures recorded

    @property
    def domain(self) -> str:
        return self.recipient.rpartition("@")[2]

    @property
    def delivered(self) -> bool:
        return self.attempt.verdict == "delivered"

    @property
    def exposed(self) -> bool:
        """Did the message cross the path without TLS?"""
        return self.delivered and not self.tls

    @property
    def exposure(self) -> str:
        """``"protected"`` (over TLS, or held back in the queue), ``"reported"`` (in the
        clear, but recorded for TLS-RPT) or ``"exposed"`` (in the clear, unseen)."""
        if not self.exposed:
            return "protected"
        return "reported" if self.reported else "exposed"

    def title(self) -> str:
        path = "through the downgrade relay" if self.relay else "with no attacker"
        return f"Mail to {self.domain} ({self.case}), {path}: {self.verdict}"

    def _repr_html_(self) -> str:
        return self.attempt._repr_html_().replace(
            f"<b>{html.escape(self.attempt.title())}</b>",
            f"<b>{html.escape(self.title())}</b><br><i>{html.escape(self.summary)}</i>", 1)


def policy_with_mode(text: str, mode: str) -> str:
    """The MTA-STS policy ``text`` with its ``mode`` line set to ``mode`` (checked)."""
    from ..mail.mtasts_policy import parse_policy

    lines = [f"mode: {mode}" if line.startswith("mode:") else line
             for line in text.replace("\r\n", "\n").rstrip("\n").split("\n")]
    changed = "\r\n".join(lines) + "\r\n"
    parse_policy(changed)  # raises MTASTSError with the reason
    return changed


@contextmanager
def served_mode(lab: Any, domain: str, mode: str | None) -> Iterator[None]:
    """Serve ``domain``'s MTA-STS policy in ``mode`` while the block runs, then put the
    policy back as it was (None: leave it as it is)."""
    before = lab.mta_sts.policy(domain)
    if mode is None or before is None:
        yield
        return
    lab.mta_sts.set_policy(domain, policy_with_mode(before, mode))
    try:
        yield
    finally:
        lab.mta_sts.set_policy(domain, before)


def _relay(lab: Any) -> Any:
    """The downgrade relay of notebook 03, standing in front of the lab's MX role."""
    from ..mail.mitm import Downgrader

    front = SimpleNamespace(smtp=SimpleNamespace(port=lambda role: lab.smtp.port("mx")))
    return Downgrader(front, "submission")  # type: ignore[arg-type]


def _outcome(attempt: DeliveryAttempt) -> tuple[str, bool, tuple[str, ...]]:
    tls = any(step.text.startswith("TLS is up") for step in attempt.trace)
    reported = tuple(sorted({s.result for s in attempt.tls if s.result != "success"}))
    if attempt.verdict == "delivered":
        words = ("delivered over TLS" if tls else
                 "delivered in the clear, reported" if reported else "delivered in the clear")
        return words, tls, reported
    reply = attempt.tried[-1].reply if attempt.tried else (attempt.reply or "")
    code = " ".join(reply.split()[:2])
    return f"{attempt.verdict} ({code})" if code else attempt.verdict, False, reported


def try_delivery(lab: Any, case: str = "DANE", *, relay: bool = False,
                 mitm: Any = None, fetcher: Any = None,
                 dane_seen: dict[str, str] | None = None) -> DefenceRun:
    """Send one message for ``case`` (a key of :data:`DEFENCE_CASES`) from a delivering MTA
    of its own (a queue in a temporary folder, MTA-STS and DANE on, as ``lab.queue``),
    straight to the lab's MX role or through the downgrade relay (``relay``; ``mitm``: a
    relay already running). ``fetcher``: the MTA-STS policy cache to use (default: a new,
    empty one, so the policy is fetched). ``dane_seen`` keeps the DANE look-ups' verdicts
    by domain between runs (the look-ups are made once per domain)."""
    from ..mail.dane_enforce import dane_status
    from ..mail.delivery import Queue
    from ..mail.mtasts_fetch import PolicyFetcher

    if case not in DEFENCE_CASES:
        raise LabError(f"unknown case {case!r}; the cases are: {', '.join(DEFENCE_CASES)}")
    recipient, mode = DEFENCE_CASES[case]
    domain = recipient.rpartition("@")[2]
    sender = _SENDERS.get(domain, _DEFAULT_SENDER)
    if fetcher is None:
        fetcher = PolicyFetcher(lab.resolver, ca_file=lab.ca.ca_file,
                                https_port=lambda: lab.mta_sts.port, clock=lab.clock)
    own_relay = _relay(lab) if relay and mitm is None else None
    path = (own_relay or mitm) if relay else None
    stripped_before = len(path.log) if path is not None else 0
    try:
        with served_mode(lab, domain, mode), tempfile.TemporaryDirectory() as folder:
            sts = fetcher.policy_for(domain).verdict
            queue = Queue(Path(folder) / "queue", resolver=lab.resolver, clock=lab.clock,
                          store=lab.mail, mtasts=fetcher, dane=lab.dns, timeout=10,
                          mx_port=(lambda: path.port) if path is not None
                          else (lambda: lab.smtp.port("mx")))
            message = (f"From: {sender}\r\nTo: {recipient}\r\nSubject: lesson 09: {case}\r\n"
                       f"\r\nA message for the transport security lesson.\r\n").encode()
            queue.submit(sender, [recipient], message, sender_domain=sender.rpartition("@")[2])
            [attempt] = queue.run()
    finally:
        if own_relay is not None:
            own_relay.close()
    stripped = path is not None and any("STARTTLS removed" in line
                                        for line in path.log[stripped_before:])
    words, tls, reported = _outcome(attempt)
    seen = {} if dane_seen is None else dane_seen
    if domain not in seen:
        seen[domain] = dane_status(domain, lab.dns).verdict
    summary = {
        "delivered over TLS": "the message crossed the path inside TLS",
        "delivered in the clear": "the message crossed the path unencrypted: anyone on the "
                                  "path could read and change it",
        "delivered in the clear, reported": "the message crossed the path unencrypted, and "
                                            "the failure is recorded for a TLS-RPT report",
    }.get(words, f"the message waits in the queue: {attempt.summary}")
    return DefenceRun(verdict=words, summary=summary, trace=attempt.trace, case=case,
                      recipient=recipient, relay=relay, attempt=attempt, sts=sts,
                      dane=seen[domain], tls=tls, stripped=stripped,
                      reported=reported)


#: The columns of :func:`compare_defences`.
PATHS = {False: "no attacker", True: "downgrade relay on the path"}


def compare_defences(lab: Any, cases: Mapping[str, Any] = DEFENCE_CASES
                     ) -> dict[str, dict[str, DefenceRun]]:
    """Run every case with no attacker and through one downgrade relay: ``{case: {path:
    run}}``, the paths named as in :data:`PATHS`."""
    table: dict[str, dict[str, DefenceRun]] = {case: {} for case in cases}
    seen: dict[str, str] = {}
    with _relay(lab) as mitm:
        for relay in (False, True):
            for case in cases:
                table[case][PATHS[relay]] = try_delivery(lab, case, relay=relay, mitm=mitm,
                                                         dane_seen=seen)
    return table


# -- the exercises -------------------------------------------------------------------------

def _hex(value: Any) -> str | None:
    text = value.hex() if isinstance(value, bytes) else str(value)
    text = re.sub(r"[\s:]", "", text).lower()
    if re.fullmatch(r"[0-3]{3}[0-9a-f]+", text) and len(text) in (67, 131):
        text = text[3:]  # a whole record, "2 1 1 <hex>", with its spaces removed
    return text if re.fullmatch(r"[0-9a-f]+", text) else None


def judge_tlsa_data(answer: Any, ca: Any, usage: int = 2) -> Verdict:
    """Exercise: the association data (hex) of a ``<usage> 1 1`` TLSA record for the lab:
    usage 2 (DANE-TA) names the lab CA's key, usage 3 (DANE-EE) the server's own."""
    from ..mail.dane import lab_tlsa, tlsa_for_certificate

    given, value = answer_of(answer)
    what = "the lab CA" if usage == 2 else "the lab's server certificate"
    if not given:
        return Verdict("unanswered", f"not answered yet: the SHA-256 of {what}'s "
                       "SubjectPublicKeyInfo, in hex.")
    said = _hex(value)
    if said is None:
        return Verdict("wrong", "the answer should be hex digits (bytes.hex() gives them).")
    expected = lab_tlsa(ca, usage=usage).data.hex()
    if said == expected:
        return Verdict("right", f"right: {usage} 1 1 {expected[:16]}… names {what}'s key, as "
                       "a sender computes it (RFC 6698 section 2.1).")
    other = lab_tlsa(ca, usage=5 - usage).data.hex()
    own_file = ca.ca_file if usage == 2 else ca.server_cert_file
    whole = tlsa_for_certificate(Path(own_file), usage, selector=0, matching=1).data.hex()
    if said == other:
        hint = ("that is the other certificate's key. Hint: DANE-TA (2) names the CA "
                "(lab.ca.ca_file), DANE-EE (3) the server (lab.ca.server_cert_file).")
    elif said == whole:
        hint = (f"that hashes the whole certificate: selector 0 (Cert), a {usage} 0 1 record. "
                "Hint: selector 1 (SPKI) hashes only the public key, public_bytes("
                "Encoding.DER, PublicFormat.SubjectPublicKeyInfo).")
    elif len(said) != 64:
        hint = (f"that is {len(said) // 2} bytes; matching type 1 is SHA-256, 32 bytes "
                "(64 hex digits). Hint: hashlib.sha256(...).hexdigest().")
    else:
        hint = ("not that digest. Hint: load the certificate with cryptography's "
                "x509.load_pem_x509_certificate, take .public_key(), its DER "
                "SubjectPublicKeyInfo, and hash that.")
    return Verdict("wrong", hint)


def check_tlsa_data(answer: Any, ca: Any, usage: int = 2) -> None:
    """Check cell for :func:`judge_tlsa_data`."""
    report(judge_tlsa_data(answer, ca, usage))


#: RFC 8461 section 3.2 expects max_age "typically in the range of weeks or greater".
SENSIBLE_MAX_AGE = 7 * 86400


def judge_sts_policy(answer: Any, zones: Any, domain: str = "campus.test") -> Verdict:
    """Exercise: an MTA-STS policy (text) for ``domain`` that names its MX hosts, in
    enforce mode, with a max_age of at least a week. Checked with the project's parser
    against the MX hosts in the lab's zones."""
    from ..mail.mtasts_policy import match_mx, mx_matches, read_policy

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: write the policy file of {domain}.")
    if not isinstance(value, str | bytes):
        return Verdict("wrong", "the policy is text: lines such as 'version: STSv1'.")
    read = read_policy(value, domain)
    policy = read.policy
    if policy is None:
        return Verdict("wrong", f"the policy does not parse: {read.summary} Hint: one "
                       "'key: value' per line: version, mode, one mx line per pattern, "
                       "max_age.")
    hosts = _mx_hosts(zones, domain)
    if policy.mode != "enforce":
        return Verdict("wrong", f"mode {policy.mode} does not refuse a downgrade: only "
                       "mode enforce makes a sender defer instead of delivering in the clear.")
    missing = [h for h in hosts if match_mx(policy, h).verdict != "match"]
    if missing:
        return Verdict("wrong", f"{', '.join(missing)} matches no mx line: in enforce mode a "
                       f"sender would refuse it. Hint: {domain}'s MX hosts are "
                       f"{', '.join(hosts)}; '*.' stands for exactly one label.")
    stray = [p for p in policy.mx if not any(mx_matches(p, h) for h in hosts)]
    if stray:
        return Verdict("wrong", f"mx {', '.join(stray)} is none of {domain}'s MX hosts "
                       f"({', '.join(hosts)}): a policy names only the hosts that receive "
                       "the domain's mail.")
    if policy.max_age < SENSIBLE_MAX_AGE:
        return Verdict("wrong", f"max_age {policy.max_age} s is shorter than a week: each "
                       "time a sender's copy expires, an attacker who blocks the fetch gets "
                       "another chance. RFC 8461 section 3.2 expects weeks or more.")
    return Verdict("right", f"right: a valid enforce policy for {', '.join(hosts)}, kept "
                   f"{policy.max_age // 86400} days by senders.")


def check_sts_policy(answer: Any, zones: Any, domain: str = "campus.test") -> None:
    """Check cell for :func:`judge_sts_policy`."""
    report(judge_sts_policy(answer, zones, domain))


def _label(text: Any) -> str:
    owner, _, rdtype = str(text).strip().rpartition(" ")
    return f"{owner.strip().rstrip('.').lower()} {rdtype.upper()}"


def judge_broken_chain(answer: Any, source: Any, qname: str, rdtype: str = "A") -> Verdict:
    """Exercise: ``(verdict, rrset)`` for ``qname`` ``rdtype``: the validation verdict and
    the RRset whose signature failed (``"zone. TYPE"``; None when nothing failed), both
    computed by validating against the lab now."""
    from ..dns.dnssec_validate import validate

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: validate {qname} {rdtype} and read "
                       "the trace.")
    if not isinstance(value, tuple | list) or len(value) != 2:
        return Verdict("wrong", "the answer is a pair: (verdict, RRset), such as "
                       "(\"secure\", None) or (\"bogus\", \"example.test. MX\").")
    result = validate(qname, rdtype, source)
    failing = failing_rrset(result)
    verdict, rrset = str(value[0]).strip().lower(), value[1]
    if verdict != result.verdict:
        return Verdict("wrong", f"the validation does not end {verdict!r}. Hint: the last "
                       "line of validate(...).text() says the verdict (RFC 4035 section 4.3).")
    if failing is None:
        if rrset is None:
            return Verdict("right", f"right: {result.verdict}, and no signature failed.")
        return Verdict("wrong", "no signature failed in this validation: the RRset is None.")
    if rrset is None or _label(rrset) != _label(failing):
        asked = _label(f"{qname} {rdtype}")
        hint = ("it is not the answer's own RRset: the validator stopped before it got "
                "there, while it was checking the zone's keys" if rrset is not None
                and _label(rrset) == asked and _label(failing) != asked
                else "find the ✘ line in the trace: the 'RRSIG over ...' line above it "
                "names the RRset")
        return Verdict("wrong", f"{verdict}, yes, but not that RRset. Hint: {hint}.")
    return Verdict("right", f"right: {result.verdict}; the signature over {failing} does not "
                   "verify, so nothing below it can be trusted and a validating resolver "
                   "answers SERVFAIL.")


def check_broken_chain(answer: Any, source: Any, qname: str, rdtype: str = "A") -> None:
    """Check cell for :func:`judge_broken_chain`."""
    report(judge_broken_chain(answer, source, qname, rdtype))


__all__ = ["DEFENCE_CASES", "PATHS", "SENSIBLE_MAX_AGE", "ChainLink", "DefenceRun",
           "TrustChain", "break_for_exercise", "check_broken_chain", "check_sts_policy",
           "check_tlsa_data", "compare_defences", "failing_rrset", "judge_broken_chain",
           "judge_sts_policy", "judge_tlsa_data", "policy_with_mode", "served_mode",
           "trust_chain", "try_delivery"]
