"""The troubleshooting lab's broken TLS servers (tickets 5 and 6): the broken
certificates, the listeners that present them, and a certificate read without trusting it.

Part of :mod:`labsupport.teach.troubleshoot`, which re-exports these names.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..core.results import html_table, text_table

if TYPE_CHECKING:
    from ..lab.lab import Lab

#: OpenSSL's verification codes (X509_V_ERR_*) that the TLS tickets turn on.
_X509_EXPIRED = 10
_X509_HOSTNAME_MISMATCH = 62


@dataclass(frozen=True)
class CertificateView:
    """What a server's certificate says, read without trusting it (for a diagnosis)."""

    hostname: str
    subject: str
    names: tuple[str, ...]
    issuer: str
    not_before: datetime
    not_after: datetime

    def _rows(self) -> list[list[object]]:
        return [["asked for", self.hostname], ["subject", self.subject],
                ["names (subjectAltName)", ", ".join(self.names)], ["issuer", self.issuer],
                ["valid from (notBefore)", f"{self.not_before:%Y-%m-%d %H:%M} UTC"],
                ["valid until (notAfter)", f"{self.not_after:%Y-%m-%d %H:%M} UTC"]]

    def __str__(self) -> str:
        return f"Certificate presented for {self.hostname}\n" + text_table(
            ["field", "value"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["field", "value"], self._rows(),
                          caption=f"Certificate presented for {self.hostname}")



# -- the broken TLS listeners -----------------------------------------------------------

@dataclass
class _Listener:
    hostname: str
    port: int
    server: asyncio.AbstractServer
    problem: str


def _broken_certificate(lab: Lab, hostname: str, problem: str) -> Any:
    """A trustme leaf certificate from the lab's CA for ``hostname``, broken as asked."""
    import trustme

    authority = trustme.CA.from_pem(lab.ca.ca_file.read_bytes(), lab.ca.key_file.read_bytes())
    now = datetime.now(UTC)
    if problem == "expired":
        return authority.issue_cert(hostname, common_name=hostname,
                                    organization_name="Mail Labs",
                                    not_before=now - timedelta(days=398),
                                    not_after=now - timedelta(days=3))
    # wrong name: the hosting company's own certificate, not one for the customer
    return authority.issue_cert("mail.hostingco.example", "*.hostingco.example",
                                common_name="mail.hostingco.example",
                                organization_name="Mail Labs")
