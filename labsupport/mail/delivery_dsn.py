"""The bounce message: the delivery status notification (RFC 3464) the queue returns.

:class:`FailedRecipient` (one recipient a DSN reports) and :func:`build_dsn`, which
writes the ``multipart/report`` message from MAILER-DAEMON, with the helpers it needs:
the RFC 3463 status of a reply, the reporting MTA's name, RFC 5322 dates and readable
text parts. Part of :mod:`labsupport.mail.delivery`.
"""

from __future__ import annotations

import email.charset
import email.utils
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from .delivery_items import QueueItem

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


# -- the bounce message ------------------------------------------------------------------

@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a DSN reports: its RFC 3463 status and the diagnostic (``smtp; <the
    server's reply>``, or ``X-Lab; ...`` when the lab itself decided)."""

    recipient: str
    status: str
    diagnostic: str
    remote_mta: str | None
    expired: bool = False


def build_dsn(item: QueueItem, failures: list[FailedRecipient], raw: bytes, *, now: float,
              reporting_mta: str) -> bytes:
    """A delivery status notification (RFC 3464) for the ``failures`` of ``item``.

    ``multipart/report; report-type=delivery-status`` (RFC 6522) with three parts: a
    human-readable explanation, the ``message/delivery-status`` fields (per message:
    Reporting-MTA, Arrival-Date; per recipient: Final-Recipient, Action: failed, Status,
    Remote-MTA, Diagnostic-Code, Last-Attempt-Date) and the original headers as
    ``text/rfc822-headers``. It is from MAILER-DAEMON and is sent with an empty envelope
    sender, so that it never causes a bounce itself (RFC 5321 section 4.5.5).
    """
    when = _rfc5322_date(now)
    lines = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. Its headers are attached below.",
        "",
    ]
    for f in failures:
        where = f" (host {f.remote_mta} said)" if f.remote_mta else ""
        why = f.diagnostic.partition(";")[2].strip()
        note = " The message was too old to keep trying." if f.expired else ""
        lines.append(f"<{f.recipient}>{where}: {why}{note}")
    human = _text_part("\n".join(lines) + "\n", "plain")
    human["Content-Description"] = "Notification"

    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {reporting_mta}"
    per_message["X-Lab-Queue-ID"] = item.id
    per_message["Arrival-Date"] = _rfc5322_date(item.created_at)
    blocks = [per_message]
    for f in failures:
        block = Message()
        block["Final-Recipient"] = f"rfc822; {f.recipient}"
        block["Action"] = "failed"
        block["Status"] = f.status
        if f.remote_mta:
            block["Remote-MTA"] = f"dns; {f.remote_mta}"
        block["Diagnostic-Code"] = f.diagnostic
        block["Last-Attempt-Date"] = when
        blocks.append(block)
    status = MIMEBase("message", "delivery-status")
    del status["MIME-Version"]
    status.set_payload(blocks)  # type: ignore[arg-type]  # a list of header blocks
    status["Content-Description"] = "Delivery report"

    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    headers = _text_part(head.decode("utf-8", "replace").replace("\r\n", "\n") + "\n",
                         "rfc822-headers")
    headers["Content-Description"] = "Undelivered Message Headers"

    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = item.mail_from
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = when
    report["Message-ID"] = f"<{item.id}.{secrets.token_hex(4)}@{reporting_mta}>"
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834: no vacation replies to this
    for part in (human, status, headers):
        del part["MIME-Version"]
        report.attach(part)
    return report.as_bytes(policy=report.policy.clone(linesep="\r\n"))


# -- small helpers -----------------------------------------------------------------------


def _text_part(text: str, subtype: str) -> MIMEText:
    """A text part readable in the raw source: 7bit ASCII, else quoted-printable UTF-8."""
    if text.isascii():
        return MIMEText(text, subtype, "us-ascii")
    charset = email.charset.Charset("utf-8")
    charset.body_encoding = email.charset.QP
    return MIMEText(text, subtype, charset)  # type: ignore[arg-type]


def _reporting_mta(item: QueueItem) -> str:
    return f"out.{item.sender_domain}" if item.sender_domain else "out.lab.test"


def _status_of(reply: str) -> str:
    """The RFC 3463 status of a reply: its enhanced code, else X.0.0 from its class."""
    code, _, text = reply.partition(" ")
    found = _ENHANCED.match(text)
    if found:
        return ".".join(found.groups())
    return f"{code[:1]}.0.0" if code[:1] in ("4", "5") else "5.0.0"


def _rfc5322_date(ts: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(ts, tz=UTC))
