"""The results of DKIM: one signature checked, all of a message's, and a signing.

:class:`DKIMResult` is one DKIM-Signature checked (pass, fail, neutral, temperror or
permerror, as RFC 8601 section 2.7.1 names them), with the tags, the exact bytes
hashed and the key found; :class:`DKIMVerification` holds one per signature of a
message and sums them up in one verdict (:data:`VERDICT_ORDER`); :class:`DKIMSigning`
is the outcome of signing a message, with the signed message or the reason it was
refused. Each is a :class:`~labsupport.core.results.Result` with its trace; the
results of checking also write themselves as ``dkim=`` entries of an
Authentication-Results field (RFC 8601).

Made by :func:`labsupport.auth.dkim.verify` and :func:`labsupport.auth.dkim.sign_traced`.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.results import Result, html_table
from .dkim_canon import show_whitespace

#: One signature's possible results, as RFC 8601 section 2.7.1 names them.
RESULTS = ("pass", "fail", "neutral", "temperror", "permerror")

#: The summary verdict of a message: the first of these that any signature has.
#: A temporary error comes before a failure: trying later might still give a pass.
VERDICT_ORDER = ("pass", "temperror", "fail", "neutral", "permerror")


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DKIMResult(Result):
    """The result of checking one DKIM-Signature (RFC 6376 section 6.1).

    ``verdict`` (also ``result``) is ``pass``, ``fail``, ``neutral``, ``temperror`` or
    ``permerror`` (RFC 8601 section 2.7.1) and ``summary`` says why in words.
    ``index`` counts signatures from the top (0 is the topmost). The tags are in
    ``tags``; ``canonical_headers`` and ``canonical_body`` are the exact bytes that were
    hashed (``None`` when the check stopped before hashing); ``body_hash`` is the hash
    computed here and ``claimed_body_hash`` the signer's ``bh=``.
    """

    index: int = 0
    domain: str | None = None
    selector: str | None = None
    algorithm: str | None = None
    identity: str | None = None
    canonicalization: tuple[str, str] | None = None
    tags: tuple[tuple[str, str], ...] = ()
    signed_headers: tuple[str, ...] = ()
    header_field: bytes = field(default=b"", repr=False)
    canonical_headers: bytes | None = field(default=None, repr=False)
    canonical_body: bytes | None = field(default=None, repr=False)
    body_hash: str | None = None
    claimed_body_hash: str | None = None
    body_length: int | None = None
    body_octets: int | None = None
    key_name: str | None = None
    key_record: str | None = None
    key_type: str | None = None
    key_bits: int | None = None
    testing: bool = False
    timestamp: int | None = None
    expiration: int | None = None

    @property
    def result(self) -> str:
        """The result word (RFC 8601 section 2.7.1); the same as ``verdict``."""
        return self.verdict

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def unsigned_body_octets(self) -> int:
        """Octets of the canonical body after ``l=``: content nobody signed."""
        if self.body_length is None or self.body_octets is None:
            return 0
        return max(0, self.body_octets - self.body_length)

    def show_body(self) -> str:
        """The whole body as hashed, with CR LF, spaces and tabs made visible."""
        return show_whitespace(self.canonical_body or b"")

    def show_headers(self) -> str:
        """The header data as hashed, with CR LF, spaces and tabs made visible."""
        return show_whitespace(self.canonical_headers or b"")

    def title(self) -> str:
        who = f"d={self.domain} s={self.selector}" if self.domain else "unreadable"
        return f"DKIM signature {self.index + 1} ({who}): {self.verdict}"

    def authres(self) -> str:
        """This result as a ``dkim=`` entry of an Authentication-Results field
        (RFC 8601 section 2.7.1; ``header.b`` as RFC 6008 gives it)."""
        reason = self.summary.replace("(", "[").replace(")", "]")
        parts = [f"dkim={self.verdict} ({reason})"]
        tags = dict(self.tags)
        if self.domain:
            parts.append(f"header.d={self.domain}")
        if self.identity:
            parts.append(f"header.i={self.identity}")
        if self.selector:
            parts.append(f"header.s={self.selector}")
        if self.algorithm:
            parts.append(f"header.a={self.algorithm}")
        b = "".join(tags.get("b", "").split())[:8]
        if b:
            parts.append(f"header.b={b}")
        return " ".join(parts)


@dataclass(frozen=True, kw_only=True)
class DKIMVerification(Result):
    """Every DKIM-Signature of a message, each checked separately.

    ``signatures`` holds one :class:`DKIMResult` per DKIM-Signature field, topmost first.
    ``verdict`` sums them up: ``none`` when the message has no signature, otherwise the
    first of :data:`VERDICT_ORDER` that any signature has (``pass`` if one passes).
    ``lf_fixed`` counts bare LF line ends that were read as CR LF.
    """

    signatures: tuple[DKIMResult, ...] = ()
    lf_fixed: int = 0
    problems: tuple[str, ...] = ()

    @property
    def results(self) -> tuple[str, ...]:
        return tuple(s.verdict for s in self.signatures)

    @property
    def passing_domains(self) -> tuple[str, ...]:
        """The ``d=`` domains of the signatures that pass (what DMARC looks at)."""
        return tuple(s.domain for s in self.signatures if s.passed and s.domain)

    def __getitem__(self, index: int) -> DKIMResult:
        return self.signatures[index]

    def __len__(self) -> int:
        return len(self.signatures)

    def title(self) -> str:
        return f"DKIM: {self.verdict}"

    def authres(self) -> list[str]:
        """One ``dkim=`` entry per signature (``["dkim=none"]`` without any)."""
        return [s.authres() for s in self.signatures] or ["dkim=none"]

    def text(self) -> str:
        parts = [super().text()]
        for sig in self.signatures:
            parts.append("\n".join("  " + line for line in sig.text().splitlines()))
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        rows: list[list[object]] = [
            [s.index + 1, s.verdict, s.domain or "-", s.selector or "-", s.algorithm or "-",
             s.summary] for s in self.signatures
        ]
        table = html_table(["#", "result", "d=", "s=", "a=", "reason"], rows) if rows else ""
        details = "".join(
            f"<details><summary>{s.title()}</summary>{s._repr_html_()}</details>"
            for s in self.signatures
        )
        return super()._repr_html_() + table + details


@dataclass(frozen=True, kw_only=True)
class DKIMSigning(Result):
    """The outcome of signing: ``verdict`` is ``signed`` or ``refused`` (with the reason).

    ``signed_message`` is the message with the new DKIM-Signature on top,
    ``signature_field`` that field alone; ``canonical_headers`` and ``canonical_body``
    are the exact bytes hashed; ``body_hash`` is the ``bh=`` value.
    """

    domain: str
    selector: str
    algorithm: str | None = None
    canonicalization: tuple[str, str] | None = None
    signed_headers: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    signed_message: bytes | None = field(default=None, repr=False)
    signature_field: bytes | None = field(default=None, repr=False)
    canonical_headers: bytes | None = field(default=None, repr=False)
    canonical_body: bytes | None = field(default=None, repr=False)
    body_hash: str | None = None

    def title(self) -> str:
        return f"DKIM signing for d={self.domain} s={self.selector}: {self.verdict}"
