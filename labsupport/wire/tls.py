"""The lab's certificate authority and TLS contexts.

Each lab has its own certificate authority, made with trustme the first time the lab
starts and kept in its state directory: ``ca.pem`` (the CA certificate, public: give it to
``swaks --tls-ca-path``, ``openssl s_client -CAfile`` or ``curl --cacert``) and
``ca-key.pem`` (its private key, mode 0600). The mail server's certificate, signed by that
CA, names every lab domain, a wildcard under each (``*.northwind.test`` covers
``mx1.northwind.test``), ``localhost`` and ``127.0.0.1``; it is kept beside the CA and
issued again only when the list of names changes. A restarted lab therefore presents the
same CA, and a CA file a student saved keeps working.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import LabError

#: Names every server certificate carries, besides the lab's own host names.
ALWAYS_NAMES = ("localhost", "127.0.0.1")

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
SERVER_NAMES_FILE = "server-names.json"


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode``."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class LabCA:
    """A lab's certificate authority (trustme), its server certificate and TLS contexts.

    Do not build one directly: :meth:`load_or_create` makes the CA the first time and
    reloads it afterwards.

    Attributes:
        directory: where the files are kept.
        ca_file: the CA certificate (PEM), for clients that verify the server.
        hostnames: the names the server certificate carries.
    """

    def __init__(self, directory: Path, hostnames: tuple[str, ...]) -> None:
        self.directory = directory
        self.ca_file = directory / CA_FILE
        self.key_file = directory / CA_KEY_FILE
        self.server_cert_file = directory / SERVER_CERT_FILE
        self.server_key_file = directory / SERVER_KEY_FILE
        self.hostnames = hostnames
        self.created = False  # True when this start made a new CA
        self._server_context: ssl.SSLContext | None = None

    @classmethod
    def load_or_create(cls, directory: Path, hostnames: Iterable[str]) -> LabCA:
        """The CA kept in ``directory`` (made there the first time) with a server
        certificate for ``hostnames`` plus ``localhost`` and ``127.0.0.1``."""
        directory = Path(directory)
        names = tuple(dict.fromkeys([*(h.lower().rstrip(".") for h in hostnames),
                                     *ALWAYS_NAMES]))
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        ca = cls(directory, names)
        if not (ca.ca_file.exists() and ca.key_file.exists()):
            ca._create_ca()
        if not ca._server_cert_is_current():
            ca._issue_server_cert()
        return ca

    # -- making and reloading ------------------------------------------------------------

    def _create_ca(self) -> None:
        import trustme  # imported only when a CA is made: it brings in cryptography

        authority = trustme.CA(organization_name="Mail Labs",
                               organization_unit_name="lab certificate authority")
        _write(self.key_file, authority.private_key_pem.bytes(), 0o600)
        _write(self.ca_file, authority.cert_pem.bytes(), 0o644)
        self.created = True

    def _server_cert_is_current(self) -> bool:
        names_file = self.directory / SERVER_NAMES_FILE
        if not (self.server_cert_file.exists() and self.server_key_file.exists()
                and names_file.exists()):
            return False
        try:
            recorded = json.loads(names_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if self.created or recorded.get("ca_mtime_ns") != self.ca_file.stat().st_mtime_ns:
            return False  # a new CA: the old server certificate is signed by another
        return bool(recorded.get("names") == list(self.hostnames))

    def _issue_server_cert(self) -> None:
        import trustme

        try:
            authority = trustme.CA.from_pem(self.ca_file.read_bytes(),
                                            self.key_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise LabError(f"the lab's CA in {self.directory} is unreadable ({exc}); delete "
                           "the folder to make a new CA (saved CA files stop working)") from exc
        leaf = authority.issue_cert(*self.hostnames, common_name=self.hostnames[0],
                                    organization_name="Mail Labs",
                                    organization_unit_name="lab mail server")
        _write(self.server_key_file, leaf.private_key_pem.bytes(), 0o600)
        _write(self.server_cert_file, b"".join(p.bytes() for p in leaf.cert_chain_pems), 0o644)
        record = {"names": list(self.hostnames), "ca_mtime_ns": self.ca_file.stat().st_mtime_ns}
        _write(self.directory / SERVER_NAMES_FILE, json.dumps(record).encode(), 0o644)
        self._server_context = None

    # -- contexts ------------------------------------------------------------------------

    def server_context(self) -> ssl.SSLContext:
        """The server side: the lab certificate, TLS 1.2 or newer, no client certificate.

        One context is made and shared by every listener (contexts are thread-safe)."""
        if self._server_context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.server_cert_file, self.server_key_file)
            self._server_context = context
        return self._server_context

    def client_context(self, verify: bool = True,
                       keylog_file: str | Path | None = None) -> ssl.SSLContext:
        """A client context that trusts the lab CA (and only it).

        ``verify=False`` turns off certificate and host name checks, as
        ``smtplib``'s ``starttls()`` without a context does: the TLS lesson shows why
        that is a mistake. ``keylog_file`` writes the session keys in the NSS key log
        format so Wireshark can decrypt a capture.
        """
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if keylog_file is not None:
            context.keylog_filename = str(keylog_file)
        return context

    def __repr__(self) -> str:
        return f"<LabCA {self.ca_file}, server certificate for {len(self.hostnames)} names>"


def unverified_client_context() -> ssl.SSLContext:
    """A client context that encrypts (TLS 1.2 or newer) and checks no certificate: what a
    sending MTA uses for STARTTLS to an MX host, whose certificate it then checks itself,
    against TLSA records (DANE) or the MTA-STS rules, or not at all (opportunistic TLS,
    RFC 7435)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def starttls_unverified(client: smtplib.SMTP, host: str) -> str:
    """Send STARTTLS on ``client`` with :func:`unverified_client_context`, naming ``host``
    in SNI, and return the server's reply as text (``"220 2.0.0 Ready to start TLS"``).
    Raises what smtplib raises: :class:`smtplib.SMTPResponseException` when the server
    refuses, :class:`ssl.SSLError` or :class:`OSError` when the handshake fails."""
    setattr(client, "_host", host)  # noqa: B010 - smtplib sends this name as SNI
    code, text = client.starttls(context=unverified_client_context())
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {said}"


def server_names(domains: Iterable[str]) -> list[str]:
    """The names a lab server certificate carries for ``domains``: each domain and a
    wildcard under it (RFC 6125 section 6.4.3: the wildcard covers one label)."""
    names: list[str] = []
    for domain in sorted({d.lower().rstrip(".") for d in domains}):
        names += [domain, f"*.{domain}"]
    return names


__all__ = ["LabCA", "server_names", "starttls_unverified", "unverified_client_context"]
