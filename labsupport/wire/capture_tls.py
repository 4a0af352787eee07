"""TLS 1.3 inside a capture, decrypted for teaching with the client's key log.

A client that writes its TLS secrets to a key log (``SMTPSession(keylog_file=...)``, the
NSS key log format that Wireshark reads too) lets :func:`decrypt_connection` (used by
:meth:`labsupport.wire.capture.Capture.decrypt`) show the dialogue inside TLS: the TCP stream
of each side is put back together, the cleartext part before STARTTLS set aside, the rest
cut into TLS records (RFC 8446 section 5.1: a record may span several TCP segments, and
one segment may hold several records), and the records are fed, in the order they were
sent, to scapy's TLS layer. Its session state is chained from one record to the next
(``mirror()`` when the direction changes), so the handshake secrets, then the traffic
secrets, decrypt each record in turn. The ClientHello and ServerHello are read in the
clear; the certificate, encrypted in TLS 1.3, is read from the decrypted handshake.

Introduced in ``notebooks/03-starttls-vs-implicit-tls.ipynb``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dialogue import WireDialogue, WireLine, _clear_part, _lines_of, _merge
from .segments import CaptureError, _Connection


def decrypt_connection(conn: _Connection, keylog: str | Path) -> TLSView:
    """The dialogue of one captured connection with its TLS part decrypted."""
    from scapy.layers.tls.session import parse_nss_keys

    try:
        content = Path(keylog).read_bytes()
    except OSError as exc:
        raise CaptureError(f"cannot read the key log {keylog}: {exc}") from None
    nss = parse_nss_keys(content.decode("ascii", errors="replace"))
    lines, info = _decrypt_connection(conn, nss)
    inner = [line for line in lines if line.direction in ("~>", "<~")]
    if not info.get("tls"):
        verdict, summary = "no tls", "this connection never started TLS"
    elif inner:
        verdict = "decrypted"
        summary = (f"{len(inner)} lines recovered from inside TLS with the key log; "
                   "without it an observer sees only record types and lengths")
    else:
        verdict = "not decrypted"
        summary = ("TLS records found, but none could be decrypted: is this the key log "
                   "of this very session?")
    return TLSView(verdict=verdict, summary=summary, lines=tuple(lines),
                   client_hello=_hello_facts(info.get("client_hello")),
                   server_hello=_server_facts(info.get("server_hello")),
                   certificate=_cert_facts(info.get("certificate")),
                   keylog=str(keylog))


def _records(chunks: list[tuple[float, bytes]], skip: int) -> list[tuple[float, bytes]]:
    """Whole TLS records from one side's stream after ``skip`` octets, each with the time
    of the segment that completed it (a record may span several segments)."""
    out: list[tuple[float, bytes]] = []
    buf = b""
    total = 0
    for when, data in chunks:
        start = max(0, skip - total)  # octets of this chunk still before TLS
        total += len(data)
        if start >= len(data):
            continue
        buf += data[start:]
        while len(buf) >= 5:
            length = struct.unpack("!H", buf[3:5])[0]
            if len(buf) < 5 + length:
                break
            out.append((when, buf[:5 + length]))
            buf = buf[5 + length:]
    return out


def _decrypt_connection(conn: _Connection, nss_keys: dict[str, Any]) -> tuple[
        list[WireLine], dict[str, Any]]:
    """The dialogue of one connection, the part inside TLS decrypted record by record."""
    from scapy.layers.tls.record import TLS
    from scapy.layers.tls.record_tls13 import TLS13
    from scapy.layers.tls.session import tlsSession

    c_clear, s_clear, c_tls, s_tls = _clear_part(conn)
    lines = _merge(_lines_of(c_clear, "->"), _lines_of(s_clear, "<-"))
    info: dict[str, Any] = {"tls": c_tls >= 0}
    if c_tls < 0 or s_tls < 0:
        return lines, info
    records = [(t, True, r) for t, r in _records(conn.stream(True), c_tls)]
    records += [(t, False, r) for t, r in _records(conn.stream(False), s_tls)]
    records.sort(key=lambda item: item[0])
    session = tlsSession(connection_end="server")
    session.nss_keys = nss_keys
    previous: Any = None
    plain = {True: b"", False: b""}
    inner: list[WireLine] = []
    for when, from_client, record in records:
        if previous is None:
            sess = session
        elif previous[0] == from_client:
            sess = previous[1].tls_session
        else:
            sess = previous[1].tls_session.mirror()
        packet = TLS(record, tls_session=sess)
        previous = (from_client, packet)
        for msg in getattr(packet, "msg", []) or []:
            name = type(msg).__name__
            if name == "TLSClientHello":
                info["client_hello"] = msg
            elif name in ("TLS13ServerHello", "TLSServerHello"):
                info["server_hello"] = msg
            elif name in ("TLS13Certificate", "TLSCertificate"):
                info["certificate"] = msg
            elif name == "TLSApplicationData":
                plain[from_client] += bytes(msg.data)
        if isinstance(packet, TLS13) and getattr(packet, "inner", None) is not None:
            content = packet.inner
            if content.type == 23:
                plain[from_client] += bytes(content.msg[0].data) if content.msg else b""
            elif content.type == 22:
                for msg in content.msg:
                    n = type(msg).__name__
                    if n in ("TLS13Certificate", "TLSCertificate"):
                        info["certificate"] = msg
        while b"\r\n" in plain[from_client]:
            line, plain[from_client] = plain[from_client].split(b"\r\n", 1)
            inner.append(WireLine("~>" if from_client else "<~",
                                  line.decode("utf-8", errors="replace"), when))
    info["session"] = previous[1].tls_session if previous else None
    # Without this session's secrets in the key log nothing was decrypted: what scapy then
    # reports as application data is ciphertext, and a CR LF in it would look like a line.
    client_random = getattr(info["session"], "client_random", None)
    if not client_random or not any(
            client_random in table for table in nss_keys.values() if isinstance(table, dict)):
        inner = []
    return lines + inner, info


# -- what the handshake says -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TLSView(WireDialogue):
    """A dialogue with its TLS part decrypted, and what the handshake said."""

    client_hello: dict[str, Any] = field(default_factory=dict)
    server_hello: dict[str, Any] = field(default_factory=dict)
    certificate: dict[str, Any] = field(default_factory=dict)
    keylog: str = ""

    def title(self) -> str:
        return f"SMTP inside TLS, decrypted with the key log: {self.verdict}"

    def handshake(self) -> str:
        """The handshake facts as text: SNI, versions, ciphers, certificate."""
        ch, sh, cert = self.client_hello, self.server_hello, self.certificate
        out = ["ClientHello (sent in the clear):",
               f"  server name (SNI): {ch.get('sni') or '(none)'}",
               f"  versions offered: {', '.join(ch.get('versions', [])) or '?'}",
               f"  cipher suites offered: {len(ch.get('ciphers', []))}, first "
               f"{', '.join(ch.get('ciphers', [])[:3])}",
               "ServerHello (in the clear):",
               f"  version chosen: {sh.get('version', '?')}",
               f"  cipher suite chosen: {sh.get('cipher', '?')}",
               "Certificate (encrypted in TLS 1.3, read with the key log):",
               f"  subject: {cert.get('subject', '?')}",
               f"  issuer: {cert.get('issuer', '?')}",
               f"  names: {', '.join(cert.get('names', [])[:6])}"
               + (" ..." if len(cert.get("names", [])) > 6 else "")]
        return "\n".join(out)


def _hello_facts(msg: Any) -> dict[str, Any]:
    if msg is None:
        return {}
    from scapy.layers.tls.crypto.suites import _tls_cipher_suites

    facts: dict[str, Any] = {"ciphers": [_tls_cipher_suites.get(c, hex(c))
                                         for c in (msg.ciphers or [])], "versions": []}
    for ext in msg.ext or []:
        name = type(ext).__name__
        if name == "TLS_Ext_ServerName" and ext.servernames:
            facts["sni"] = ext.servernames[0].servername.decode()
        elif name == "TLS_Ext_SupportedVersion_CH":
            facts["versions"] = [_version_name(v) for v in ext.versions]
    return facts


def _version_name(value: int) -> str:
    return {0x0304: "TLS 1.3", 0x0303: "TLS 1.2", 0x0302: "TLS 1.1",
            0x0301: "TLS 1.0"}.get(value, hex(value))


def _server_facts(msg: Any) -> dict[str, Any]:
    if msg is None:
        return {}
    from scapy.layers.tls.crypto.suites import _tls_cipher_suites

    version = _version_name(msg.version)
    for ext in msg.ext or []:
        if type(ext).__name__ == "TLS_Ext_SupportedVersion_SH":
            version = _version_name(ext.version)
    return {"version": version, "cipher": _tls_cipher_suites.get(msg.cipher, hex(msg.cipher))}


def _cert_facts(msg: Any) -> dict[str, Any]:
    if msg is None:
        return {}
    try:
        from cryptography import x509

        entries = msg.certs
        der = bytes(entries[0].cert[1].der) if entries else b""
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = [str(v) for v in san.value.get_values_for_type(x509.DNSName)]
        except x509.ExtensionNotFound:
            names = []
        return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                "names": names}
    except Exception as exc:  # noqa: BLE001 - facts for teaching, best effort
        return {"subject": f"(unreadable: {exc})"}


__all__ = ["TLSView", "decrypt_connection"]
