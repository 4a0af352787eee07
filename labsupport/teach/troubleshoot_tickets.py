"""The troubleshooting lab's tickets: the causes a diagnosis may name, the lab world's cast
(hosts, selector), the eight help-desk tickets, and the journey stages they sit at.

Part of :mod:`labsupport.teach.troubleshoot`, which re-exports these names.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..core.errors import LabError
from ..core.results import html_table, text_table

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
