"""Delivering one recipient domain: the MX look-up, then an SMTP session per MX host.

:class:`_DomainDelivery` holds the :class:`~labsupport.mail.delivery.Queue` methods that
try one domain of one queued message: look up its MX hosts (RFC 5321 section 5.1), skip
the hosts a lesson fault switched off, speak SMTP (EHLO, XCLIENT, MAIL, RCPT, DATA) with
the lab's MX role on 127.0.0.1 standing for each host, and sort every recipient into
delivered, failed for good or failed for now. When the queue has an MTA-STS fetcher and the
domain an active policy (RFC 8461), :class:`~labsupport.mail.mtasts_enforce.StsGuard`
decides which MX hosts may be used and requires STARTTLS with a valid certificate; with a
DANE validator (RFC 7672), :class:`~labsupport.mail.dane_enforce.DaneGuard` requires
STARTTLS and a certificate matching the TLSA records of the hosts that publish them.
:class:`_Outcome` collects what happened to the domain while it runs and freezes it into a
:class:`~labsupport.mail.delivery_items.DeliveryAttempt`. Part of
:mod:`labsupport.mail.delivery`.
"""

from __future__ import annotations

import contextlib
import random
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import dns.exception

from ..core.errors import LabError
from ..core.results import TraceBuilder
from ..dns.mx import MXResult, ResolverLike, mx_hosts
from ..wire.tls import starttls_unverified
from .dane_enforce import DaneGuard
from .delivery_dsn import FailedRecipient, _status_of
from .delivery_items import (
    RFC_MX,
    RFC_REPLY,
    RFC_XCLIENT,
    DeliveryAttempt,
    FaultsLike,
    HostTry,
    QueueItem,
    _duration,
    _when,
)
from .mtasts_enforce import StsGuard
from .mtasts_fetch import PolicyFetcher

#: Opportunistic TLS between MTAs: encrypt when offered, authenticate nothing.
RFC_OPPORTUNISTIC = "RFC 7435; RFC 3207"

# -- small helpers -----------------------------------------------------------------------


@dataclass
class _Outcome:
    """What happened to one domain of one item in this run (mutable while it runs)."""

    domain: str
    recipients: tuple[str, ...]
    pending: list[str]
    trace: TraceBuilder = field(default_factory=TraceBuilder)
    tried: list[HostTry] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    failures: list[FailedRecipient] = field(default_factory=list)
    temporary_rcpts: set[str] = field(default_factory=set)
    host: str | None = None
    reply: str | None = None
    last_temporary: str | None = None
    last_diagnostic: str | None = None
    last_remote: str | None = None
    sts: StsGuard | None = None
    dane: DaneGuard | None = None

    def fail(self, rcpt: str, reply: str, remote: str | None, *,
             diagnostic: str | None = None) -> None:
        if rcpt not in self.pending:
            return
        self.pending.remove(rcpt)
        self.failed.append((rcpt, reply))
        self.failures.append(FailedRecipient(rcpt, _status_of(reply),
                                      diagnostic or f"smtp; {reply}", remote))
        self.reply = reply

    def note_temporary(self, reply: str, diagnostic: str, remote: str | None,
                       rcpts: Iterable[str] | None = None) -> None:
        self.last_temporary = reply
        self.last_diagnostic = diagnostic
        self.last_remote = remote
        self.reply = reply
        self.temporary_rcpts.update(self.pending if rcpts is None else rcpts)

    def freeze(self, item: QueueItem, now: float, next_at: float | None,
               bounce_to: str | None) -> DeliveryAttempt:
        if self.pending:
            verdict = "deferred"
        elif self.failed:
            verdict = "bounced"
        else:
            verdict = "delivered"
        summary = _summary(self, verdict, next_at, now)
        return DeliveryAttempt(
            verdict=verdict, summary=summary, trace=self.trace.freeze(), item_id=item.id,
            domain=self.domain, mail_from=item.mail_from, recipients=self.recipients,
            at=now, host=self.host, tried=tuple(self.tried), delivered=tuple(self.delivered),
            failed=tuple(self.failed), deferred=tuple(self.pending), reply=self.reply,
            next_attempt_at=next_at, bounce_to=bounce_to if self.failures else None,
            tls=self.sts.frozen(self.host if self.delivered else None) if self.sts else (),
        )


def _summary(out: _Outcome, verdict: str, next_at: float | None, now: float) -> str:
    parts: list[str] = []
    if out.delivered:
        parts.append(f"Delivered to {', '.join(out.delivered)} through {out.host}.")
    if out.failed:
        why = "; ".join(f"{r}: {reply}" for r, reply in out.failed)
        parts.append(f"Returned to the sender: {why}.")
    if verdict == "deferred":
        hosts = ", ".join(t.host for t in out.tried) or "no host"
        parts.append(f"Not yet delivered to {', '.join(out.pending)} (tried {hosts}; "
                     f"{out.last_temporary or 'temporary failure'}); next try "
                     f"{_when(next_at, now) if next_at is not None else 'later'}.")
    return " ".join(parts)


# -- one domain ---------------------------------------------------------------------------


class _DomainDelivery:
    """The part of :class:`~labsupport.mail.delivery.Queue` that delivers one domain of
    one item: MX look-up, SMTP sessions, and the verdict on each recipient."""

    resolver: ResolverLike
    faults: FaultsLike | None
    mx_port: Callable[[], int]
    local_domains: Callable[[], set[str]] | None
    rng: random.Random
    timeout: float
    mtasts: PolicyFetcher | None = None
    dane: Any = None

    def _deliver_domain(self, item: QueueItem, domain: str, rcpts: tuple[str, ...],
                        raw: bytes, outbound: str | None, now: float) -> _Outcome:
        out = _Outcome(domain=domain, recipients=rcpts, pending=list(rcpts))
        trace = out.trace
        sender = item.mail_from or "<>"
        trace.add(f"message {item.id} from {sender} for {', '.join(rcpts)}: try "
                  f"{item.attempts + 1}, queued {_duration(now - item.created_at)} ago",
                  kind="info")

        if self.local_domains is not None and not _is_local(domain, self.local_domains()):
            self._outside_lab(out, domain, "it is not one of the lab's domains")
            return out
        trace.add(f"look up where mail for {domain} goes", kind="query", rfc=RFC_MX)
        found = mx_hosts(domain, self.resolver, rng=self.rng)
        with trace.nested():
            trace.extend(found.trace)
        if found.verdict == "outside-lab":
            self._outside_lab(out, domain, "the lab's DNS serves no zone for it")
            return out
        if not found.deliverable:
            self._no_host(out, found)
            return out

        hosts = [h for h in found.hosts if h.usable]
        trace.add("try the MX hosts in order: " + ", ".join(h.name for h in hosts),
                  kind="decision", rfc=RFC_MX)
        out.sts = StsGuard.lookup(self.mtasts, domain, trace, now, outbound)
        out.dane = DaneGuard.lookup(self.dane, domain, trace)
        soft_rejects: dict[str, tuple[str, str | None]] = {}
        for position, mx in enumerate(hosts):
            if not out.pending:
                break
            host = mx.name.lower()
            left = len(hosts) - position - 1
            trace.add(f"try {host} (preference {mx.preference})", kind="info")
            with trace.nested():
                refused = out.dane.check_host(host, trace) if out.dane is not None else None
                if refused is not None:
                    out.tried.append(HostTry(host, "refused", refused))
                    out.note_temporary(refused, f"X-Lab; {refused}", None)
                    self._move_on(trace, left, why="not usable under DANE")
                    continue
                if out.sts is not None and not out.sts.allows_host(host, trace, mx.addresses):
                    reply = f"{host} is not an MX host of {domain}'s MTA-STS policy"
                    out.tried.append(HostTry(host, "refused", reply))
                    out.note_temporary(f"454 4.7.5 MTA-STS: {reply}",
                                       f"X-Lab; MTA-STS: {reply}", None)
                    self._move_on(trace, left, why="not allowed by MTA-STS")
                    continue
                if self.faults is not None and self.faults.is_down(host):
                    reply = "connection refused"
                    trace.add(f"{host} is down (a lesson fault): connection refused",
                              kind="error")
                    out.tried.append(HostTry(host, "refused", reply))
                    out.note_temporary(f"connect to {host}: {reply}",
                                       f"X-Lab; connect to {host}: {reply}", None)
                    self._move_on(trace, left, why="could not connect")
                    continue
                self._session(out, host, item, raw, outbound, soft_rejects, left,
                              mx.addresses)
        # A 5xx greeting is skipped like a failed connection (Postfix's
        # smtp_skip_5xx_greeting); when no host did better, it is final.
        for rcpt in list(out.pending):
            if rcpt in soft_rejects and rcpt not in out.temporary_rcpts:
                reply, remote = soft_rejects[rcpt]
                out.fail(rcpt, reply, remote)
        if out.failures:
            trace.add("a 5xx reply is a permanent failure: these recipients are returned "
                      "to the sender: " + ", ".join(f.recipient for f in out.failures),
                      kind="decision", rfc=RFC_REPLY)
        if out.delivered:
            trace.add(f"delivered to {out.host} for {', '.join(out.delivered)}", kind="ok")
        return out

    def _session(self, out: _Outcome, host: str, item: QueueItem, raw: bytes,
                 outbound: str | None, soft_rejects: dict[str, tuple[str, str | None]],
                 left: int, addresses: tuple[str, ...] = ()) -> None:
        """One SMTP session with the MX role, standing for ``host``."""
        trace = out.trace
        helo = f"out.{item.sender_domain}" if item.sender_domain else "out.lab.test"
        rcpts = list(out.pending)
        client = smtplib.SMTP(local_hostname=helo, timeout=self.timeout)

        def said(code: int, text: bytes | str) -> str:
            lines = (text.decode("utf-8", "replace") if isinstance(text, bytes)
                     else text).splitlines() or [""]
            detail = None
            if len(lines) > 1:  # a multi-line reply, as the server sent it
                detail = "\n".join(f"{code}{'-' if i < len(lines) - 1 else ' '}{line}"
                                   for i, line in enumerate(lines))
            trace.add(f"<- {code} {lines[0]}".rstrip(), kind="answer", detail=detail)
            return _reply(code, text)

        def temporary(reply: str, why: str, remote: bool = True,
                      who: list[str] | None = None) -> None:
            out.tried.append(HostTry(host, "temporary", reply))
            diagnostic = f"smtp; {reply}" if remote else f"X-Lab; {reply}"
            out.note_temporary(reply, diagnostic, host if remote else None, who)
            trace.add(f"{why}: a temporary failure", kind="warning", rfc=RFC_REPLY)
            self._move_on(trace, left, why="temporary failure")

        try:
            try:
                port = self.mx_port()
                trace.add(f"connect to {host}: 127.0.0.1 port {port} (the lab's MX role "
                          "answers for every lab MX host name)", kind="info")
                code, text = client.connect("127.0.0.1", port)
            except (OSError, LabError) as exc:
                reply = f"connection failed: {exc}"
                out.tried.append(HostTry(host, "refused", reply))
                out.note_temporary(f"connect to {host}: {reply}",
                                   f"X-Lab; connect to {host}: {reply}", None)
                trace.add(f"cannot connect: {exc}", kind="error")
                self._move_on(trace, left, why="could not connect")
                return
            reply = said(code, text)
            if code != 220:
                if 500 <= code < 600:
                    for rcpt in rcpts:
                        soft_rejects[rcpt] = (reply, host)
                    out.tried.append(HostTry(host, "permanent", reply))
                    trace.add("the server refuses service at the greeting: skip it, as "
                              "Postfix does; final only if no other host takes the message",
                              kind="warning", rfc="RFC 5321 section 3.1")
                    self._move_on(trace, left, why="greeting refused")
                else:
                    temporary(reply, "the greeting is not 220")
                return

            greeted, reply = self._hello(client, helo, trace, said)
            if not greeted:
                if reply.startswith("5"):
                    out.tried.append(HostTry(host, "permanent", reply))
                    for rcpt in rcpts:
                        out.fail(rcpt, reply, host)
                else:
                    temporary(reply, "the server refused our greeting")
                return
            if out.dane is not None:
                refused = out.dane.secure(client, host, trace,
                                          lambda: self._hello(client, helo, trace, said))
                if refused is not None:
                    temporary(refused, "DANE does not allow delivery through this host",
                              remote=False)
                    return
            if out.sts is not None and not (out.dane and out.dane.protects(host)):
                refused = out.sts.secure(client, host, trace,
                                         lambda: self._hello(client, helo, trace, said),
                                         addresses)
                if refused is not None:
                    temporary(refused, "MTA-STS does not allow delivery through this host",
                              remote=False)
                    return
            if not isinstance(client.sock, ssl.SSLSocket):
                lost = self._opportunistic_tls(client, host, trace,
                                               lambda: self._hello(client, helo, trace, said))
                if lost is not None:
                    temporary(lost, "opportunistic STARTTLS left no usable session", remote=False)
                    return
            if client.has_extn("xclient"):
                if outbound:
                    command = f"ADDR={outbound} HELO={helo}"
                    trace.add(f"-> XCLIENT {command}", kind="query", rfc=RFC_XCLIENT,
                              detail=f"the MX role offers XCLIENT: it will see this client "
                                     f"as {helo} [{outbound}], the sending organisation's "
                                     "outbound host, instead of 127.0.0.1")
                    code, text = client.docmd("XCLIENT", command)
                    reply = said(code, text)
                    if 200 <= code < 300:
                        # Postfix answers XCLIENT with a new greeting: say EHLO again.
                        greeted, reply = self._hello(client, helo, trace, said)
                        if not greeted:
                            temporary(reply, "the server refused EHLO after XCLIENT")
                            return
                    elif 400 <= code < 500:
                        temporary(reply, "XCLIENT failed")
                        return
                    else:
                        trace.add("XCLIENT refused: go on as 127.0.0.1", kind="warning")
                else:
                    trace.add(f"{helo} has no IPv4 address in the lab's DNS: no XCLIENT, the "
                              "MX role sees 127.0.0.1", kind="warning")

            if not client.has_extn("smtputf8") and not all(
                    a.isascii() for a in [item.mail_from, *rcpts]):
                reply = ("553 5.6.7 the addresses are not ASCII and the server does not "
                         "offer SMTPUTF8")
                trace.add(reply, kind="error", rfc="RFC 6531 section 3.5")
                out.tried.append(HostTry(host, "permanent", reply))
                for rcpt in rcpts:
                    out.fail(rcpt, reply, None, diagnostic=f"X-Lab; {reply}")
                return
            options = self._mail_options(client, item, raw, rcpts)
            mail_from = item.mail_from
            trace.add(f"-> MAIL FROM:<{mail_from}>{''.join(' ' + o for o in options)}",
                      kind="query")
            code, text = client.mail(mail_from, options)
            reply = said(code, text)
            if 400 <= code < 500 or not 200 <= code < 600:
                temporary(reply, "MAIL FROM was deferred")
                return
            if code >= 500:
                out.tried.append(HostTry(host, "permanent", reply))
                for rcpt in rcpts:
                    out.fail(rcpt, reply, host)
                return

            accepted: list[str] = []
            deferred: list[str] = []
            for rcpt in rcpts:
                trace.add(f"-> RCPT TO:<{rcpt}>", kind="query")
                code, text = client.rcpt(rcpt)
                reply = said(code, text)
                if 200 <= code < 300:
                    accepted.append(rcpt)
                elif 500 <= code < 600:
                    out.fail(rcpt, reply, host)
                else:
                    deferred.append(rcpt)
                    out.note_temporary(reply, f"smtp; {reply}", host, [rcpt])
            if not accepted:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    client.rset()
                outcome = "temporary" if deferred else "permanent"
                out.tried.append(HostTry(host, outcome, out.last_temporary or reply))
                if deferred:
                    trace.add("no recipient accepted for now: a temporary failure",
                              kind="warning", rfc=RFC_REPLY)
                    self._move_on(trace, left, why="temporary failure")
                else:
                    trace.add("every recipient refused for good (5xx): no other MX host is "
                              "tried for them", kind="decision", rfc=RFC_REPLY)
                return

            trace.add("-> DATA", kind="query")
            try:
                code, text = client.data(_crlf(raw))
            except smtplib.SMTPDataError as exc:
                reply = said(exc.smtp_code, exc.smtp_error)
                self._data_refused(out, host, accepted, deferred, exc.smtp_code, reply, left)
                return
            trace.add(f"[the message, {len(raw)} bytes, then <CRLF>.<CRLF>]", kind="info")
            reply = said(code, text)
            if 200 <= code < 300:
                out.host = host
                out.delivered.extend(accepted)
                for rcpt in accepted:
                    out.pending.remove(rcpt)
                outcome = "partial" if deferred else "delivered"
                out.tried.append(HostTry(host, outcome, reply))
                out.reply = reply
                if deferred:
                    self._move_on(trace, left, why=f"{len(deferred)} recipient(s) deferred")
            else:
                self._data_refused(out, host, accepted, deferred, code, reply, left)
        except (smtplib.SMTPException, OSError) as exc:
            reply = f"connection lost: {exc}"
            out.tried.append(HostTry(host, "temporary", reply))
            out.note_temporary(reply, f"X-Lab; {host}: {reply}", None)
            trace.add(f"{host}: {reply}", kind="error")
            self._move_on(trace, left, why="connection lost")
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()
            client.close()

    def _data_refused(self, out: _Outcome, host: str, accepted: list[str],
                      deferred: list[str], code: int, reply: str, left: int) -> None:
        if 500 <= code < 600:
            out.tried.append(HostTry(host, "permanent", reply))
            for rcpt in accepted:
                out.fail(rcpt, reply, host)
            if deferred:
                self._move_on(out.trace, left, why=f"{len(deferred)} recipient(s) deferred")
            return
        out.tried.append(HostTry(host, "temporary", reply))
        out.note_temporary(reply, f"smtp; {reply}", host, accepted)
        out.trace.add("the message was not accepted for now: a temporary failure",
                      kind="warning", rfc=RFC_REPLY)
        self._move_on(out.trace, left, why="temporary failure")

    @staticmethod
    def _hello(client: smtplib.SMTP, helo: str, trace: TraceBuilder,
               said: Callable[[int, bytes | str], str]) -> tuple[bool, str]:
        """EHLO, or HELO when EHLO is refused (RFC 5321 section 3.2)."""
        trace.add(f"-> EHLO {helo}", kind="query")
        code, text = client.ehlo(helo)
        reply = said(code, text)
        if code == 250:
            return True, reply
        trace.add(f"-> HELO {helo}", kind="query")
        code, text = client.helo(helo)
        reply = said(code, text)
        return code == 250, reply

    @staticmethod
    def _opportunistic_tls(client: smtplib.SMTP, host: str, trace: TraceBuilder,
                           hello: Callable[[], tuple[bool, str]]) -> str | None:
        """No DANE or MTA-STS secured the session: STARTTLS if the server offers it, with
        no certificate check, else go on in the clear (RFC 3207, RFC 7435 opportunistic
        security: a public MX cannot require TLS of every domain). Returns the reply of a temporary
        failure when the handshake fails (the connection is then lost), else None."""
        if not client.has_extn("starttls"):
            trace.add(f"{host} does not offer STARTTLS: deliver in the clear (opportunistic "
                      "TLS; an attacker on the path can strip the offer)", kind="warning",
                      rfc=RFC_OPPORTUNISTIC)
            return None
        trace.add("-> STARTTLS (opportunistic: encrypt, without checking the certificate)",
                  kind="query", rfc=RFC_OPPORTUNISTIC)
        try:  # SNI: the MX host name
            reply = starttls_unverified(client, host)
        except smtplib.SMTPResponseException as exc:
            trace.add(f"<- {exc.smtp_code} {exc.smtp_error!r}: STARTTLS refused, go on in the "
                      "clear", kind="warning", rfc=RFC_OPPORTUNISTIC)
            return None
        except (ssl.SSLError, OSError) as exc:
            trace.add(f"the TLS handshake failed: {exc}; the connection is lost",
                      kind="error")
            return f"421 4.7.0 the TLS handshake with {host} failed: {exc}"
        trace.add(f"<- {reply}", kind="answer")
        version = client.sock.version() if isinstance(client.sock, ssl.SSLSocket) else None
        trace.add(f"TLS is up ({version}), encrypted but not authenticated: a relay that "
                  "strips STARTTLS would go unnoticed", kind="info", rfc=RFC_OPPORTUNISTIC)
        greeted, reply = hello()
        return None if greeted else reply

    @staticmethod
    def _mail_options(client: smtplib.SMTP, item: QueueItem, raw: bytes,
                      rcpts: list[str]) -> list[str]:
        options: list[str] = []
        if client.has_extn("size"):
            options.append(f"SIZE={len(raw)}")
        if client.has_extn("8bitmime") and any(b > 127 for b in raw):
            options.append("BODY=8BITMIME")
        if client.has_extn("smtputf8") and not all(
                a.isascii() for a in [item.mail_from, *rcpts]):
            options.append("SMTPUTF8")
        return options

    @staticmethod
    def _move_on(trace: TraceBuilder, left: int, *, why: str) -> None:
        if left:
            trace.add(f"{why}: try the next MX host", kind="decision", rfc=RFC_MX)
        else:
            trace.add(f"{why}, and no MX host is left to try", kind="decision", rfc=RFC_MX)

    def _outside_lab(self, out: _Outcome, domain: str, why: str) -> None:
        reply = (f"550 5.7.1 {domain} is outside the lab ({why}); the lab never delivers "
                 "mail to the Internet")
        out.trace.add(f"{domain} is outside the lab: no MX host is tried and no connection "
                      "is made", kind="error")
        for rcpt in out.recipients:
            out.fail(rcpt, reply, None, diagnostic=f"X-Lab; {reply}")
        out.trace.add("a permanent failure: return the message to the sender",
                      kind="decision", rfc=RFC_REPLY)

    def _no_host(self, out: _Outcome, found: MXResult) -> None:
        if found.verdict == "temporary-failure":
            reply = found.smtp_reply or "451 4.4.3 Directory server failure"
            out.note_temporary(reply, f"X-Lab; {reply}", None)
            out.trace.add(f"{found.summary} A DNS failure is temporary.", kind="warning",
                          rfc=RFC_MX)
            return
        if found.verdict == "invalid-name":
            reply = f"501 5.1.3 {found.domain} is not a valid domain name"
        else:
            reply = found.smtp_reply or "550 5.1.2 Bad destination system address"
        out.trace.add(f"{found.summary}", kind="error", rfc=RFC_MX)
        for rcpt in out.recipients:
            out.fail(rcpt, reply, None, diagnostic=f"X-Lab; {reply}")
        out.trace.add("nowhere to deliver: a permanent failure, return the message to the "
                      "sender", kind="decision", rfc=RFC_REPLY)


def _outbound_address(resolver: ResolverLike, sender_domain: str) -> str | None:
    """The IPv4 address of ``out.<sender_domain>``, the organisation's outbound host."""
    if not sender_domain:
        return None
    try:
        answer = resolver.resolve(f"out.{sender_domain}", "A")
    except dns.exception.DNSException:
        return None
    for rdata in answer:
        return str(rdata.address)
    return None


def _is_local(domain: str, local: set[str]) -> bool:
    name = domain.lower().rstrip(".")
    wanted = {d.lower().rstrip(".") for d in local}
    return any(name == d or name.endswith("." + d) for d in wanted)


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _crlf(raw: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", raw)
