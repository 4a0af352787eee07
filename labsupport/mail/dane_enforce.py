"""DANE in the delivering MTA (RFC 7672 section 2): which MX hosts DANE protects, and
STARTTLS with a certificate that matches their TLSA records.

:class:`DaneValidator` asks the lab's DNS with DNSSEC validation
(:func:`labsupport.dns.dnssec_validate.validate`). :class:`DaneGuard` is what the
delivering MTA (:mod:`labsupport.mail.delivery_smtp`) asks about one recipient domain,
as it asks :class:`~labsupport.mail.mtasts_enforce.StsGuard` about MTA-STS:

1. are the domain's MX records DNSSEC-secure (section 2.2.1)? *Insecure*: an attacker
   could have changed them unseen, so DANE does not apply and delivery goes on as
   before. *Bogus* (or the look-up failed): no MX host is used, a temporary failure;
2. before connecting to a host: are its address records secure, then its TLSA records
   (``_25._tcp.<host>``, section 2.2.3)? Secure usable records: DANE applies.
   Insecure, or a signed proof that there are none: the usual opportunistic delivery.
   Bogus: this host is not used (section 2.1.1), the next one is tried;
3. after EHLO, for a host DANE applies to: STARTTLS is mandatory (a server that does not
   offer it is not used: that defeats the downgrade relay), and the certificate chain
   the server sends must match a TLSA record (:func:`labsupport.mail.dane.match_certificate`).

Where DANE secures a host, MTA-STS is not applied to it (RFC 8461 section 2: DANE takes
precedence). Every decision goes into the delivery attempt's trace.

The lab serves no root zone: every signed lab zone is its own trust anchor. A zone the
lab leaves unsigned therefore has no anchor (the validator says "indeterminate"); on the
Internet the root's signatures would prove it unsigned, so it is taken as *insecure*.

Introduced in ``notebooks/09-transport-security.ipynb``.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.results import Result, TraceBuilder
from ..wire.tls import starttls_unverified
from .dane import DANEError, TLSARecord, match_certificate, tlsa_name
from .mtasts_enforce import STATUS_BAD_CERT, STATUS_NO_TLS

if TYPE_CHECKING:  # DNSSEC validation (and cryptography) loads on first use
    from ..dns.dnssec_validate import DNSSECResult

RFC_STATES = "RFC 7672 section 2.1.1"
RFC_MX = "RFC 7672 section 2.2.1"
RFC_LOOKUP = "RFC 7672 section 2.2.3"
RFC_MANDATORY = "RFC 7672 section 2.2"
RFC_SNI = "RFC 7672 section 8.1"
#: RFC 3463: X.4.3 "Directory server failure", for look-ups that do not validate.
STATUS_DNS = "4.4.3"
_DER = 2  # _ssl.ENCODING_DER


def security(result: DNSSECResult) -> str:
    """What a DNSSEC verdict means to DANE: ``"secure"``, ``"insecure"`` or ``"failed"``
    (bogus, or no answer to check: a validating resolver answers SERVFAIL)."""
    if result.verdict in ("secure", "insecure"):
        return result.verdict
    if result.verdict == "indeterminate" and result.summary.startswith("no trust anchor"):
        return "insecure"  # an unsigned lab zone: see the module's docstring
    return "failed"


class DaneValidator:
    """DNSSEC-validated look-ups for DANE, from ``source``: the lab's DNS server
    (``lab.dns``), a lab, or a ``(host, port)`` pair with ``trust_anchor`` (see
    :func:`~labsupport.dns.dnssec_validate.validate`)."""

    def __init__(self, source: Any, trust_anchor: Any = None) -> None:
        self.source = source
        self.trust_anchor = trust_anchor

    @classmethod
    def of(cls, given: Any) -> DaneValidator:
        """``given`` itself when it is a validator, else a validator asking it."""
        return given if isinstance(given, DaneValidator) else cls(given)

    def validate(self, name: str, rdtype: str) -> DNSSECResult:
        from ..dns.dnssec_validate import validate

        return validate(name, rdtype, self.source, self.trust_anchor)

    def tlsa(self, host: str) -> TLSALookup:
        """The TLSA records of MX host ``host`` (``_25._tcp.<host>``), validated."""
        name = tlsa_name(host)
        trace = TraceBuilder()
        trace.add(f"ask {name} TLSA, validating", kind="query", rfc=RFC_LOOKUP)
        result = self.validate(name, "TLSA")
        status = security(result)
        records: list[TLSARecord] = []
        problems: list[str] = []
        lines = [ln for rrset in result.answer for ln in rrset.splitlines()]
        for line in lines if status != "failed" else []:  # a bogus answer is not read
            if " TLSA " in f" {line} ":
                try:
                    records.append(TLSARecord.parse(line))
                except DANEError as exc:
                    problems.append(str(exc))
        with trace.nested():
            _note(trace, result, status)
            for record in records:
                reason = record.unusable_reason()
                trace.add(f"TLSA {record.short()} ({record.label()})"
                          + (f": unusable, {reason}" if reason else ": usable"),
                          kind="answer" if reason is None else "warning",
                          rfc=None if reason is None else "RFC 7672 section 3.1.3")
            for problem in problems:
                trace.add(problem, kind="warning")
        if status == "failed":
            verdict, summary = "failed", (f"the TLSA look-up does not validate "
                                          f"({result.verdict}): do not use {host}")
        elif status == "insecure":
            verdict, summary = "insecure", ("the TLSA records are not signed: DANE does not "
                                            "apply, deliver as usual")
        elif not records:
            verdict, summary = "none", (f"a signed answer says {host} has no TLSA record: DANE "
                                        "does not apply, deliver as usual")
        elif any(r.usable for r in records):
            verdict, summary = "dane", (f"secure, usable TLSA records: {host} must offer "
                                        "STARTTLS and present a matching certificate")
        else:
            verdict, summary = "tls-only", ("secure TLSA records, none usable: TLS is "
                                            "required, the certificate is not authenticated")
        trace.add(summary, kind={"failed": "error", "dane": "decision"}.get(verdict, "info"),
                  rfc=RFC_STATES)
        return TLSALookup(verdict=verdict, summary=summary, trace=trace.freeze(), host=host,
                          name=name, records=tuple(records), dnssec=result.verdict)


@dataclass(frozen=True, kw_only=True)
class TLSALookup(Result):
    """An MX host's TLSA records as DANE sees them: ``verdict`` ``"dane"`` (DANE applies),
    ``"tls-only"`` (records, none usable), ``"none"`` (signed: no records), ``"insecure"``
    or ``"failed"`` (bogus or no answer: the host is not used)."""

    host: str
    name: str
    records: tuple[TLSARecord, ...] = ()
    dnssec: str = ""

    @property
    def applies(self) -> bool:
        return self.verdict in ("dane", "tls-only")

    def title(self) -> str:
        return f"TLSA for {self.host}: {self.verdict}"


def _note(trace: TraceBuilder, result: DNSSECResult, status: str) -> None:
    """One line for a validated answer; the whole validation when it is not secure."""
    label = f"{result.qname} {result.rdtype}"
    if status == "secure":
        chain = " -> ".join(result.chain) or "the trust anchor"
        trace.add(f"{label}: secure (signed, the signatures chain up to {chain})", kind="ok",
                  rfc="RFC 4035 section 4.3")
        return
    if status == "insecure" and result.verdict == "indeterminate":
        trace.add(f"{label}: not signed (no trust anchor covers its zone: in the lab, an "
                  "unsigned zone)", kind="warning", rfc="RFC 4035 section 4.3")
        return
    trace.add(f"{label}: {result.verdict}: {result.summary}",
              kind="warning" if status == "insecure" else "error", rfc="RFC 4035 section 4.3")
    with trace.nested():
        trace.extend(result.trace)


@dataclass
class DaneGuard:
    """DANE for one domain of one delivery run (mutable while it runs)."""

    domain: str
    validator: DaneValidator
    mx_failure: str | None = None
    hosts: dict[str, TLSALookup] = field(default_factory=dict)
    secured: set[str] = field(default_factory=set)

    @classmethod
    def lookup(cls, dane: Any, domain: str, trace: TraceBuilder) -> DaneGuard | None:
        """The guard for ``domain``, or None when DANE cannot apply (no validator, or
        MX records that are not signed)."""
        if dane is None:
            return None
        validator = DaneValidator.of(dane)
        trace.add(f"DANE: are the MX records of {domain} DNSSEC-signed?", kind="query",
                  rfc=RFC_MX)
        result = validator.validate(domain, "MX")
        status = security(result)
        with trace.nested():
            _note(trace, result, status)
        if status == "insecure":
            trace.add("DANE: the MX records are not signed, so an attacker could change them "
                      "unseen; DANE does not apply to this domain: deliver as before",
                      kind="decision", rfc=RFC_MX)
            return None
        if status == "failed":
            trace.add(f"DANE: the MX records of {domain} do not validate: a validating "
                      "resolver gives no answer, so no MX host may be used", kind="error",
                      rfc=RFC_STATES)
            return cls(domain, validator, mx_failure=f"{result.verdict}: {result.summary}")
        trace.add("DANE: the MX records are signed; each MX host's TLSA records decide "
                  "whether its TLS is authenticated", kind="decision", rfc=RFC_MX)
        return cls(domain, validator)

    def check_host(self, host: str, trace: TraceBuilder) -> str | None:
        """Before connecting: the reply of a temporary failure when ``host`` must not be
        used (look-ups that do not validate), else None (DANE or the usual delivery)."""
        if self.mx_failure is not None:
            return (f"451 {STATUS_DNS} DANE: the MX records of {self.domain} do not validate "
                    f"({self.mx_failure})")
        trace.add(f"DANE: are the address records of {host} signed?", kind="query",
                  rfc=RFC_LOOKUP)
        address = self.validator.validate(host, "A")
        status = security(address)
        with trace.nested():
            _note(trace, address, status)
        if status == "failed":
            trace.add(f"DANE: the address of {host} does not validate: do not use it",
                      kind="error", rfc=RFC_STATES)
            return f"451 {STATUS_DNS} DANE: the address records of {host} do not validate"
        if status == "insecure":
            trace.add(f"DANE: the address of {host} is not signed: no TLSA look-up, deliver "
                      "as before", kind="decision", rfc=RFC_LOOKUP)
            return None
        found = self.validator.tlsa(host)
        with trace.nested():
            trace.extend(found.trace)
        if found.verdict == "failed":
            trace.add(f"DANE: the TLSA records of {host} do not validate ({found.dnssec}): "
                      "do not deliver through it", kind="error", rfc=RFC_STATES)
            return (f"451 {STATUS_DNS} DANE: the TLSA records of {host} do not validate "
                    f"({found.dnssec})")
        if found.applies:
            self.hosts[host] = found
        return None

    def protects(self, host: str) -> bool:
        """Did DANE authenticate (or at least require) TLS with ``host`` in this run?"""
        return host in self.secured

    def secure(self, client: smtplib.SMTP, host: str, trace: TraceBuilder,
               hello: Callable[[], tuple[bool, str]]) -> str | None:
        """After the first EHLO: STARTTLS and the TLSA match, for a host DANE applies to.

        Returns None to go on (TLS is up and matched, or DANE does not apply to
        ``host``), or the reply of a temporary failure: the host must not be used.
        """
        found = self.hosts.get(host)
        if found is None:
            return None
        if not client.has_extn("starttls"):
            reason = (f"{host} does not offer STARTTLS, yet its signed TLSA records promise "
                      "TLS (a downgrade, or TLS switched off)")
            trace.add(f"DANE: {reason}: do not deliver through {host}", kind="error",
                      rfc=RFC_MANDATORY)
            return f"454 {STATUS_NO_TLS} DANE: {reason}"
        trace.add("-> STARTTLS", kind="query", rfc=RFC_MANDATORY)
        # SNI: the TLSA base domain (RFC 7672 section 8.1); the TLSA records, not the Web
        # PKI, say which certificate, so the handshake checks none.
        try:
            reply = starttls_unverified(client, host)
        except smtplib.SMTPResponseException as exc:
            reason = f"STARTTLS was refused: {exc.smtp_code} {exc.smtp_error!r}"
            trace.add(f"DANE: {reason}: do not deliver through {host}", kind="error",
                      rfc=RFC_MANDATORY)
            return f"454 {STATUS_NO_TLS} DANE: {reason}"
        except (ssl.SSLError, OSError) as exc:
            trace.add(f"DANE: the TLS handshake failed: {exc}; the connection is lost",
                      kind="error")
            return f"421 {STATUS_BAD_CERT} DANE: the TLS handshake with {host} failed: {exc}"
        trace.add(f"<- {reply}", kind="answer")
        sock = client.sock
        chain = peer_chain(sock) if isinstance(sock, ssl.SSLSocket) else ()
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        trace.add(f"TLS is up ({version}); match the {len(chain)} certificate(s) {host} sent "
                  "against its TLSA records", kind="info", rfc="RFC 7672 section 3")
        match = match_certificate(found.records, chain, host)
        with trace.nested():
            trace.extend(match.trace)
        if match.verdict == "no-match":
            trace.add(f"DANE: {match.summary}: do not deliver through {host}", kind="error",
                      rfc="RFC 7672 section 3")
            return f"454 {STATUS_BAD_CERT} DANE: {match.summary}"
        greeted, reply = hello()
        if not greeted:
            return reply
        self.secured.add(host)
        if match.ok:
            trace.add(f"DANE: {match.summary}: {host} is authenticated, deliver over this TLS "
                      "session", kind="ok", rfc="RFC 7672 section 3")
        else:
            trace.add(f"DANE: TLS with {host} is encrypted but not authenticated (no usable "
                      "TLSA record): deliver over it", kind="warning", rfc=RFC_STATES)
        return None


@dataclass(frozen=True, kw_only=True)
class DaneStatus(Result):
    """Does DANE protect mail to a domain, host by host (the look-ups only, no delivery)?
    ``verdict``: ``"dane"`` (every MX host), ``"partial"``, ``"none"`` (no MX host has
    usable records), ``"insecure"`` (the MX records are not signed) or ``"failed"``."""

    domain: str
    hosts: tuple[tuple[str, str], ...] = ()

    def title(self) -> str:
        return f"DANE for mail to {self.domain}: {self.verdict}"


def dane_status(domain: str, source: Any, trust_anchor: Any = None) -> DaneStatus:
    """The DANE look-ups a sending MTA makes for ``domain`` (RFC 7672 section 2), without
    connecting: MX records, then each MX host's address and TLSA records. ``source`` is
    what :class:`DaneValidator` takes (``lab.dns``)."""
    trace = TraceBuilder()
    validator = DaneValidator(source, trust_anchor)
    guard = DaneGuard.lookup(validator, domain, trace)
    if guard is None:
        return DaneStatus(verdict="insecure", trace=trace.freeze(), domain=domain,
                          summary=f"the MX records of {domain} are not signed: DANE cannot "
                                  "protect its mail")
    answer = validator.validate(domain, "MX").answer
    names = [ln.split()[-1].rstrip(".").lower() for rrset in answer
             for ln in rrset.splitlines() if " MX " in ln]
    hosts: list[tuple[str, str]] = []
    for host in sorted(set(names) - {""}) or [domain]:
        trace.add(f"MX host {host}", kind="info")
        with trace.nested():
            refused = guard.check_host(host, trace)
        found = guard.hosts.get(host)
        hosts.append((host, "failed" if refused else found.verdict if found else "no DANE"))
    protected = [h for h, v in hosts if v in ("dane", "tls-only")]
    if guard.mx_failure is not None or any(v == "failed" for _h, v in hosts):
        verdict, summary = "failed", "a look-up does not validate: mail waits (temporary failure)"
    elif len(protected) == len(hosts):
        verdict, summary = "dane", "every MX host publishes signed TLSA records: TLS is required"
    elif protected:
        verdict, summary = "partial", f"only {', '.join(protected)} publish TLSA records"
    else:
        verdict, summary = "none", "no MX host publishes usable TLSA records"
    return DaneStatus(verdict=verdict, summary=summary, trace=trace.freeze(), domain=domain,
                      hosts=tuple(hosts))


def peer_chain(sock: ssl.SSLSocket) -> tuple[bytes, ...]:
    """The certificates the peer sent (DER, its own first), not verified.

    Python 3.13 has ``SSLSocket.get_unverified_chain()``; 3.10 to 3.12 have it on the
    socket's private ``_sslobj`` only. Without either, just the peer's own certificate.
    """
    getter = getattr(sock, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
    certs: list[bytes] = []
    if getter is not None:
        for item in getter() or ():
            certs.append(item if isinstance(item, bytes) else item.public_bytes(_DER))
    if not certs:
        leaf = sock.getpeercert(binary_form=True)
        certs = [leaf] if leaf else []
    return tuple(certs)


__all__ = ["DaneGuard", "DaneStatus", "DaneValidator", "TLSALookup", "dane_status",
           "peer_chain", "security"]
