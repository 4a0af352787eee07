"""The troubleshooting lab's hunt: :class:`BugHunt`, which opens the eight tickets on a
running lab, reproduces what each user saw and triages each with the lab's own tools.
The eight tickets are told in the docstring of :mod:`labsupport.teach.troubleshoot`.

Part of :mod:`labsupport.teach.troubleshoot`, which re-exports these names.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..core.results import TraceBuilder, html_table, text_table
from ..dns.mx import mx_hosts
from .troubleshoot_evidence import Evidence, Triage, TriageTable, _from_mail, _readable_part
from .troubleshoot_tickets import (
    BRIGHTSIDE_OUT,
    BRIGHTSIDE_SELECTOR,
    CRM_CLIENT,
    NORTHWIND_OUT,
    PHISHER,
    TICKETS,
    TINYSHOP_TRUSTED,
    TRUNCATED_AT,
    TicketView,
    TroubleshootError,
    ticket,
)
from .troubleshoot_tls import (
    _X509_EXPIRED,
    _X509_HOSTNAME_MISMATCH,
    CertificateView,
    _broken_certificate,
    _Listener,
)

if TYPE_CHECKING:
    from ..lab.lab import Lab
    from ..mail.smtp import Transcript


# -- the hunt ---------------------------------------------------------------------------

class BugHunt:
    """The eight tickets, opened on a running lab (see the module docstring).

    ``BugHunt(lab)`` publishes Brightside's (truncated) DKIM key, signs its newsletter and
    starts two implicit-TLS submission listeners with broken certificates. Nothing else
    changes until a ticket is reproduced or triaged; ``lab.reset()`` closes the hunt.
    """

    def __init__(self, lab: Lab) -> None:
        from ..auth.dkim_keys import generate_key

        if lab.smtp is None:
            raise TroubleshootError("the troubleshooting lab needs the lab's mail server")
        self.lab = lab
        self.tickets = TICKETS
        self._lock = threading.Lock()
        self._listeners: dict[str, _Listener] = {}
        self.closed = False
        #: Brightside's newsletter key (generated here: lab-only, gone with the hunt).
        self.newsletter_key = generate_key("rsa-sha256", 2048, domain="brightside.test",
                                           selector=BRIGHTSIDE_SELECTOR)
        #: The key record as it should be published, and as the web host's form kept it.
        self.key_record = self.newsletter_key.record
        self.published_record = self.key_record[:TRUNCATED_AT]
        lab.zones.set(self.key_name, "TXT", self.published_record)
        self.newsletter = self._sign_newsletter()
        lab.smtp.greylist.enable(["tinyshop.test"], trusted=TINYSHOP_TRUSTED)
        for hostname, problem in (("smtp.brightside.test", "expired"),
                                  ("smtp.riverbank.example", "wrong-name")):
            self._listeners[hostname] = lab.run_coroutine(self._listen(hostname, problem))
        lab.on_reset(self.close)

    @property
    def key_name(self) -> str:
        """Where Brightside's newsletter key is published."""
        return f"{BRIGHTSIDE_SELECTOR}._domainkey.brightside.test"

    # -- life cycle ----------------------------------------------------------------------

    async def _listen(self, hostname: str, problem: str) -> _Listener:
        from ..mail.server import ROLES, LabSMTP

        leaf = _broken_certificate(self.lab, hostname, problem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        leaf.configure_cert(context)
        loop = asyncio.get_running_loop()
        smtp = self.lab.smtp
        role = ROLES["submissions"]
        server = await loop.create_server(lambda: LabSMTP(smtp, role, loop),  # type: ignore[arg-type]
                                          "127.0.0.1", 0, ssl=context)
        port = int(server.sockets[0].getsockname()[1])
        return _Listener(hostname, port, server, problem)

    def port(self, hostname: str) -> int:
        """The 127.0.0.1 port of the submission server ``hostname`` (tickets 5 and 6)."""
        listener = self._listeners.get(hostname.lower().rstrip("."))
        if listener is None:
            raise TroubleshootError(
                f"the troubleshooting lab runs no server called {hostname!r}: it has "
                f"{', '.join(sorted(self._listeners))}")
        if self.closed:
            raise TroubleshootError("the hunt is closed (the lab was reset): open a new one "
                                    "with BugHunt(lab)")
        return listener.port

    def close(self) -> None:
        """Stop the broken listeners (``lab.reset()`` calls this)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            listeners = list(self._listeners.values())
        if not self.lab.running:
            return

        async def stop() -> None:
            for item in listeners:
                item.server.close()
            for item in listeners:
                try:
                    await asyncio.wait_for(item.server.wait_closed(), 2)
                except TimeoutError:
                    pass

        try:
            self.lab.run_coroutine(stop(), timeout=5)
        except Exception:  # noqa: BLE001 - the lab is stopping anyway
            pass

    # -- the tickets ---------------------------------------------------------------------

    def _rows(self) -> list[list[object]]:
        return [t.as_row() for t in self.tickets]

    def __str__(self) -> str:
        return "Open tickets\n" + text_table(["#", "from", "subject", "about"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["#", "from", "subject", "about"], self._rows(),
                          caption="Open tickets")

    def __repr__(self) -> str:
        return f"<BugHunt: {len(self.tickets)} tickets{' (closed)' if self.closed else ''}>"

    def show(self, number: int) -> TicketView:
        """One ticket in full: the complaint and the tools that help."""
        return TicketView(ticket(number))

    # -- messages --------------------------------------------------------------------------

    def _sign_newsletter(self) -> bytes:
        from ..auth import dkim

        message = ("From: Brightside Bakery <news@brightside.test>\r\n"
                   "To: carol@campus.test\r\n"
                   "Subject: This week: sourdough and cinnamon buns\r\n"
                   "Message-ID: <newsletter-48@brightside.test>\r\n"
                   "Date: Fri, 27 Nov 2026 07:00:00 +0000\r\n\r\n"
                   "Fresh from the oven this week: sourdough, rye and cinnamon buns.\r\n")
        return dkim.sign(message, domain="brightside.test", selector=BRIGHTSIDE_SELECTOR,
                         private_key=self.newsletter_key)

    @staticmethod
    def _message(sender: str, display: str, rcpt: str, subject: str, body: str) -> str:
        import secrets

        domain = sender.rsplit("@", 1)[-1]
        return (f"From: {display} <{sender}>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                f"Message-ID: <{secrets.token_hex(6)}@{domain}>\r\n\r\n{body}\r\n")

    def _send_mx(self, *, mail_from: str, rcpt: str, message: str | bytes,
                 client: Mapping[str, str]) -> Transcript:
        from ..mail.smtp import send_mail

        return send_mail("127.0.0.1", self.lab.smtp.port("mx"), mail_from=mail_from,
                         rcpt_to=[rcpt], message=message, xclient=dict(client), timeout=10)

    def _connect_tls(self, hostname: str) -> Transcript:
        from ..mail.smtp import SMTPClientError, SMTPSession

        session = SMTPSession("127.0.0.1", self.port(hostname), implicit_tls=True,
                              ca_file=self.lab.ca.ca_file, verify=True,
                              server_hostname=hostname, timeout=5)
        try:
            session.connect()
            session.ehlo("laptop.example")
            session.quit()
        except SMTPClientError:
            pass
        finally:
            session.close()
        return session.transcript

    def _verify_code(self, hostname: str) -> tuple[int, str]:
        """(OpenSSL verification code, message) of a TLS connection to ``hostname``;
        (0, "ok") when the certificate verifies."""
        context = self.lab.ca.client_context()
        with socket.create_connection(("127.0.0.1", self.port(hostname)), timeout=5) as raw:
            try:
                with context.wrap_socket(raw, server_hostname=hostname):
                    return 0, "ok"
            except ssl.SSLCertVerificationError as exc:
                return int(exc.verify_code), str(exc.verify_message)

    def certificate(self, hostname: str) -> CertificateView:
        """The certificate the server ``hostname`` (tickets 5 and 6) presents, fetched
        without verifying it, as ``openssl s_client`` shows it: subject, names, issuer
        and validity dates (RFC 5280 section 4.1.2)."""
        from cryptography import x509

        pem = ssl.get_server_certificate(("127.0.0.1", self.port(hostname)), timeout=5)
        cert = x509.load_pem_x509_certificate(pem.encode())
        try:
            alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = tuple(alt_names.value.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            names = ()
        return CertificateView(hostname, cert.subject.rfc4514_string(), names,
                               cert.issuer.rfc4514_string(), cert.not_valid_before_utc,
                               cert.not_valid_after_utc)

    # -- reproduce: what the user saw ------------------------------------------------------

    def reproduce(self, number: int) -> Evidence:
        """Do what the ticket's user did, in the lab, and show what they saw."""
        item = ticket(number)
        handler: Callable[[], tuple[str, str]] = getattr(self, f"_reproduce_{number}")
        summary, shown = handler()
        return Evidence(verdict="reproduced", summary=summary, shown=shown, number=item.number)

    def _reproduce_1(self) -> tuple[str, str]:
        queue = self.lab.queue
        if queue is None:
            raise TroubleshootError("ticket 1 needs the lab's delivering MTA (lab.queue)")
        sender = "alice@northwind.test"
        before = {m.key for m in self.lab.mail.messages(sender)}
        raw = self._message(sender, "Alice (a parent)", "office@fernhill.test", "Sports day",
                            "Will sports day go ahead if it rains?").encode()
        queue.submit(sender, ["office@fernhill.test"], raw, sender_domain="northwind.test")
        queue.wait_idle(15)
        bounces = [m for m in self.lab.mail.messages(sender) if m.key not in before]
        if not bounces:
            return ("The parent's provider tried to deliver the message; no bounce came back "
                    "(is the ticket fixed?):", str(queue.history(last=1)[-1]))
        return ("The bounce in the parent's inbox (the human-readable part of the delivery "
                "status notification, RFC 3464):", _readable_part(bounces[-1].message))

    def _reproduce_2(self) -> tuple[str, str]:
        sent = self._send_mx(mail_from="sales@careless.test", rcpt="carol@campus.test",
                             message=self._message("sales@careless.test", "Careless Sales",
                                                   "carol@campus.test", "Your quote",
                                                   "Please find our quote attached."),
                             client={"ADDR": "203.0.113.10", "HELO": "out.careless.test"})
        return ("Careless Ltd's outbound host sends to Campus; the header Campus's MX role "
                "adds:", self._auth_results(sent))

    def _reproduce_3(self) -> tuple[str, str]:
        sent = self._send_mx(mail_from="news@brightside.test", rcpt="carol@campus.test",
                             message=self.newsletter, client=BRIGHTSIDE_OUT)
        return ("The newsletter arrives at Campus; the header Campus's MX role adds:",
                self._auth_results(sent))

    def _reproduce_4(self) -> tuple[str, str]:
        sent = self._send_mx(
            mail_from="mallory@phisher.example", rcpt="carol@campus.test",
            message=self._message("security@riverbank.example", "Riverbank Security",
                                  "carol@campus.test", "Your account is locked",
                                  "Confirm your password at the link below."),
            client=PHISHER)
        return ("A phishing message in Riverbank's name reaches Campus; where it went and "
                "the header Campus's MX role adds:", self._auth_results(sent))

    def _reproduce_5(self) -> tuple[str, str]:
        return ("The employee's mail program connects to smtp.brightside.test (implicit "
                "TLS, certificate verified against the lab's CA):",
                str(self._connect_tls("smtp.brightside.test")))

    def _reproduce_6(self) -> tuple[str, str]:
        return ("The employee's mail program connects to smtp.riverbank.example (implicit "
                "TLS, certificate verified against the lab's CA):",
                str(self._connect_tls("smtp.riverbank.example")))

    def _new_correspondent(self) -> str:
        """A sender Tiny shop has never seen (a new address at Northwind each time)."""
        import secrets

        return f"guest.{secrets.token_hex(3)}@northwind.test"

    def _to_erin(self, sender: str, client: Mapping[str, str]) -> Transcript:
        message = self._message(sender, "A customer", "erin@tinyshop.test",
                                "An order", "Do you have the blue teapot in stock?")
        return self._send_mx(mail_from=sender, rcpt="erin@tinyshop.test", message=message,
                             client=client)

    def _reproduce_7(self) -> tuple[str, str]:
        sender = self._new_correspondent()
        delay = self.lab.smtp.greylist.delay
        first = self._to_erin(sender, NORTHWIND_OUT)
        at_once = self._to_erin(sender, NORTHWIND_OUT)
        self.lab.clock.advance(delay)
        later = self._to_erin(sender, NORTHWIND_OUT)
        self.lab.clock.advance(3600)
        next_one = self._to_erin(sender, NORTHWIND_OUT)
        parts = [
            (f"a new customer, {sender}, from out.northwind.test: first attempt", first),
            ("the sending server tries again at once", at_once),
            (f"the sending queue's retry, {delay:g} s later (lab clock)", later),
            ("the same customer's next message, an hour later", next_one),
        ]
        shown = "\n\n".join(f"{label}:\n{_from_mail(sent)}" for label, sent in parts)
        return ("Four deliveries to Erin, each from MAIL FROM on (the greeting, EHLO and "
                "XCLIENT are left out):", shown)

    def _send_crm(self) -> Transcript:
        return self._send_mx(
            mail_from="crm-bounces@northwind.test", rcpt="carol@campus.test",
            message=self._message("offers@northwind.test", "Northwind Offers",
                                  "carol@campus.test", "20% off this week",
                                  "Our autumn offers, for you."),
            client=CRM_CLIENT)

    def _reproduce_8(self) -> tuple[str, str]:
        sent = self._send_crm()
        return ("The CRM service (203.0.113.150) delivers an offer to Campus (from MAIL FROM "
                "on; the greeting, EHLO and XCLIENT are left out):", _from_mail(sent))

    def _auth_results(self, sent: Transcript) -> str:
        evaluation = self._evaluation_for(sent)
        reply = sent.final_reply
        answer = next((r.first_line for r in reversed(sent.replies) if r.code != 221),
                      str(reply.first_line if reply else sent.verdict))
        if evaluation is None:
            return f"The MX role answered: {answer}"
        return (f"The MX role answered: {answer}\nFiled as: {evaluation.action}\n"
                f"Authentication-Results: {evaluation.header}")

    def _evaluation_for(self, sent: Transcript) -> Any:
        message_ids = [line.text for line in sent.lines if line.text.lower().startswith(
            "message-id:")]
        wanted = message_ids[-1].split(":", 1)[1].strip().strip("<>") if message_ids else None
        for evaluation in reversed(self.lab.smtp.evaluations.all()):
            if wanted is None or (evaluation.message_id and wanted in evaluation.message_id):
                return evaluation
        return None

    # -- triage: what the tools find ---------------------------------------------------------

    def triage(self, number: int) -> Triage:
        """Run the lab's tools on one ticket and name the cause they show (or "fixed")."""
        item = ticket(number)
        handler: Callable[[TraceBuilder], tuple[str | None, str, Any]] = getattr(
            self, f"_triage_{number}")
        trace = TraceBuilder()
        cause, summary, evidence = handler(trace)
        return Triage(verdict="broken" if cause else "fixed", summary=summary,
                      trace=trace.freeze(), number=item.number, cause=cause,
                      evidence=evidence)

    def triage_all(self) -> TriageTable:
        """Every ticket's triage, as one table."""
        return TriageTable(tuple(self.triage(t.number) for t in self.tickets))

    def _triage_1(self, t: TraceBuilder) -> tuple[str | None, str, Any]:
        found = mx_hosts("fernhill.test", self.lab.zones)
        t.add(f"lab.mx('fernhill.test'): {found.verdict}", kind="query",
              rfc="RFC 5321 section 5.1", detail=found.summary)
        if found.deliverable:
            return None, f"mail for fernhill.test can be delivered ({found.verdict})", found
        kinds = found.problems
        if "alias" in kinds:
            return "mx-is-alias", "the MX names an alias", found
        missing = [h.name for h in found.hosts if h.problem_kind == "no-address"]
        t.add(f"MX hosts without an address: {', '.join(missing) or 'none'}", kind="error")
        return ("mx-host-missing",
                f"the MX names {', '.join(missing) or 'a host'}, which has no address record; "
                "the school's mail server is mx.fernhill.test", found)

    def _triage_2(self, t: TraceBuilder) -> tuple[str | None, str, Any]:
        from ..auth import spf

        result = spf.check_host("203.0.113.10", "careless.test", "sales@careless.test",
                                helo="out.careless.test", resolver=self.lab.zones)
        t.add(f"spf.check_host(203.0.113.10, careless.test): {result.verdict}", kind="query",
              rfc="RFC 7208 section 4.6.4", detail=result.summary)
        if result.verdict == "permerror" and "too many dns lookups" in result.summary.lower():
            return ("spf-too-many-lookups", "SPF evaluation stops with permerror: the record "
                    "needs more DNS lookups than the limit of 10", result)
        if result.verdict in ("fail", "softfail"):
            return "spf-address-missing", result.summary, result
        return None, f"SPF gives {result.verdict} for Careless Ltd's outbound host", result

    def _triage_3(self, t: TraceBuilder) -> tuple[str | None, str, Any]:
        from ..auth import dkim

        checked = dkim.verify(self.newsletter, self.lab.zones)
        first = checked.signatures[0] if checked.signatures else None
        verdict = first.verdict if first is not None else "none"
        reason = first.summary if first is not None else checked.summary
        t.add(f"dkim.verify(newsletter): {verdict}", kind="query", rfc="RFC 6376 section 6.1.2",
              detail=reason)
        if verdict == "pass":
            return None, "the newsletter's signature verifies", checked
        try:
            answer = self.lab.zones.resolve(self.key_name, "TXT")
            record = b"".join(b"".join(rr.strings) for rr in answer).decode()
        except Exception:  # noqa: BLE001 - NXDOMAIN, NoAnswer: no key published
            t.add(f"no TXT record at {self.key_name}", kind="error")
            return "dkim-key-missing", f"no key is published at {self.key_name}", checked
        t.add(f"the key record is {len(record)} characters long", kind="answer",
              detail=record)
        if len(record) < len(self.key_record) and self.key_record.startswith(record):
            return ("dkim-key-truncated",
                    f"the published key record stops after {len(record)} of its "
                    f"{len(self.key_record)} characters: the public key in p= is cut short",
                    checked)
        if "body hash" in reason.lower():
            return "dkim-body-changed", reason, checked
        return "dkim-key-truncated", f"the published key does not verify: {reason}", checked

    def _triage_4(self, t: TraceBuilder) -> tuple[str | None, str, Any]:
        from ..auth import dmarc

        found = dmarc.discover("riverbank.example", self.lab.zones)
        record = found.record
        t.add(f"dmarc.discover('riverbank.example'): {found.verdict}", kind="query",
              rfc="RFC 9989 section 4.10", detail=found.summary)
        if record is None:
            return ("dmarc-record-typo", "no valid DMARC record is found for "
                    "riverbank.example", found)
        for problem in record.problems:
            t.add(problem, kind="warning")
        if record.p != "reject" or record.problems:
            return ("dmarc-record-typo",
                    f"the record's policy is not the intended reject: receivers apply "
                    f"p={record.p} ({'; '.join(record.problems) or 'no problem reported'})",
                    found)
        return None, "riverbank.example publishes a valid DMARC record with p=reject", found

    def _triage_tls(self, t: TraceBuilder, hostname: str) -> tuple[str | None, str, Any]:
        code, message = self._verify_code(hostname)
        t.add(f"TLS to {hostname}, certificate checked against the lab CA: {message}",
              kind="ok" if code == 0 else "error", rfc="RFC 8314 section 5.3; RFC 7817")
        if code == 0:
            return None, f"the certificate of {hostname} verifies", None
        if code == _X509_EXPIRED:
            return "certificate-expired", f"{hostname}: {message}", code
        if code == _X509_HOSTNAME_MISMATCH:
            return "certificate-wrong-name", f"{hostname}: {message}", code
        return "certificate-untrusted", f"{hostname}: {message}", code

    def _triage_5(self, t: TraceBuilder) -> tuple[str | None, str, Any]:
        return self._triage_tls(t, "smtp.brightside.test")

    def _triage_6(self, t: TraceBuilder) -> tuple[str | None, str, Any]:
        return self._triage_tls(t, "smtp.riverbank.example")

    def _triage_7(self, t: TraceBuilder) -> tuple[str | None, str, Any]:
        sender = self._new_correspondent()
        greylist = self.lab.smtp.greylist
        first = self._to_erin(sender, NORTHWIND_OUT)
        t.add(f"a new sender's first attempt: {first.verdict}", kind="query",
              detail=first.stopped_by.first_line if first.stopped_by else None)
        if not first.temporary:
            return None, f"a new sender's first message is {first.verdict} at once", first
        self.lab.clock.advance(greylist.delay)
        retry = self._to_erin(sender, NORTHWIND_OUT)
        t.add(f"the same triplet retried {greylist.delay:g} s later: {retry.verdict}",
              kind="answer", rfc="RFC 6647")
        if retry.verdict == "accepted":
            return ("greylisting", "the first attempt of a new sender gets a temporary 451 "
                    "4.7.1, and the retry after the delay is accepted: greylisting, working "
                    "as designed (RFC 6647)", (first, retry))
        return "blocklisted", f"the retry is {retry.verdict} too", (first, retry)

    def _triage_8(self, t: TraceBuilder) -> tuple[str | None, str, Any]:
        sent = self._send_crm()
        evaluation = self._evaluation_for(sent)
        t.add(f"the CRM's message: {sent.verdict}", kind="query",
              detail=sent.stopped_by.first_line if sent.stopped_by else None)
        if evaluation is not None:
            t.add(f"Authentication-Results: {evaluation.header}", kind="answer")
        if sent.verdict == "accepted":
            return None, "the CRM's mail is accepted", sent
        stopped = sent.stopped_by.first_line if sent.stopped_by else ""
        if evaluation is not None and evaluation.dmarc_result == "fail":
            return ("dmarc-reject-unauthorised-sender",
                    "DMARC fails (neither SPF nor DKIM passes aligned with northwind.test) "
                    f"and northwind.test says p=reject: {stopped}", sent)
        return "blocklisted", stopped, sent
