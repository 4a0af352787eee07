"""What each role of the lab's mail server does with mail: the aiosmtpd handler hooks.

aiosmtpd parses the commands and calls a handler for each: :class:`_RoleHandler` is the
lab's policy for one role. Every hook applies the lesson faults first
(:mod:`labsupport.mail.faults`), except that DATA refuses, on every role, a message with a
bare CR or LF before anything else (554 5.5.2, RFC 5321 section 2.3.8: the stuff of SMTP
smuggling, :mod:`labsupport.mail.smuggling`), storing nothing and keeping the session.
RCPT then checks the relay rules and the mailboxes and, on the MX role, greylisting.
DATA ends in one of two places: final delivery, where the MX role checks SPF, DKIM and
DMARC, applies the From domain's policy (reject, Junk or INBOX) and stores a copy per
mailbox, with forwarder and mailing-list addresses re-sent through the delivering MTA; or
submission, where the message gets any missing Date and Message-ID, is DKIM-signed with
the lab key of the user's domain and goes to the queue.

The hooks need only part of the server and of the connection: :class:`HandlerServer` and
:class:`SMTPConnection` say which part, so that this module imports neither
:mod:`labsupport.mail.server` nor :mod:`labsupport.mail.server_session`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import functools
import ipaddress
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiosmtpd.smtp import Envelope, Session, TLSSetupException

from ..auth.authres import AuthEvaluation, EvaluationLog, authenticate, header_field, strip_own
from ..core.clock import LabClock
from .accounts import normalise_address
from .aliases import Alias, Forwarder
from .faults import FaultRule, Faults
from .greylist import Greylist
from .mailstore import INBOX, JUNK, MailStore
from .server_roles import (
    _XCLIENT_SPECIAL,
    XCLIENT_ATTRIBUTES,
    ClientIdentity,
    Connection,
    MailLog,
    MailLogEntry,
    Role,
    SubmissionQueue,
    _shown,
)
from .smuggling import RFC_LINES, bare_line_end, refusal_reply

if TYPE_CHECKING:
    from ..auth.dkim_keys import LabKey

#: Why the MX role does not apply a DMARC reject or quarantine to a client on the real
#: loopback address that did not say (XCLIENT ADDR) which Internet host it stands for:
#: that client is the lab's own machine, as OpenDMARC's IgnoreHosts (default 127.0.0.1)
#: and Postfix's mynetworks treat it. The result is still evaluated and stamped.
LOOPBACK_OVERRIDE = ("the client is the lab machine itself (127.0.0.1 without XCLIENT), "
                     "which the MX role trusts, as OpenDMARC's IgnoreHosts does")


def _new_id() -> str:
    """A queue id like Postfix's: 10 hex digits."""
    return secrets.token_hex(5).upper()


# -- what the handler needs --------------------------------------------------------------


class SMTPConnection(Connection, Protocol):
    """One client connection as the role handler sees it (a
    :class:`~labsupport.mail.server_session.LabSMTP`)."""

    @property
    def session(self) -> Session | None: ...

    @property
    def client(self) -> ClientIdentity: ...

    @property
    def client_address(self) -> str: ...

    @property
    def peer_address(self) -> str: ...

    def received_header(self, envelope: Envelope, queue_id: str, recipient: str | None,
                        when: datetime) -> bytes: ...


class HandlerServer(Protocol):
    """The lab's mail server as the role handler sees it (a
    :class:`~labsupport.mail.server.MailServer`)."""

    @property
    def faults(self) -> Faults: ...

    @property
    def greylist(self) -> Greylist: ...

    @property
    def clock(self) -> LabClock: ...

    @property
    def store(self) -> MailStore: ...

    @property
    def queue(self) -> Callable[[], SubmissionQueue | None]: ...

    @property
    def max_recipients(self) -> int: ...

    @property
    def log(self) -> MailLog: ...

    @property
    def auth_resolver(self) -> Any: ...

    @property
    def authserv_id(self) -> str: ...

    @property
    def evaluations(self) -> EvaluationLog: ...

    @property
    def signing_keys_dir(self) -> Path | None: ...

    def aliases(self) -> dict[str, Alias]: ...

    def signing_key(self, domain: str) -> LabKey | None: ...

    def signing_selector(self, domain: str) -> str: ...

    def recipient_refusal(self, role: Role, session: Session, address: str) -> str | None: ...

    def _record(self, smtp: Connection, event: str, detail: str = "") -> None: ...


# -- what each role does with mail -------------------------------------------------------


class _RoleHandler:
    """aiosmtpd handler hooks: the lab's policy for one role (faults first, then the
    relay and mailbox checks, then storage or the queue)."""

    def __init__(self, server: HandlerServer, role: Role) -> None:
        self.server = server
        self.role = role

    async def _fault(self, smtp: SMTPConnection, stage: str, argument: str) -> FaultRule | None:
        rule = self.server.faults.take(stage, self.role.name, argument)
        if rule is None:
            return None
        self.server._record(smtp, "fault", f"{stage} #{rule.id}: {rule.reply}")
        if rule.delay:
            await asyncio.sleep(rule.delay)
        return rule

    async def handle_HELO(self, smtp: SMTPConnection, session: Session, envelope: Envelope,
                          hostname: str) -> str:
        rule = await self._fault(smtp, "ehlo", hostname)
        if rule is not None and rule.code >= 400:
            return rule.reply
        session.host_name = hostname
        return rule.reply if rule else \
            f"250 {self.role.hostname} Hello {_shown(hostname)} [{smtp.client_address}]"

    async def handle_EHLO(self, smtp: SMTPConnection, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        rule = await self._fault(smtp, "ehlo", hostname)
        if rule is not None and rule.code >= 400:
            session.extended_smtp = False
            return [rule.reply]
        session.host_name = hostname
        lines = [f"250-{self.role.hostname} Hello {_shown(hostname)} [{smtp.client_address}]"]
        for line in responses[1:-1]:
            if line.startswith("250-AUTH") and not self.role.auth:
                continue
            lines.append(line)
        lines.append("250-ENHANCEDSTATUSCODES")
        if self.role.xclient:
            lines.append("250-XCLIENT " + " ".join(XCLIENT_ATTRIBUTES))
        lines.append("250 HELP")
        return lines

    async def handle_MAIL(self, smtp: SMTPConnection, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        rule = await self._fault(smtp, "mail", address)
        if rule is not None and rule.code >= 400:
            return rule.reply
        if not address.isascii() and not envelope.smtp_utf8:
            return (f"553 5.6.7 <{_shown(address)}>: a non-ASCII address needs SMTPUTF8 on "
                    "MAIL FROM (RFC 6531 section 3.4)")
        local, at, domain = address.rpartition("@")
        if address != "<>" and not (local and at and domain):
            return (f"553 5.1.7 <{_shown(address)}>: a sender is local-part@domain, or <> "
                    "for a bounce (RFC 5321 section 4.1.2)")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        if rule is not None:
            return rule.reply
        if address == "<>":
            return "250 2.1.0 Sender <> OK (the null sender of bounces, RFC 5321 section 4.5.5)"
        return f"250 2.1.0 Sender <{_shown(address, 200)}> OK"

    async def handle_RCPT(self, smtp: SMTPConnection, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        rule = await self._fault(smtp, "rcpt", address)
        if rule is not None and rule.code >= 400:
            return rule.reply
        if not address.isascii() and not envelope.smtp_utf8:
            return (f"553 5.6.7 <{_shown(address)}>: a non-ASCII address needs SMTPUTF8 on "
                    "MAIL FROM (RFC 6531 section 3.4)")
        if len(envelope.rcpt_tos) >= self.server.max_recipients:
            # RFC 5321 section 4.5.3.1.10 asks for 452 (a client sends the rest later).
            return (f"452 4.5.3 Too many recipients: at most {self.server.max_recipients} per "
                    "message; send the rest in another transaction")
        if address.lower() == "postmaster":
            address = "postmaster@lab.test"  # RFC 5321 section 4.1.1.3: <Postmaster> alone
        refusal = self.server.recipient_refusal(self.role, session, address)
        if refusal is not None:
            self.server._record(smtp, "refused", f"RCPT <{_shown(address)}>: {refusal}")
            return refusal
        if not self.role.submission:
            deferred = self.server.greylist.check(smtp.client_address,
                                                  envelope.mail_from or "", address)
            if deferred is not None:
                self.server._record(smtp, "greylisted", f"RCPT <{_shown(address)}>: {deferred}")
                return deferred
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return rule.reply if rule else f"250 2.1.5 Recipient <{_shown(address, 200)}> OK"

    async def handle_DATA(self, smtp: SMTPConnection, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        # aiosmtpd ends the data only at CRLF.CRLF but keeps a bare CR or LF in the
        # content; passed on by a relay it can end the data early at a lenient next hop
        # (SMTP smuggling), so the message is refused, before any fault is spent on it.
        bare = bare_line_end(content)
        if bare is not None:
            self.server._record(smtp, "not stored", f"{bare.describe()} ({RFC_LINES}): "
                                "refused as possible SMTP smuggling")
            return refusal_reply(bare)
        rule = await self._fault(smtp, "data", " ".join(envelope.rcpt_tos))
        if rule is not None and rule.code >= 400:
            self.server._record(smtp, "not stored", f"fault: {rule.reply}")
            return rule.reply
        queue_id = _new_id()
        try:
            if self.role.submission:
                reply = await self._submit(smtp, session, envelope, content, queue_id)
            else:
                reply = await self._deliver(smtp, envelope, content, queue_id)
        except Exception as exc:  # noqa: BLE001 - the client must hear, and may retry
            self.server._record(smtp, "error", f"{type(exc).__name__}: {exc}")
            return ("451 4.3.0 The lab could not store the message "
                    f"({type(exc).__name__}); nothing was kept, try again")
        return rule.reply if rule else reply

    async def _deliver(self, smtp: SMTPConnection, envelope: Envelope, content: bytes,
                       queue_id: str) -> str:
        """Final delivery: a copy per mailbox, each with Return-Path, Received and (on
        the MX role) the one Authentication-Results field; forwarder and list addresses
        re-send the message through the delivering MTA."""
        recipients = list(dict.fromkeys(normalise_address(r) for r in envelope.rcpt_tos))
        when = self.server.clock.now()
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        loop = asyncio.get_running_loop()
        stamp = b""
        folder = INBOX
        evaluation: AuthEvaluation | None = None
        if not self.role.submission and self.server.auth_resolver is not None:
            evaluation = await self._authenticate(smtp, envelope, content, recipients,
                                                  queue_id)
            # RFC 8601 section 5: fields claiming to be ours were not written by us.
            content = strip_own(content, self.server.authserv_id)
            if evaluation is not None:
                stamp = header_field(evaluation.header)
                if evaluation.disposition == "reject":
                    reply = _dmarc_rejection(evaluation)
                    self.server._record(smtp, "rejected", f"id {queue_id}: {reply}")
                    return reply
                if evaluation.disposition == "quarantine":
                    folder = JUNK
        aliases = self.server.aliases()
        mailboxes = [r for r in recipients if r not in aliases]
        copies = [(r, b"Return-Path: <" + sender.encode("utf-8", "surrogateescape") + b">\r\n"
                   + smtp.received_header(envelope, queue_id, r, when) + stamp + content)
                  for r in mailboxes]
        store = self.server.store

        def write() -> None:
            for address, raw in copies:
                store.deliver(address, raw, folder)

        await loop.run_in_executor(None, write)  # durable before the 250 (fsync)
        for address in recipients:
            if address not in aliases:
                continue
            if folder == JUNK:
                self.server._record(smtp, "not re-sent", f"<{address}>: quarantined by "
                                    "DMARC, so not passed on")
                continue
            await self._resend(smtp, envelope, aliases[address], content, queue_id, when,
                               sender, evaluation)
        if mailboxes:
            where = " (Junk: DMARC quarantine)" if folder == JUNK else ""
            self.server._record(smtp, "delivered", f"id {queue_id} from <{_shown(sender)}> to "
                                + ", ".join(f"<{r}>" for r in mailboxes) + where)
        if folder == JUNK:
            return f"250 2.0.0 Ok: DMARC quarantine, delivered to Junk as {queue_id}"
        return f"250 2.0.0 Ok: delivered as {queue_id}"

    async def _authenticate(self, smtp: SMTPConnection, envelope: Envelope, content: bytes,
                            recipients: list[str], queue_id: str) -> AuthEvaluation | None:
        """SPF and DKIM for one message (in a worker thread: RSA and hashing take time),
        kept in ``server.evaluations``; None (and a log line) if the checks broke."""
        assert smtp.session is not None
        helo = smtp.client.helo if smtp.client.helo not in (None, *_XCLIENT_SPECIAL) \
            else smtp.session.host_name
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        check = functools.partial(
            authenticate, content, client_ip=smtp.client_address, mail_from=sender,
            helo=helo, resolver=self.server.auth_resolver, authserv_id=self.server.authserv_id,
            recipients=recipients, now=self.server.clock, queue_id=queue_id)
        try:
            evaluation = await asyncio.get_running_loop().run_in_executor(None, check)
        except Exception as exc:  # noqa: BLE001 - the mail is still delivered, unstamped
            self.server._record(smtp, "error", f"authentication checks failed: "
                                f"{type(exc).__name__}: {exc}")
            return None
        if evaluation.requested_disposition != "none" and smtp.client.addr is None \
                and ipaddress.ip_address(smtp.peer_address).is_loopback:
            evaluation = dataclasses.replace(evaluation, policy_override=LOOPBACK_OVERRIDE)
        self.server.evaluations.append(evaluation)
        self.server._record(smtp, "authenticated", f"id {queue_id}: {evaluation.header}")
        if evaluation.policy_override:
            self.server._record(smtp, "policy not applied", f"id {queue_id}: DMARC asked for "
                                f"{evaluation.requested_disposition}: {LOOPBACK_OVERRIDE}")
        return evaluation

    async def _resend(self, smtp: SMTPConnection, envelope: Envelope, alias: Alias, content: bytes,
                      queue_id: str, when: datetime, sender: str,
                      evaluation: AuthEvaluation | None = None) -> None:
        """Hand a message for a forwarder or list address back to the delivering MTA,
        ARC-sealed with the MX role's ``evaluation`` of it when there is one."""
        queue = self.server.queue()
        if queue is None:
            self.server._record(smtp, "not re-sent", f"<{alias.address}> is a {alias.kind}, "
                                "but the lab has no queue to re-send with")
            return
        loop = asyncio.get_running_loop()
        received = smtp.received_header(envelope, queue_id, alias.address, when)
        if isinstance(alias, Forwarder):
            mail_from, rcpts, raw = sender, [alias.target], received + content
        else:
            if not sender:
                self.server._record(smtp, "not re-sent", f"<{alias.address}>: a bounce (MAIL "
                                    "FROM <>) is not sent to the list's members")
                return
            if alias.carries_own_id(content):
                self.server._record(smtp, "not re-sent", f"<{alias.address}>: the message "
                                    "already went through this list (a loop)")
                return
            mail_from, rcpts = alias.bounce_address, list(alias.members)
            rewrite = await loop.run_in_executor(None, functools.partial(
                alias.rewrites_from, content, self.server.auth_resolver))
            posted = alias.post(content, rewrite_from=rewrite)
            if rewrite:
                self.server._record(smtp, "from rewritten", f"<{alias.address}>: the author's "
                                    "domain publishes p=reject or p=quarantine (RFC 7960)")
            raw = received + await self._sign_as(smtp, alias.signing_domain, posted)
        if evaluation is not None:
            raw = await self._arc_seal(smtp, alias, raw, evaluation)
        item = await loop.run_in_executor(None, functools.partial(
            queue.submit, mail_from, rcpts, raw, sender_domain=alias.sender_domain))
        kick = getattr(queue, "kick", None)
        if callable(kick):
            kick()
        shown_id = str(getattr(item, "id", "") or queue_id)
        self.server._record(smtp, "re-sent", f"<{alias.address}> ({alias.kind}): queued as "
                            f"{shown_id} from <{_shown(mail_from)}> to "
                            + ", ".join(f"<{r}>" for r in rcpts)
                            + f", sent from {alias.sender_domain}")

    async def _arc_seal(self, smtp: SMTPConnection, alias: Alias, message: bytes,
                        evaluation: AuthEvaluation) -> bytes:
        """``message`` with the ARC set ``alias`` adds as it re-sends it (RFC 8617): the
        MX role's Authentication-Results and ARC validation of the message as it arrived,
        sealed with the lab key beside the DKIM keys; unchanged (and a log line) when the
        server has no key directory or the sealing is refused."""
        keys = self.server.signing_keys_dir  # the DKIM keys' directory
        if keys is None:
            return message
        sealer = functools.partial(alias.seal, message, evaluation.header,
                                   chain=evaluation.arc, resolver=self.server.auth_resolver,
                                   keys=keys, timestamp=self.server.clock)
        try:
            sealing = await asyncio.get_running_loop().run_in_executor(None, sealer)
        except Exception as exc:  # noqa: BLE001 - the copy still goes out, unsealed
            self.server._record(smtp, "not sealed", f"ARC for {alias.arc_domain}: "
                                f"{type(exc).__name__}: {exc}")
            return message
        if sealing.sealed_message is None:
            self.server._record(smtp, "not sealed", f"ARC for {alias.arc_domain}: "
                                f"{sealing.summary}")
            return message
        self.server._record(smtp, "arc sealed", f"i={sealing.instance} cv={sealing.cv} "
                            f"d={sealing.domain} s={sealing.selector}")
        return sealing.sealed_message

    async def _sign_as(self, smtp: SMTPConnection, domain: str, message: bytes) -> bytes:
        """``message`` DKIM-signed with the lab key of ``domain`` when there is one."""
        return await self._sign(smtp, f"@{domain}", message)

    async def _submit(self, smtp: SMTPConnection, session: Session, envelope: Envelope,
                      content: bytes, queue_id: str) -> str:
        """Submission: hand the message to the lab's queue, or deliver it here when the
        lab has no queue yet."""
        queue = self.server.queue()
        user = str(session.auth_data or "")
        when = self.server.clock.now()
        completed = await self._sign(smtp, user, _complete_headers(
            content, when, queue_id, self.role.hostname))
        if queue is None:
            return await self._deliver(smtp, envelope, completed, queue_id)
        recipients = list(envelope.rcpt_tos)
        only = recipients[0] if len(recipients) == 1 else None
        raw = smtp.received_header(envelope, queue_id, only, when) + completed
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        sender_domain = user.rpartition("@")[2] or sender.rpartition("@")[2]
        loop = asyncio.get_running_loop()
        item = await loop.run_in_executor(None, functools.partial(
            queue.submit, sender, recipients, raw, sender_domain=sender_domain))
        kick = getattr(queue, "kick", None)
        if callable(kick):
            kick()  # deliver now rather than at the queue's next poll
        shown_id = str(getattr(item, "id", "") or queue_id)
        self.server._record(smtp, "queued", f"id {shown_id} from <{_shown(sender)}> to "
                            + ", ".join(f"<{_shown(r)}>" for r in recipients)
                            + f" (sent by {user or 'nobody'})")
        return f"250 2.0.0 Ok: queued as {shown_id}"

    async def _sign(self, smtp: SMTPConnection, user: str, message: bytes) -> bytes:
        """``message`` DKIM-signed for ``user``'s domain when the lab has a key for it
        (RFC 6376 section 5), else unchanged; a refusal is logged, never fatal."""
        domain = user.rpartition("@")[2].lower()
        key = self.server.signing_key(domain) if domain else None
        if key is None:
            return message
        from ..auth.dkim import DKIMError, sign

        selector = self.server.signing_selector(domain)
        signer = functools.partial(sign, message, domain=domain, selector=selector,
                                   private_key=key, canonicalization=("relaxed", "relaxed"),
                                   timestamp=self.server.clock)
        try:
            signed = await asyncio.get_running_loop().run_in_executor(None, signer)
        except DKIMError as exc:
            self.server._record(smtp, "not signed", f"DKIM for {domain}: {exc}")
            return message
        self.server._record(smtp, "dkim signed", f"d={domain} s={selector}")
        return signed

    async def handle_exception(self, error: Exception) -> str:
        event = "tls failed" if isinstance(error, TLSSetupException) else "error"
        cause = error.__cause__ if isinstance(error, TLSSetupException) else error
        self.server.log.record(MailLogEntry(self.server.clock.time(), self.role.name, "-",
                                            event, f"{type(cause).__name__}: {cause}"))
        return f"451 4.3.0 Internal error ({type(error).__name__}): please try again"


def _dmarc_rejection(evaluation: AuthEvaluation) -> str:
    """The 550 5.7.1 reply for a message the From domain's DMARC policy rejects."""
    result = evaluation.dmarc
    domain = getattr(result, "from_domain", None) or "the From domain"
    record_domain = getattr(result, "record_domain", None) or domain
    tag = getattr(result, "policy", None) or "p"
    return (f"550 5.7.1 Message rejected: DMARC policy of {_shown(record_domain, 100)} "
            f"({tag}=reject): neither SPF nor DKIM passed aligned with the From domain "
            f"{_shown(domain, 100)} (RFC 9989)")


def _complete_headers(content: bytes, when: datetime, queue_id: str, hostname: str) -> bytes:
    """Add Date and Message-ID when a submitted message lacks them (RFC 6409 section 8)."""
    head, sep, _body = content.partition(b"\r\n\r\n")
    if not sep:
        head = content
    names = {line.split(b":", 1)[0].strip().lower() for line in head.split(b"\r\n")
             if line and not line[:1].isspace() and b":" in line}
    added = b""
    if b"date" not in names:
        added += b"Date: " + email.utils.format_datetime(when).encode() + b"\r\n"
    if b"message-id" not in names:
        added += f"Message-ID: <{queue_id}.{int(time.time())}@{hostname}>\r\n".encode()
    return added + content
