"""What the tests that check the lab against dkimpy (the test-only oracle) give it:
its DNS, answered from a :class:`~labsupport.dns.zone.ZoneSet`, and the lab's private
keys in the forms dkimpy reads. Used by test_dkim_oracle.py (DKIM) and test_arc.py (ARC).
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization

from labsupport.auth.dkim_keys import LabKey
from labsupport.dns.zone import ZoneSet


def dnsfunc_for(zones: ZoneSet) -> Callable[..., bytes | None]:
    """dkimpy's DNS function: the TXT record's strings joined, from the ZoneSet."""
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = zones.resolve(name.decode("ascii").rstrip("."), "TXT")
        except Exception:  # noqa: BLE001 - dkimpy wants None for "no record"
            return None
        return b"".join(answer[0].strings)
    return dnsfunc


def dkimpy_key(key: LabKey) -> bytes:
    """PKCS#1 PEM for RSA; the base64 32-octet seed for Ed25519 (what dkimpy reads)."""
    if key.key_type == "ed25519":
        return base64.b64encode(key.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption()))
    return key.private_key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption())
