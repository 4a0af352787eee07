"""Applying an MTA-STS policy while delivering (RFC 8461 sections 4 and 5).

:class:`StsGuard` is what the delivering MTA (:mod:`labsupport.mail.delivery_smtp`) asks
about one recipient domain with an active policy: is this MX host one the policy names
(section 4.1), and, once connected, does it offer STARTTLS and present a certificate
that validates for the MX host name (section 4.2)? In ``enforce`` mode a failure means
the host is not used (the message waits for another host or a later try, section 5); in
``testing`` mode the message is delivered anyway and the failure only recorded. Every
decision goes into the attempt's trace, and every host into a
:class:`~labsupport.mail.delivery_items.TLSSession`, which TLS-RPT
(:mod:`labsupport.mail.tlsrpt`) counts.

The certificate is checked after a TLS handshake that does not verify by itself (so that
``testing`` mode can go on over the same connection): :func:`validate_certificate` checks
that the lab CA signed it, that it is within its dates, and that a DNS name in its
subjectAltName matches the MX host (RFC 6125: a wildcard stands for the whole left-most
label), and names the TLS-RPT result type of the first check that fails.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from ..core.results import TraceBuilder
from ..wire.tls import starttls_unverified
from .delivery_items import TLSSession
from .mtasts_fetch import PolicyFetcher
from .mtasts_policy import RFC_APPLY, RFC_CERT, RFC_MX, STSPolicy, match_mx, mx_matches

RFC_STARTTLS = "RFC 3207"
#: Enhanced status codes of the deferrals (RFC 3463 section 3.8): X.7.4 "Security
#: features not supported", X.7.5 "Cryptographic failure".
STATUS_NO_TLS = "4.7.4"
STATUS_BAD_CERT = "4.7.5"


@dataclass(frozen=True)
class CertCheck:
    """A certificate judged for an MX host: ``result`` ``"success"`` or a TLS-RPT result
    type; ``reason`` in words; ``steps`` what was checked, in order."""

    result: str
    reason: str
    steps: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.result == "success"


def validate_certificate(der: bytes | None, host: str, ca_file: str | Path,
                         now: datetime | None = None) -> CertCheck:
    """Does the certificate ``der`` validate for MX host ``host`` (RFC 8461 section 4.2)?

    It must be signed by a CA in ``ca_file`` (the lab's certificates are issued directly
    by the lab CA), be within its validity dates (``now``, default the real time: TLS
    runs on real time, not the lab clock), and carry a subjectAltName DNS name matching
    ``host``.
    """
    from cryptography import x509  # imported when first needed
    from cryptography.exceptions import InvalidSignature

    if not der:
        return CertCheck("validation-failure", "the server presented no certificate")
    steps: list[str] = []
    try:
        leaf = x509.load_der_x509_certificate(der)
        authorities = x509.load_pem_x509_certificates(Path(ca_file).read_bytes())
    except (OSError, ValueError) as exc:
        return CertCheck("validation-failure", f"the certificate cannot be read: {exc}")
    issuer = leaf.issuer.rfc4514_string()
    signed = False
    for authority in authorities:
        try:
            leaf.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):  # not signed by this CA
            continue
        signed = True
        break
    if not signed:
        return CertCheck("certificate-not-trusted",
                         f"it is not signed by a trusted CA (issuer {issuer})", tuple(steps))
    steps.append(f"signed by the trusted CA {issuer}")
    when = now or datetime.now(UTC)
    if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
        return CertCheck("certificate-expired",
                         f"it is valid from {leaf.not_valid_before_utc:%Y-%m-%d} to "
                         f"{leaf.not_valid_after_utc:%Y-%m-%d}, not now", tuple(steps))
    steps.append(f"valid until {leaf.not_valid_after_utc:%Y-%m-%d}")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    match = next((n for n in names if mx_matches(n, host)), None)
    if match is None:
        return CertCheck("certificate-host-mismatch",
                         f"none of its names ({', '.join(names) or 'no DNS names'}) is "
                         f"{host}", tuple(steps))
    steps.append(f"its name {match} covers {host}")
    return CertCheck("success", "; ".join(steps), tuple(steps))


@dataclass
class StsGuard:
    """MTA-STS for one domain of one delivery run (mutable while it runs)."""

    domain: str
    policy: STSPolicy
    policy_id: str
    ca_file: Path
    now: float
    sending_ip: str | None = None
    sessions: list[TLSSession] = field(default_factory=list)
    _pending: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def enforce(self) -> bool:
        return self.policy.mode == "enforce"

    @classmethod
    def lookup(cls, fetcher: PolicyFetcher | None, domain: str, trace: TraceBuilder,
               now: float, sending_ip: str | None) -> StsGuard | None:
        """The guard for ``domain``, or None when it has no active policy."""
        if fetcher is None:
            return None
        trace.add(f"MTA-STS: does {domain} publish a policy?", kind="query", rfc=RFC_APPLY)
        found = fetcher.policy_for(domain)
        with trace.nested():
            trace.extend(found.trace)
        if not found.active or found.policy is None or found.policy_id is None:
            trace.add("MTA-STS: no active policy: deliver as before, TLS not required",
                      kind="decision", rfc=RFC_APPLY)
            return None
        what = ("a host that fails is not used" if found.policy.mode == "enforce" else
                "failures are delivered anyway and reported")
        trace.add(f"MTA-STS: mode {found.policy.mode}: every MX host must match the policy, "
                  f"offer STARTTLS and present a valid certificate; {what}",
                  kind="decision", rfc=RFC_APPLY)
        return cls(domain=domain, policy=found.policy, policy_id=found.policy_id,
                   ca_file=fetcher.ca_file, now=now, sending_ip=sending_ip)

    # -- the checks ----------------------------------------------------------------------

    def allows_host(self, host: str, trace: TraceBuilder,
                    addresses: tuple[str, ...] = ()) -> bool:
        """MX host validation (section 4.1): False when the host must be skipped."""
        match = match_mx(self.policy, host)
        with trace.nested():
            trace.extend(match.trace)
        if match.verdict == "match":
            return True
        reason = f"{host} matches none of the policy's mx patterns"
        if self.enforce:
            trace.add(f"MTA-STS enforce: skip {host}, the policy does not name it",
                      kind="error", rfc=RFC_MX)
            self._record(host, "validation-failure", reason, addresses)
            return False
        trace.add(f"MTA-STS testing: {host} is not in the policy; try it anyway and report "
                  "the failure", kind="warning", rfc=RFC_MX)
        self._pending[host] = ("validation-failure", reason)
        return True

    def secure(self, client: smtplib.SMTP, host: str, trace: TraceBuilder,
               hello: Callable[[], tuple[bool, str]],
               addresses: tuple[str, ...] = ()) -> str | None:
        """STARTTLS and the certificate check, after the first EHLO.

        Returns None to go on with the session (TLS is up, or testing mode carries on),
        or the reply of a temporary failure: the host must not be used.
        """
        if not client.has_extn("starttls"):
            reason = f"{host} does not offer STARTTLS (a downgrade, or TLS switched off)"
            return self._failed(host, "starttls-not-supported", reason, trace, addresses,
                                f"454 {STATUS_NO_TLS} MTA-STS: {reason}", RFC_STARTTLS)
        trace.add("-> STARTTLS", kind="query", rfc=RFC_STARTTLS)
        # SNI: the MX host (RFC 8461 section 7.1); the certificate is checked below, so
        # that testing mode can go on when it fails.
        try:
            reply = starttls_unverified(client, host)
        except smtplib.SMTPResponseException as exc:
            reason = f"STARTTLS was refused: {exc.smtp_code} {exc.smtp_error!r}"
            return self._failed(host, "starttls-not-supported", reason, trace, addresses,
                                f"454 {STATUS_NO_TLS} MTA-STS: {reason}", RFC_STARTTLS)
        except (ssl.SSLError, OSError) as exc:
            reason = f"the TLS handshake failed: {exc}"
            self._record(host, "validation-failure", reason, addresses)
            trace.add(f"MTA-STS: {reason}; the connection is lost", kind="error")
            return f"421 {STATUS_BAD_CERT} MTA-STS: {reason}"
        trace.add(f"<- {reply}", kind="answer")
        sock = client.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        trace.add(f"TLS is up ({version}); check the certificate for {host}", kind="info",
                  rfc=RFC_CERT)
        check = validate_certificate(der, host, self.ca_file)
        with trace.nested():
            for step in check.steps:
                trace.add(step, kind="ok", rfc=RFC_CERT)
        if not check.ok:
            reason = f"the certificate does not validate for {host}: {check.reason}"
            failure = self._failed(host, check.result, reason, trace, addresses,
                                   f"454 {STATUS_BAD_CERT} MTA-STS: {reason}", RFC_CERT)
            if failure is not None:
                return failure
        greeted, reply = hello()
        if not greeted:
            return reply
        if check.ok:
            earlier = self._pending.pop(host, None)
            if earlier is None:
                trace.add(f"MTA-STS: {host} passed: STARTTLS and a valid certificate",
                          kind="ok", rfc=RFC_APPLY)
                self._record(host, "success", None, addresses)
            else:
                self._record(host, earlier[0], earlier[1], addresses)
        return None

    def _failed(self, host: str, result: str, reason: str, trace: TraceBuilder,
                addresses: tuple[str, ...], reply: str, rfc: str) -> str | None:
        earlier = self._pending.pop(host, None)
        self._record(host, *(earlier or (result, reason)), addresses)
        if self.enforce:
            trace.add(f"MTA-STS enforce: {reason} ({result}): do not deliver through "
                      f"{host}", kind="error", rfc=rfc)
            return reply
        trace.add(f"MTA-STS testing: {reason} ({result}): deliver anyway, and report it",
                  kind="warning", rfc=rfc)
        return None

    def _record(self, host: str, result: str, reason: str | None,
                addresses: tuple[str, ...]) -> None:
        self.sessions.append(TLSSession(
            policy_domain=self.domain, mode=self.policy.mode, policy_id=self.policy_id,
            policy_string=self.policy.lines, mx_patterns=self.policy.mx, mx_host=host,
            result=result, at=self.now, sending_ip=self.sending_ip,
            receiving_ip=addresses[0] if addresses else None, failure_reason=reason))

    def frozen(self, delivered_through: str | None) -> tuple[TLSSession, ...]:
        """The sessions, the one that took the message marked ``delivered``."""
        out: list[TLSSession] = []
        marked = False
        for session in reversed(self.sessions):
            hit = not marked and session.mx_host == delivered_through
            marked = marked or hit
            out.append(replace(session, delivered=hit))
        return tuple(reversed(out))


__all__ = ["CertCheck", "STATUS_BAD_CERT", "STATUS_NO_TLS", "StsGuard",
           "validate_certificate"]
