"""The troubleshooting lab: help-desk tickets, each a lab domain or server broken one way.

:class:`BugHunt` opens eight tickets on a running lab. Each ticket is a complaint in a
user's words about one organisation of the lab world, and behind it one realistic fault:

1. Fernhill School (``fernhill.test``): its MX names a host that does not exist.
2. Careless Ltd (``careless.test``): its SPF record needs more than 10 DNS lookups.
3. Brightside Bakery (``brightside.test``): its DKIM key record was cut at 255 characters.
4. Riverbank Credit Union (``riverbank.example``): its DMARC record has a typo.
5. Brightside's submission server (``smtp.brightside.test``): its certificate expired.
6. Riverbank's submission server (``smtp.riverbank.example``): the certificate is for
   another name.
7. Tiny shop's mail server greylists new senders (451 4.7.1, then accepts the retry):
   :mod:`labsupport.mail.greylist`, turned on for tinyshop.test.
8. Northwind Traders' new CRM service sends in Northwind's name from an address that
   neither SPF nor DKIM vouches for: DMARC ``p=reject`` refuses it (550 5.7.1).

The DNS faults are in the zone files (``data/zones/``) or published when the hunt opens;
the server faults are extra listeners on the lab's loop that present a broken certificate.
:meth:`BugHunt.reproduce` shows what the user saw; the lab's own tools (``lab.mx``,
``send_mail``, the SPF, DKIM and DMARC evaluators) find the cause; :meth:`BugHunt.triage`
runs those tools itself and names the cause it finds, which is what the notebook's
checks compare a student's diagnosis with. ``lab.reset()`` closes the hunt: the broken
listeners stop and the zones return to their files.

Introduced in ``notebooks/08-troubleshooting.ipynb``.
"""

from __future__ import annotations

import asyncio
import html
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder, html_table, text_table
from ..dns.mx import mx_hosts

if TYPE_CHECKING:
    from ..lab.lab import Lab
    from ..mail.smtp import Transcript

#: The causes a diagnosis may name: key -> what it means. Eight are behind the tickets;
#: the others are common guesses that the evidence rules out.
CAUSES: dict[str, str] = {
    "mx-host-missing": "the MX record names a host that does not exist in DNS",
    "mx-is-alias": "the MX record names an alias (CNAME) instead of a host",
    "spf-too-many-lookups": "the SPF record needs more than 10 DNS lookups: permerror",
    "spf-address-missing": "the sending host's address is not in the SPF record",
    "dkim-key-missing": "no DKIM key is published under the signature's selector",
    "dkim-key-truncated": "the DKIM key record in DNS is cut short, so the key is unusable",
    "dkim-body-changed": "the message was changed after signing (body hash mismatch)",
    "dmarc-record-typo": "the DMARC record has a typo, so receivers do not apply the policy "
                         "its owners meant",
    "dmarc-reject-unauthorised-sender": "a service sends in the domain's name without "
                                        "SPF or DKIM for that domain, and DMARC p=reject "
                                        "refuses its mail",
    "certificate-expired": "the server's certificate has expired",
    "certificate-wrong-name": "the server's certificate is for another host name",
    "certificate-untrusted": "the server's certificate is signed by an authority the "
                             "client does not trust",
    "greylisting": "the receiver defers the first attempt of an unknown sender (4xx) and "
                   "accepts the retry",
    "blocklisted": "the receiver refuses the sending address because it is on a blocklist",
    "mailbox-full": "the recipient's mailbox is full",
    "user-unknown": "the recipient address does not exist",
    "dns-server-down": "the domain's DNS server does not answer",
}

#: Tiny shop's own server (tinyshop.test, 198.51.100.90): its greylisting trusts it
#: (ticket 7).
TINYSHOP_TRUSTED = ("198.51.100.90",)
#: Northwind's outbound host, where the new customer of ticket 7 writes from.
NORTHWIND_OUT = {"ADDR": "192.0.2.10", "HELO": "out.northwind.test"}
#: The CRM service of ticket 8: an address of the documentation range with no DNS name.
CRM_CLIENT = {"ADDR": "203.0.113.150", "HELO": "mta7.crm-service.example"}
#: Where Brightside's newsletter comes from (out.brightside.test).
BRIGHTSIDE_OUT = {"ADDR": "198.51.100.232", "HELO": "out.brightside.test"}
#: The phisher of ticket 4.
PHISHER = {"ADDR": "203.0.113.66", "HELO": "out.phisher.example"}
#: The selector Brightside's newsletter is signed with.
BRIGHTSIDE_SELECTOR = "news2026"
#: How many characters of the key record the bakery's web-host form kept.
TRUNCATED_AT = 255
#: OpenSSL's verification codes (X509_V_ERR_*) that the TLS tickets turn on.
_X509_EXPIRED = 10
_X509_HOSTNAME_MISMATCH = 62


class TroubleshootError(LabError):
    """A ticket number or a hunt operation that does not exist."""


@dataclass(frozen=True)
class Ticket:
    """One help-desk ticket: who complains, about what, and (for the lab) which fault."""

    number: int
    reporter: str
    subject: str
    complaint: str
    domain: str
    tools: str
    cause: str
    fixable: bool = False

    def as_row(self) -> list[object]:
        return [self.number, self.reporter, self.subject, self.domain]


TICKETS: tuple[Ticket, ...] = (
    Ticket(1, "a parent at Fernhill School",
           "mail to the school bounces",
           "Since the holidays every message I send to office@fernhill.test comes back "
           "undelivered. The school's web site works fine.",
           "fernhill.test", "lab.mx(...), lab.dig(...)", "mx-host-missing", fixable=True),
    Ticket(2, "the IT manager of Careless Ltd",
           "our SPF 'does not work' since last week",
           "Campus University's postmaster says our mail shows spf=permerror. We only "
           "added one more service to our SPF record last week.",
           "careless.test", "spf.check_host(...) and its trace", "spf-too-many-lookups"),
    Ticket(3, "the owner of Brightside Bakery",
           "the newsletter's signature is 'broken'",
           "Our newsletter reaches customers, but Campus's postmaster tells us the DKIM "
           "signature does not verify. Our web host says signing is switched on and the "
           "key is published.",
           "brightside.test", "dkim.verify(...) and its trace, lab.dig(...)",
           "dkim-key-truncated", fixable=True),
    Ticket(4, "the mail team of Riverbank Credit Union",
           "phishing in our name still arrives",
           "We set DMARC to reject last spring. Members still find phishing mail 'from' "
           "security@riverbank.example in their inbox.",
           "riverbank.example", "dmarc.discover(...), the Authentication-Results",
           "dmarc-record-typo", fixable=True),
    Ticket(5, "a Brightside employee",
           "the mail program says the server is not safe",
           "Since Monday my mail program warns that the certificate of smtp.brightside.test "
           "is not valid when I send. Yesterday it still worked.",
           "smtp.brightside.test", "SMTPSession(..., implicit_tls=True) with verification",
           "certificate-expired"),
    Ticket(6, "a Riverbank employee",
           "sending fails after the move to the hosting company",
           "We moved our mail server to a hosting company. Now sending through "
           "smtp.riverbank.example fails with a certificate error.",
           "smtp.riverbank.example", "SMTPSession(..., implicit_tls=True) with verification",
           "certificate-wrong-name"),
    Ticket(7, "Erin at Tiny shop",
           "mail from new customers arrives late",
           "Mail from customers I know arrives at once, but the first message from a new "
           "customer reaches me minutes late. Is our mail server broken?",
           "tinyshop.test", "send_mail(...) to the MX role, more than once; the transcripts; "
           "lab.smtp.greylist", "greylisting"),
    Ticket(8, "Northwind's marketing team",
           "our CRM's offers bounce with 550 5.7.1",
           "Our new CRM service sends our offers as offers@northwind.test. Every one to "
           "Campus bounces with '550 5.7.1'. Is Campus blocking us?",
           "northwind.test", "send_mail(...) via the CRM's address; the DMARC trace",
           "dmarc-reject-unauthorised-sender", fixable=True),
)


def ticket(number: int) -> Ticket:
    """The ticket with this number (1 to 8)."""
    for item in TICKETS:
        if item.number == number:
            return item
    raise TroubleshootError(f"there is no ticket {number!r}: the tickets are numbered 1 "
                            f"to {len(TICKETS)}")


def cause_table() -> CauseTable:
    """The causes a diagnosis may name, as a table."""
    return CauseTable()


class CauseTable:
    """:data:`CAUSES` rendered as text and HTML."""

    def _rows(self) -> list[list[object]]:
        return [[key, meaning] for key, meaning in CAUSES.items()]

    def __str__(self) -> str:
        return text_table(["cause", "what it means"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["cause", "what it means"], self._rows(),
                          caption="Causes a diagnosis may name")


@dataclass(frozen=True, kw_only=True)
class Triage(Result):
    """What the lab's tools find behind one ticket.

    ``verdict`` is ``"broken"`` (``cause`` names what is wrong) or ``"fixed"``.
    """

    number: int
    cause: str | None = None
    evidence: Any = None

    @property
    def fixed(self) -> bool:
        return self.verdict == "fixed"

    def title(self) -> str:
        what = CAUSES.get(self.cause or "", "") if self.cause else "nothing wrong any more"
        return f"Ticket {self.number}: {self.verdict}" + (f" ({self.cause}: {what})"
                                                          if self.cause else "")


@dataclass(frozen=True, kw_only=True)
class Evidence(Result):
    """What the user of a ticket saw, reproduced in the lab (no diagnosis)."""

    number: int
    shown: str = ""

    def title(self) -> str:
        return f"Ticket {self.number}, as the user sees it"

    def text(self) -> str:
        return f"{self.title()}\n  {self.summary}\n\n{self.shown}"

    def _repr_html_(self) -> str:
        return (f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
                '<pre style="white-space:pre-wrap;font-family:monospace;font-size:90%">'
                f"{html.escape(self.shown)}</pre>")


def _from_mail(sent: Transcript) -> str:
    """The dialogue of ``sent`` from the MAIL command on (the transaction itself)."""
    lines = sent.dialogue().splitlines()
    start = next((i for i, line in enumerate(lines) if "MAIL FROM:" in line), 0)
    return "\n".join(lines[start:])


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


def _readable_part(message: Any) -> str:
    """The Subject and the first text/plain part of a message (a DSN's human part)."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            body = part.get_content()
            return f"Subject: {message.get('Subject', '')}\n\n{str(body).strip()}"
    return str(message)


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


@dataclass(frozen=True)
class TicketView:
    """A ticket shown in full."""

    ticket: Ticket

    def __str__(self) -> str:
        t = self.ticket
        return (f"Ticket {t.number} from {t.reporter}: {t.subject}\n  \"{t.complaint}\"\n"
                f"  Tools that help: {t.tools}")

    def _repr_html_(self) -> str:
        t = self.ticket
        return (f'<div style="border-left:4px solid #9f6f00;padding-left:8px">'
                f"<b>Ticket {t.number}</b> from {html.escape(t.reporter)}: "
                f"<em>{html.escape(t.subject)}</em><br>&ldquo;{html.escape(t.complaint)}"
                f"&rdquo;<br><small>Tools that help: <code>{html.escape(t.tools)}</code>"
                "</small></div>")


@dataclass(frozen=True)
class TriageTable:
    """Several triages as one table."""

    triages: tuple[Triage, ...]

    def _rows(self) -> list[list[object]]:
        return [[t.number, t.verdict, t.cause or "-", t.summary] for t in self.triages]

    def __str__(self) -> str:
        return text_table(["#", "state", "cause", "what the tools show"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["#", "state", "cause", "what the tools show"], self._rows(),
                          caption="What the lab's tools find")


# -- the picture --------------------------------------------------------------------------

#: The stages of a message's journey, in order, and the tickets whose fault sits there.
JOURNEY: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("DNS:\nthe MX", (1,)),
    ("connection\nand TLS", (5, 6)),
    ("SMTP\ndialogue", (7,)),
    ("SPF", (2,)),
    ("DKIM", (3,)),
    ("DMARC\npolicy", (4, 8)),
    ("mailbox", ()),
)


# -- exercise checks ----------------------------------------------------------------------

def _cause_key(value: Any) -> str:
    return str(value).strip().lower().replace("_", "-").replace(" ", "-")


def judge_diagnoses(answer: Any, hunt: BugHunt) -> Any:
    """Exercise: a cause from :data:`CAUSES` for each ticket, as ``{number: cause}``.

    Each answer is compared with what the lab's tools find behind the ticket
    (:meth:`BugHunt.triage`); a ticket the student already fixed counts with its
    original cause.
    """
    from .verdicts import Verdict, answer_of

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: give a cause for each ticket, e.g. "
                       "{1: 'mx-host-missing', ...}")
    if not isinstance(value, Mapping):
        return Verdict("wrong", "write the answer as a dict {ticket number: cause}, with "
                       "causes from troubleshoot.CAUSES")
    missing, wrong, unknown, right = [], [], [], []
    for item in hunt.tickets:
        said = value.get(item.number, value.get(str(item.number)))
        if said is None or said is Ellipsis:
            missing.append(item.number)
            continue
        key = _cause_key(said)
        if key not in CAUSES:
            unknown.append(f"ticket {item.number}: {said!r} is not one of the causes")
            continue
        found = hunt.triage(item.number)
        expected = found.cause or item.cause
        if key == expected:
            right.append(item.number)
        else:
            wrong.append(f"ticket {item.number}: not {key!r}. Hint: {_hint(item, key)}")
    if unknown or wrong:
        return Verdict("wrong", f"{len(right)} of {len(hunt.tickets)} right. "
                       + " ".join(unknown + wrong))
    if missing:
        return Verdict("unanswered", f"{len(right)} right so far; not answered yet: tickets "
                       f"{', '.join(map(str, missing))}")
    return Verdict("right", f"all {len(right)} diagnoses are right: each matches what the "
                   "lab's tools show.")


def _hint(item: Ticket, said: str) -> str:
    hints = {
        1: "what does lab.mx('fernhill.test') say about the host the MX names?",
        2: "read the SPF trace to its end: which limit stops it (RFC 7208 section 4.6.4)?",
        3: "dig the key record (news2026._domainkey.brightside.test) and compare its "
           "length with hunt.key_record",
        4: "read the record's p= tag letter by letter, and what dmarc.discover reports",
        5: "read the certificate verification message in the transcript",
        6: "compare the name the client asked for with the names in the certificate",
        7: "a 4xx is temporary: what happens on the retry?",
        8: "5.7.1 says only 'not authorized'; read the text and the DMARC result",
    }
    if said in ("blocklisted", "dns-server-down") and item.number in (7, 8):
        return hints[item.number] + " (no blocklist and no DNS failure appears anywhere)"
    return hints.get(item.number, "run the tools the ticket names")


def check_diagnoses(answer: Any, hunt: BugHunt) -> None:
    """Check cell for :func:`judge_diagnoses`."""
    from .verdicts import report

    report(judge_diagnoses(answer, hunt))


def judge_fixed(answer: Any, hunt: BugHunt, number: int) -> Any:
    """Exercise: fix ticket ``number`` in the running lab (the answer is the record or
    change made, any value: the lab is what is judged)."""
    from .verdicts import Verdict, answer_of

    item = ticket(number)
    if not item.fixable:
        raise TroubleshootError(f"ticket {number} is not one the lab lets you fix")
    given, _value = answer_of(answer)
    found = hunt.triage(number)
    if not given and not found.fixed:
        return Verdict("unanswered", f"not answered yet: fix ticket {number} in the running "
                       "lab")
    if found.fixed:
        return Verdict("right", f"ticket {number} is fixed: {found.summary}.")
    return Verdict("wrong", f"ticket {number} is still broken: {found.summary}. Hint: "
                   f"{_fix_hint(number)}")


def _fix_hint(number: int) -> str:
    return {
        1: "lab.zones.set('fernhill.test', 'MX', '10 mx.fernhill.test.')",
        3: "publish hunt.key_record whole: lab.zones.set(hunt.key_name, 'TXT', "
           "hunt.key_record) (the lab splits it into strings of 255)",
        4: "lab.zones.set('_dmarc.riverbank.example', 'TXT', 'v=DMARC1; p=reject; ...')",
        8: "authorise the CRM's address in northwind.test's SPF record "
           "(ip4:203.0.113.150) and keep the rest of the record",
    }[number]


def check_fixed(answer: Any, hunt: BugHunt, number: int) -> None:
    """Check cell for :func:`judge_fixed`."""
    from .verdicts import report

    report(judge_fixed(answer, hunt, number))


__all__ = ["BRIGHTSIDE_SELECTOR", "CAUSES", "JOURNEY", "TICKETS", "BugHunt",
           "CertificateView", "Evidence", "Ticket", "Triage", "TroubleshootError", "cause_table",
           "check_diagnoses", "check_fixed", "judge_diagnoses", "judge_fixed", "ticket"]
