"""The lab's re-sending addresses: a forwarder and a mailing list.

Two addresses of the lab world take mail in and send it on (``lab.smtp.aliases()``). The
MX role of :mod:`labsupport.mail.server` accepts mail for them, checks and stamps it as it does
any message, and hands each copy back to the delivering MTA (``lab.queue``), which sends
it from the address's own outbound host:

:class:`Forwarder` ``carol@alumni.example``
    An alias (RFC 5321 section 3.9.1): the message goes to ``carol@campus.test``
    unchanged, with the original MAIL FROM (classic forwarding, no SRS), from
    alumni.example's outbound host. The author's DKIM signature survives; SPF for the
    original sender fails at campus.test, because alumni.example's host is not among
    the sender's.
:class:`MailingList` ``course@lists.campus.test``
    A list (RFC 5321 section 3.9.2): each post goes to every member with the envelope
    sender ``course-bounces@lists.campus.test`` (bounces go to the list, not to the
    author), a ``[course]`` subject tag, List-Id (RFC 2919) and List-Post (RFC 2369)
    fields, and a footer, which breaks the author's DKIM body hash (RFC 6376 section
    3.7). Like real list software (Mailman's ``dmarc_moderation_action: munge_from``,
    RFC 7960 section 4.1.3.3), it rewrites the From of a post whose author's domain
    publishes ``p=reject`` or ``p=quarantine`` (:meth:`MailingList.rewrites_from`) to
    ``Name via course <course@lists.campus.test>``, with Reply-To the author; the MX role
    signs every copy with campus.test's lab key (:attr:`MailingList.signing_domain`),
    so the copies pass DMARC as lists.campus.test instead of being rejected in the
    author's name.

Both take part in ARC (RFC 8617): as it re-sends a message, each adds an ARC set
(:meth:`Forwarder.seal`, :meth:`MailingList.seal`): an ARC-Authentication-Results with the
results the MX role found for the message as it arrived (SPF, DKIM, DMARC, ARC), an
ARC-Message-Signature over the message as it goes out and an ARC-Seal over the chain.
The forwarder seals as ``alumni.example`` with its ARC key (selector ``arc2026``,
``data/keys/alumni.example/arc2026.rsa.pem``), the list as ``campus.test`` with the lab
DKIM key (``lab2026-rsa``). The next receiver can then see that SPF passed before the
forwarder re-sent the message, and that the author's DKIM signature verified before the
list changed the Subject and body.

:data:`LAB_ALIASES` is the pair the lab starts with; ``MailServer(aliases=...)`` takes
others.

Introduced in ``notebooks/04-spf.ipynb`` (the forwarder) and ``notebooks/05-dkim.ipynb``
(the list); the list's From rewriting in ``notebooks/06-dmarc.ipynb``.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..auth.arc_results import ARCSealing, ARCValidation
    from ..auth.dkim_keys import LabKey


class _ARCSealer:
    """What the forwarder and the list share: the ARC set each adds as it re-sends a
    message (RFC 8617 section 5.1), sealed as :attr:`arc_domain`."""

    @property
    def arc_domain(self) -> str:
        raise NotImplementedError

    def arc_key(self, keys: Path | None = None) -> LabKey:
        """The lab key this address seals with (``arc2026`` if its domain has one, else the
        domain's DKIM key ``lab2026-rsa``), from ``keys`` (``data/keys`` by default)."""
        from ..auth.arc_sign import arc_key

        return arc_key(self.arc_domain, keys)

    def seal(self, message: bytes, authentication_results: str, *,
             chain: ARCValidation | str | None = None, resolver: Any = None,
             keys: Path | None = None, timestamp: Any = True) -> ARCSealing:
        """``message`` (as this address sends it on) sealed with a new ARC set for
        :attr:`arc_domain`: ``authentication_results`` is the Authentication-Results value
        the MX role wrote for the message as it arrived (``evaluation.header``), ``chain``
        the ARC validation it made (``evaluation.arc``; or ``resolver`` to validate here).
        ``timestamp`` is the seal's ``t=`` (the lab clock). The result has the trace and
        ``sealed_message``; a refusal says why and seals nothing."""
        from ..auth.arc_sets import ARCError
        from ..auth.arc_sign import seal_traced
        from ..auth.dkim_keys import DKIMKeyError

        try:
            key = self.arc_key(keys)
        except (ARCError, DKIMKeyError) as exc:
            from ..auth.arc_results import ARCSealing

            return ARCSealing(verdict="refused", summary=f"Not sealed: {exc}.",
                              domain=self.arc_domain)
        return seal_traced(message, domain=self.arc_domain, selector=key.selector or "",
                           private_key=key, authentication_results=authentication_results,
                           chain=chain, resolver=resolver, timestamp=timestamp)


@dataclass(frozen=True)
class Forwarder(_ARCSealer):
    """An address that forwards everything, unchanged, to ``target``: re-sent through
    the delivering MTA from ``sender_domain``'s outbound host, with the original MAIL
    FROM (classic forwarding, no SRS), so the original sender's SPF fails at the target."""

    address: str
    target: str
    sender_domain: str

    kind = "forwarder"

    def describe(self) -> str:
        return (f"forwards to {self.target}, re-sent from {self.sender_domain}'s outbound host "
                f"with the original MAIL FROM, ARC-sealed as {self.arc_domain}")

    @property
    def arc_domain(self) -> str:
        """The domain the forwarder seals its ARC sets as: its own, ``sender_domain``."""
        return self.sender_domain.lower().rstrip(".")


@dataclass(frozen=True)
class MailingList(_ARCSealer):
    """A mailing list: each post goes to every member, re-sent from ``sender_domain``'s
    outbound host with the envelope sender ``bounce_address``, a subject ``tag`` and a
    ``footer`` appended to the body (which breaks the author's DKIM body hash)."""

    address: str
    members: tuple[str, ...]
    bounce_address: str
    sender_domain: str
    tag: str
    footer: str
    list_id: str

    kind = "mailing list"

    def describe(self) -> str:
        return (f"mailing list for {', '.join(self.members)}: subject tag {self.tag.strip()!r}, "
                f"a footer, envelope sender {self.bounce_address}, sent from "
                f"{self.sender_domain}, DKIM-signed and ARC-sealed as {self.signing_domain}")

    @property
    def name(self) -> str:
        """The list's short name, the local part of its address (``course``)."""
        return self.address.partition("@")[0]

    def from_rewritten(self, author: str) -> tuple[str, str]:
        """The From and Reply-To a post by ``author`` (a From field value) goes out
        with when its domain's DMARC policy would reject or quarantine the list's copy:
        ``Name via course <course@lists.campus.test>`` and the author's own address
        (RFC 7960 section 4.1.3.3; Mailman's ``munge_from``)."""
        name, address = email.utils.parseaddr(author)
        shown = name or address.partition("@")[0] or "someone"
        return (email.utils.formataddr((f"{shown} via {self.name}", self.address)),
                email.utils.formataddr((name, address)) if address else author)

    def post(self, content: bytes, *, rewrite_from: bool = False) -> bytes:
        """The post as the list re-sends it: Subject tagged (once), List-Id added,
        the footer appended to the body; with ``rewrite_from``, the From field replaced
        by the list's (:meth:`from_rewritten`) and the author kept in Reply-To."""
        crlf = b"\r\n" if b"\r\n" in content else b"\n"
        head, sep, body = content.partition(crlf + crlf)
        if not sep:
            head, body = content, b""
        lines = head.split(crlf) if head else []
        if rewrite_from:
            lines = self._rewrite_from(lines)
        tag = self.tag.encode()
        tagged = False
        for i, line in enumerate(lines):
            if line[:8].lower() == b"subject:":
                value = line[8:].lstrip()
                if tag.strip().lower() not in value.lower():
                    lines[i] = b"Subject: " + tag + value
                tagged = True
                break
        if not tagged:
            lines.append(b"Subject: " + tag.strip())
        lines.append(f"List-Id: {self.list_id}".encode())
        lines.append(f"List-Post: <mailto:{self.address}>".encode())
        lines.append(b"Precedence: list")
        if body and not body.endswith(crlf):
            body += crlf
        footer = crlf.join(line.encode() for line in self.footer.splitlines()) + crlf
        return crlf.join(lines) + crlf + crlf + body + footer

    def _rewrite_from(self, lines: list[bytes]) -> list[bytes]:
        """The header lines with From replaced and Reply-To set to the author (an
        existing Reply-To is kept: the author asked for replies to go there)."""
        fields: list[list[bytes]] = []
        for line in lines:
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1].append(line)
            else:
                fields.append([line])
        names = [f[0].split(b":", 1)[0].strip().lower() for f in fields]
        if b"from" not in names:
            return lines
        author = b" ".join(part.strip() for part in fields[names.index(b"from")])
        author_text = author.split(b":", 1)[1].strip().decode("utf-8", "replace")
        new_from, reply_to = self.from_rewritten(author_text)
        out: list[bytes] = []
        for name, lines_of in zip(names, fields, strict=True):
            if name == b"from":
                out.append(b"From: " + new_from.encode("utf-8"))
                if b"reply-to" not in names:
                    out.append(b"Reply-To: " + reply_to.encode("utf-8"))
            else:
                out.extend(lines_of)
        return out

    def carries_own_id(self, content: bytes) -> bool:
        """True when ``content`` already went through this list (a mail loop)."""
        head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
        list_id = self.list_id.rpartition("<")[2].rstrip(">").lower().encode()
        return b"list-id:" in head and list_id in head

    @property
    def signing_domain(self) -> str:
        """The domain whose lab key signs the list's copies: the organisation its
        ``sender_domain`` belongs to, its last two labels (lists.campus.test ->
        campus.test; every lab organisation is name.tld)."""
        return ".".join(self.sender_domain.lower().rstrip(".").split(".")[-2:])

    @property
    def arc_domain(self) -> str:
        """The domain the list seals its ARC sets as: :attr:`signing_domain`."""
        return self.signing_domain

    def rewrites_from(self, content: bytes, resolver: Any) -> bool:
        """True when the From domain of ``content`` publishes a DMARC policy of
        ``reject`` or ``quarantine`` (p=, or sp= for a subdomain), as a list checks before
        deciding to rewrite From (the tree walk of RFC 9989 section 4.10). ``resolver``
        answers the DMARC lookups (None: no lookups, never rewrite); a failed lookup
        means no policy is known, so the post goes out as it is."""
        if resolver is None:
            return False
        author = _header(content, "From")
        domain = email.utils.parseaddr(author or "")[1].rpartition("@")[2].lower()
        if not domain:
            return False
        from ..auth.dmarc import discover

        try:
            found = discover(domain, resolver)
        except Exception:  # noqa: BLE001 - no policy known: send the post as it is
            return False
        record = found.record
        if record is None:
            return False
        policy = record.p if found.record_domain == domain else (record.sp or record.p)
        return policy in ("reject", "quarantine")


Alias = Forwarder | MailingList

#: The lab world's forwarder and mailing list (``lab.smtp.aliases()``).
LAB_ALIASES: tuple[Alias, ...] = (
    Forwarder("carol@alumni.example", "carol@campus.test", "alumni.example"),
    MailingList("course@lists.campus.test",
                ("carol@campus.test", "dave@campus.test", "bob@northwind.test"),
                "course-bounces@lists.campus.test", "lists.campus.test", "[course] ",
                "-- \ncourse mailing list: course@lists.campus.test\n"
                "To leave the list, write to course-bounces@lists.campus.test",
                "Course discussion <course.lists.campus.test>"),
)


def _header(content: bytes, name: str) -> str | None:
    """The first ``name`` field of ``content``'s header, unfolded, or None."""
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(content)
    value = parsed.get(name)
    return " ".join(str(value).split()) if value is not None else None


__all__ = ["LAB_ALIASES", "Alias", "Forwarder", "MailingList"]
