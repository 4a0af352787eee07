"""DANE for SMTP: TLSA records, and a server's certificate matched against them.

A TLSA record (RFC 6698 section 2) tells a sending MTA, through DNSSEC-signed DNS, which
certificate or key the receiving MX host presents: ``_25._tcp.<mx host> TLSA`` with three
numbers and the data, for example ``3 1 1 <hex>``:

* the *certificate usage* (RFC 7218 names): ``DANE-EE(3)`` names the server's own key or
  certificate, ``DANE-TA(2)`` a trust anchor (a CA) that issued it. ``PKIX-TA(0)`` and
  ``PKIX-EE(1)`` also need a public CA the sender trusts, which SMTP has not: RFC 7672
  section 3.1.3 makes them *unusable* for SMTP;
* the *selector*: ``Cert(0)`` the whole certificate, ``SPKI(1)`` only its
  SubjectPublicKeyInfo (the key survives a renewed certificate);
* the *matching type*: ``Full(0)`` the data itself, ``SHA2-256(1)`` or ``SHA2-512(2)``
  its digest.

RFC 7672 section 3.1 recommends ``3 1 1``: DANE-EE with the SHA-256 of the key. With
DANE-EE neither the names nor the dates of the certificate are checked (section
3.1.1): the DNSSEC-signed record itself says "this key". With DANE-TA the chain from the
server's certificate up to the named CA is checked, and the server's name must match
(section 3.2), and the server must send the CA's certificate in its chain when the
record holds only a digest (RFC 7671 section 5.2.2, RFC 7672 section 3.1.2).

:func:`tlsa_for_certificate` makes a record from a certificate, :func:`lab_tlsa` from
the lab's own certificates, :func:`publish_tlsa` publishes them for the MX hosts of the
lab domains in :data:`DANE_DOMAINS`, and :func:`match_certificate` checks the chain a
server sent against a TLSA RRset, every step in words. The sending side (look-ups
through DNSSEC, STARTTLS made mandatory) is :mod:`labsupport.mail.dane_enforce`.

Introduced in ``notebooks/09-transport-security.ipynb``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.exception

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder
from .mtasts_policy import mx_matches

RFC_TLSA = "RFC 6698 section 2.1"
RFC_USABLE = "RFC 7672 section 3.1.3"
RFC_EE = "RFC 7672 section 3.1.1"
RFC_TA = "RFC 7672 section 3.1.2"
RFC_NAMES = "RFC 7672 section 3.2.1"
RFC_TA_CHAIN = "RFC 7671 section 5.2.2"

#: RFC 7218 section 2: the mnemonics of the three fields.
USAGES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
SELECTORS = {0: "Cert", 1: "SPKI"}
MATCHING_TYPES = {0: "Full", 1: "SHA2-256", 2: "SHA2-512"}
DANE_TA = 2
DANE_EE = 3
#: RFC 7672 section 2.2.3: SMTP between MTAs, port 25, so ``_25._tcp.<host>``.
SMTP_PORT = 25
#: The lab domains whose MX hosts publish TLSA records (the well-run campus.test;
#: northwind.test teaches MTA-STS instead, so the two defences can be compared).
DANE_DOMAINS = ("campus.test",)
_DIGEST_SIZES = {1: 32, 2: 64}


class DANEError(LabError, ValueError):
    """A TLSA record or certificate that cannot be used; the message says why."""


def tlsa_name(host: str, port: int = SMTP_PORT) -> str:
    """The owner name of ``host``'s TLSA records: ``_25._tcp.<host>.`` (RFC 6698 section 3)."""
    return f"_{port}._tcp.{host.strip().rstrip('.').lower()}."


@dataclass(frozen=True)
class TLSARecord:
    """One TLSA record: usage, selector, matching type and the association data."""

    usage: int
    selector: int
    matching: int
    data: bytes

    @classmethod
    def parse(cls, text: str) -> TLSARecord:
        """A record from its presentation form, ``"3 1 1 0a1b..."`` (a zone file line
        with ``TLSA`` in it is accepted too)."""
        fields = text.split()
        if "TLSA" in (f.upper() for f in fields):
            fields = fields[[f.upper() for f in fields].index("TLSA") + 1:]
        try:
            usage, selector, matching = (int(f) for f in fields[:3])
            data = bytes.fromhex("".join(fields[3:]))
        except ValueError as exc:
            raise DANEError(f"{text!r} is not a TLSA record: it is usage, selector, matching "
                            f"type and hex data, for example '3 1 1 0a1b...' ({RFC_TLSA})"
                            ) from exc
        if not data:
            raise DANEError(f"{text!r} has no certificate association data ({RFC_TLSA})")
        return cls(usage, selector, matching, data)

    def text(self) -> str:
        """The presentation form, as in a zone file."""
        return f"{self.usage} {self.selector} {self.matching} {self.data.hex()}"

    def short(self) -> str:
        """The record with its data cut short, for traces."""
        return f"{self.usage} {self.selector} {self.matching} {self.data.hex()[:16]}…"

    def label(self) -> str:
        """The three fields by their RFC 7218 names: ``DANE-EE(3) SPKI(1) SHA2-256(1)``."""
        return " ".join(f"{names.get(value, 'unknown')}({value})" for names, value in (
            (USAGES, self.usage), (SELECTORS, self.selector),
            (MATCHING_TYPES, self.matching)))

    def unusable_reason(self) -> str | None:
        """Why an SMTP client must ignore this record (RFC 7672 section 3.1.3), or None."""
        if self.usage in (0, 1):
            return (f"usage {USAGES[self.usage]}({self.usage}) needs a public CA the sender "
                    "trusts, which SMTP between MTAs has not: unusable for SMTP")
        if self.usage not in USAGES:
            return f"usage {self.usage} is not defined"
        if self.selector not in SELECTORS:
            return f"selector {self.selector} is not defined"
        if self.matching not in MATCHING_TYPES:
            return f"matching type {self.matching} is not defined"
        size = _DIGEST_SIZES.get(self.matching)
        if size is not None and len(self.data) != size:
            return (f"the data is {len(self.data)} bytes, but a {MATCHING_TYPES[self.matching]} "
                    f"digest is {size} bytes")
        return None

    @property
    def usable(self) -> bool:
        return self.unusable_reason() is None

    def matches(self, der: bytes) -> bool:
        """Does the certificate ``der`` give this record's data (selector, then matching)?"""
        return association_data(der, self.selector, self.matching) == self.data

    def __str__(self) -> str:
        return self.text()


def association_data(der: bytes, selector: int = 1, matching: int = 1) -> bytes:
    """The certificate association data of the certificate ``der`` (RFC 6698 sections
    2.1.2 and 2.1.3): the whole certificate or its SubjectPublicKeyInfo (selector 0/1),
    as it is or as its SHA-256 or SHA-512 digest (matching type 0/1/2)."""
    from cryptography import x509  # imported when first needed
    from cryptography.hazmat.primitives import serialization

    if selector == 0:
        selected = der
    elif selector == 1:
        try:
            key = x509.load_der_x509_certificate(der).public_key()
        except ValueError as exc:
            raise DANEError(f"the certificate cannot be read: {exc}") from exc
        selected = key.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        raise DANEError(f"selector {selector} is not 0 (Cert) or 1 (SPKI) ({RFC_TLSA})")
    if matching == 0:
        return selected
    if matching == 1:
        return hashlib.sha256(selected).digest()
    if matching == 2:
        return hashlib.sha512(selected).digest()
    raise DANEError(f"matching type {matching} is not 0 (Full), 1 (SHA2-256) or "
                    f"2 (SHA2-512) ({RFC_TLSA})")


def _der(cert: bytes | str | Path) -> bytes:
    """The first certificate of ``cert``: DER bytes, PEM text or bytes, or a PEM file."""
    import ssl

    if isinstance(cert, Path) or (isinstance(cert, str) and "-----BEGIN" not in cert):
        path = Path(cert)
        try:
            cert = path.read_bytes()
        except OSError as exc:
            raise DANEError(f"cannot read the certificate file {path}: {exc}") from exc
    if isinstance(cert, str):
        cert = cert.encode("ascii", "replace")
    if b"-----BEGIN CERTIFICATE-----" in cert:
        pem = cert.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
        try:
            return ssl.PEM_cert_to_DER_cert(pem[pem.index(b"-----BEGIN"):].decode("ascii"))
        except ValueError as exc:
            raise DANEError(f"the PEM certificate cannot be read: {exc}") from exc
    return cert


def tlsa_for_certificate(cert: bytes | str | Path, usage: int = DANE_EE, selector: int = 1,
                         matching: int = 1) -> TLSARecord:
    """The TLSA record naming ``cert`` (DER bytes, PEM, or a PEM file: its first
    certificate). The default, ``3 1 1``, is the one RFC 7672 section 3.1 recommends."""
    if usage not in USAGES:
        raise DANEError(f"usage {usage} is not 0 to 3; SMTP uses 3 (DANE-EE) or 2 (DANE-TA)")
    return TLSARecord(usage, selector, matching, association_data(_der(cert), selector,
                                                                  matching))


def lab_tlsa(ca: Any, usage: int = DANE_EE, selector: int = 1,
             matching: int = 1) -> TLSARecord:
    """The TLSA record for the lab's mail server, from its :class:`~labsupport.wire.tls.LabCA`:
    ``3 1 1`` names the server certificate's key, ``2 1 1`` the lab CA's key."""
    source = ca.server_cert_file if usage == DANE_EE else ca.ca_file
    return tlsa_for_certificate(Path(source), usage, selector, matching)


def mx_host_names(zones: Any, domain: str) -> list[str]:
    """The MX host names of ``domain`` in the lab's zones (none for a null MX)."""
    try:
        answer = zones.resolve(domain, "MX")
    except dns.exception.DNSException:
        return []
    hosts = [str(r.exchange).rstrip(".").lower() for r in answer]
    return sorted(h for h in set(hosts) if h)


def publish_tlsa(zones: Any, ca: Any, domains: Iterable[str] = DANE_DOMAINS,
                 usage: int = DANE_EE) -> list[str]:
    """Publish ``_25._tcp.<mx host> TLSA`` for every MX host of ``domains`` that the lab
    serves, from the lab's certificates (:func:`lab_tlsa`), replacing what was there.

    They are published as if the zone files had them (:meth:`ZoneSet.publish
    <labsupport.dns.zone_edits._ZoneEdits.publish>`: not journaled as live edits, kept by
    a reset); the zones' DNSSEC signer signs them with the next question. Returns the
    records as zone-file lines.
    """
    record = lab_tlsa(ca, usage)
    lines = []
    for domain in domains:
        for host in mx_host_names(zones, domain):
            if zones.zone_for(host) is None:
                continue  # an MX host outside the lab's zones: nothing to publish there
            name = tlsa_name(host)
            zones.publish(name, "TLSA", record.text())
            lines.append(f"{name} TLSA {record.text()}")
    return lines


# -- matching a certificate chain ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TLSAMatch(Result):
    """A server's certificate chain against a TLSA RRset: ``verdict`` ``"match"``,
    ``"no-match"`` or ``"no-usable-records"`` (TLS is then required, but not
    authenticated: RFC 7672 section 2.1.1)."""

    host: str
    record: str | None = None
    chain: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verdict == "match"

    def title(self) -> str:
        return f"DANE for {self.host}: {self.verdict}"


def match_certificate(records: Iterable[TLSARecord | str], chain: Sequence[bytes], host: str,
                      *, now: datetime | None = None) -> TLSAMatch:
    """Does the chain ``chain`` (DER, the server's own certificate first, as it sent them)
    match a usable record of ``records`` for MX host ``host``?

    DANE-EE(3): the server's certificate itself must match; names and dates are not
    checked (RFC 7672 section 3.1.1). DANE-TA(2): a certificate the server sent must
    match, each certificate below it must be signed by the next one up to it and be
    within its dates (``now``, default the real time: TLS runs on real time), and a DNS
    name of the server's certificate must be ``host`` (RFC 7672 sections 3.1.2 and 3.2).
    """
    trace = TraceBuilder()
    parsed = [r if isinstance(r, TLSARecord) else TLSARecord.parse(r) for r in records]
    subjects = tuple(_subject(der) for der in chain)
    for number, subject in enumerate(subjects):
        trace.add(f"certificate {number} the server sent: {subject}"
                  + (" (its own)" if number == 0 else ""), kind="answer")
    usable = []
    for record in parsed:
        reason = record.unusable_reason()
        if reason is None:
            usable.append(record)
        else:
            trace.add(f"TLSA {record.short()} ({record.label()}): ignored: {reason}",
                      kind="warning", rfc=RFC_USABLE)
    if not usable:
        summary = ("no TLSA record is usable: TLS is still required, but the certificate "
                   "cannot be authenticated")
        trace.add(summary, kind="warning", rfc="RFC 7672 section 2.1.1")
        return TLSAMatch(verdict="no-usable-records", summary=summary, trace=trace.freeze(),
                         host=host, chain=subjects)
    if not chain:
        summary = "the server presented no certificate"
        trace.add(summary, kind="error")
        return TLSAMatch(verdict="no-match", summary=summary, trace=trace.freeze(),
                         host=host)
    when = now or datetime.now(UTC)
    reasons = []
    for record in sorted(usable, key=lambda r: -r.usage):  # DANE-EE first: the simplest
        trace.add(f"TLSA {record.short()} ({record.label()})", kind="query",
                  rfc=RFC_EE if record.usage == DANE_EE else RFC_TA)
        with trace.nested():
            reason = (_match_ee(record, chain, trace) if record.usage == DANE_EE
                      else _match_ta(record, chain, host, when, trace))
        if reason is None:
            summary = f"the certificate of {host} matches TLSA {record.short()}"
            trace.add(summary, kind="ok")
            return TLSAMatch(verdict="match", summary=summary, trace=trace.freeze(),
                             host=host, record=record.text(), chain=subjects)
        reasons.append(reason)
    summary = (f"{host}: certificate does not match any TLSA record ("
               + "; ".join(reasons) + ")")
    trace.add("the certificate does not match any TLSA record", kind="error")
    return TLSAMatch(verdict="no-match", summary=summary, trace=trace.freeze(), host=host,
                     chain=subjects)


def _match_ee(record: TLSARecord, chain: Sequence[bytes], trace: TraceBuilder) -> str | None:
    got = association_data(chain[0], record.selector, record.matching)
    what = "key" if record.selector == 1 else "certificate"
    if got == record.data:
        trace.add(f"the server's own {what} gives {got.hex()[:16]}…, as the record says; "
                  "DANE-EE checks neither names nor dates", kind="ok", rfc=RFC_EE)
        return None
    trace.add(f"the server's own {what} gives {got.hex()[:16]}…, the record says "
              f"{record.data.hex()[:16]}…: another {what}", kind="error", rfc=RFC_EE)
    return f"DANE-EE {record.short()}: the server's {what} is another one"


def _match_ta(record: TLSARecord, chain: Sequence[bytes], host: str, when: datetime,
              trace: TraceBuilder) -> str | None:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    anchor = next((i for i in range(1, len(chain)) if record.matches(chain[i])), None)
    if anchor is None:
        trace.add("no certificate the server sent above its own matches the record; with "
                  "a digest the server must send the trust anchor's certificate itself",
                  kind="error", rfc=RFC_TA_CHAIN)
        return (f"DANE-TA {record.short()}: the server did not send the trust anchor's "
                "certificate in its chain")
    certs = [x509.load_der_x509_certificate(der) for der in chain[:anchor + 1]]
    trace.add(f"certificate {anchor} ({_subject(chain[anchor])}) is the trust anchor the "
              "record names", kind="ok", rfc=RFC_TA)
    for number in range(anchor):
        cert, issuer = certs[number], certs[number + 1]
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            trace.add(f"certificate {number} is not signed by certificate {number + 1}",
                      kind="error", rfc=RFC_TA)
            return f"DANE-TA {record.short()}: the chain is broken at certificate {number}"
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            trace.add(f"certificate {number} is valid from {cert.not_valid_before_utc:%Y-%m-%d}"
                      f" to {cert.not_valid_after_utc:%Y-%m-%d}, not now", kind="error")
            return f"DANE-TA {record.short()}: certificate {number} is outside its dates"
        trace.add(f"certificate {number} is signed by certificate {number + 1} and within "
                  "its dates", kind="ok")
    names = _dns_names(certs[0])
    match = next((n for n in names if mx_matches(n, host)), None)
    if match is None:
        trace.add(f"none of its names ({', '.join(names) or 'none'}) is {host}: with "
                  "DANE-TA the server's name is checked", kind="error", rfc=RFC_NAMES)
        return f"DANE-TA {record.short()}: the certificate does not name {host}"
    trace.add(f"its name {match} covers {host}", kind="ok", rfc=RFC_NAMES)
    return None


def _dns_names(cert: Any) -> list[str]:
    """The subjectAltName DNS names, or else the common name (RFC 6125 section 6.4.4)."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(
            x509.NameOID.COMMON_NAME)]
    return names


def _subject(der: bytes) -> str:
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return "(unreadable)"
    issuer = cert.issuer.rfc4514_string()
    return f"{cert.subject.rfc4514_string() or '(no subject)'}, issued by {issuer}"


__all__ = ["DANEError", "DANE_DOMAINS", "TLSAMatch", "TLSARecord", "association_data",
           "lab_tlsa", "match_certificate", "mx_host_names", "publish_tlsa",
           "tlsa_for_certificate", "tlsa_name"]
