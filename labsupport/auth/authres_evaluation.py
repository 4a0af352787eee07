"""Authentication-Results at the MX role: the checks run on every message, what was found
and what was done with it (RFC 7208, RFC 6376, RFC 9989, RFC 8617 and RFC 8601).

:func:`authenticate` checks SPF, every DKIM signature, then DMARC and the ARC chain, as
the lab's MX role does on each message it receives, and writes the one
Authentication-Results value for them. The answer is an :class:`AuthEvaluation`: the
results, the header and the disposition DMARC asks for, with the action taken (INBOX,
Junk, or a rejection). The MX role keeps the latest ones in an :class:`EvaluationLog`
(``lab.smtp.evaluations``).

ARC never changes the DMARC verdict here (RFC 8617 leaves that to the receiver's local
policy): :meth:`AuthEvaluation.trusting_sealers` says what a receiver that trusts the
forwarder or the list would conclude instead.
"""

from __future__ import annotations

import collections
import email.parser
import email.policy
import html
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..core.results import html_table, text_table
from .authres_format import format_authres
from .authres_model import LAB_AUTHSERV_ID, AuthResults
from .authres_parse import parse_authres

if TYPE_CHECKING:
    from .arc_results import ARCValidation
    from .arc_trust import ARCTrustVerdict
    from .dkim import DKIMVerification
    from .spf import SPFResult

#: What the MX role does for each DMARC disposition (RFC 9989 section 5.8 leaves the
#: action to the receiver; these are the common ones).
DISPOSITION_ACTIONS = {"none": "INBOX", "quarantine": "Junk", "reject": "rejected (550 5.7.1)"}

#: How many evaluations the MX role keeps (``lab.smtp.evaluations``).
MAX_EVALUATIONS = 2000

# -- what the MX role does -----------------------------------------------------------------


@dataclass(frozen=True)
class AuthEvaluation:
    """What the MX role found out about one message, and the header it wrote.

    ``spf`` is the :class:`~labsupport.auth.spf.SPFResult` (client address, MAIL FROM, HELO),
    ``dkim`` the :class:`~labsupport.auth.dkim.DKIMVerification` of every signature,
    ``dmarc`` the :class:`~labsupport.auth.dmarc.DMARCResult` (None when DMARC was not
    evaluated), ``arc`` the :class:`~labsupport.auth.arc_results.ARCValidation` of the
    message's ARC chain (None when not checked); ``header`` is the
    Authentication-Results value stamped on the stored message, and :attr:`action` what
    the MX role did with it.
    """

    time: float
    client_ip: str
    helo: str | None
    mail_from: str
    recipients: tuple[str, ...]
    message_id: str | None
    spf: SPFResult | None
    dkim: DKIMVerification | None
    header: str
    authserv_id: str = LAB_AUTHSERV_ID
    queue_id: str | None = None
    subject: str | None = field(default=None, repr=False)
    dmarc: Any = None
    #: Why the MX role did not apply the policy DMARC asked for (RFC 9990's
    #: ``local_policy`` override), or None.
    policy_override: str | None = None
    #: The ARC chain validation (RFC 8617 section 5.2), or None when not checked.
    arc: ARCValidation | None = None

    @property
    def arc_result(self) -> str:
        """The ARC chain validation status (``none``, ``pass``, ``fail``); ``none``
        when ARC was not checked."""
        return self.arc.verdict if self.arc is not None else "none"

    @property
    def arc_earlier_results(self) -> AuthResults | None:
        """What the first handler that sealed the message recorded (the
        ARC-Authentication-Results of instance 1), when the chain passes; else None."""
        if self.arc is None or not self.arc.passed:
            return None
        return self.arc.earliest_results

    def trusting_sealers(self, *domains: str) -> ARCTrustVerdict:
        """What a receiver that trusts the ARC sealers ``domains`` (``"alumni.example"``)
        would conclude about DMARC for this message, with the reasoning in a trace
        (:func:`~labsupport.auth.arc_trust.trusted_sealer_verdict`). The MX role's own
        DMARC verdict and action stay as they are."""
        from .arc_trust import trusted_sealer_verdict

        return trusted_sealer_verdict(self.arc, self.dmarc_result, domains)

    @property
    def dmarc_result(self) -> str:
        """The DMARC verdict (``pass``, ``fail``, ``none``...), ``none`` if not evaluated."""
        return str(self.dmarc.verdict) if self.dmarc is not None else "none"

    @property
    def requested_disposition(self) -> str:
        """What the From domain's DMARC policy asks for this message: ``none``,
        ``quarantine`` or ``reject`` (``none`` when DMARC was not evaluated)."""
        if self.dmarc is None:
            return "none"
        return str(getattr(self.dmarc, "disposition", "none") or "none")

    @property
    def disposition(self) -> str:
        """The disposition applied: the requested one, or ``none`` when a local policy
        overrode it (:attr:`policy_override`)."""
        return "none" if self.policy_override else self.requested_disposition

    @property
    def dmarc_reasons(self) -> tuple[tuple[str, str | None], ...]:
        """The policy override reasons an aggregate report gives (RFC 9990)."""
        return (("local_policy", self.policy_override),) if self.policy_override else ()

    @property
    def action(self) -> str:
        """What the MX role does with the message: ``rejected (550 5.7.1)``, ``Junk``
        (quarantine) or ``INBOX``."""
        return DISPOSITION_ACTIONS.get(self.disposition, "INBOX")

    @property
    def results(self) -> AuthResults:
        """The header, parsed."""
        return parse_authres(self.header)

    @property
    def spf_result(self) -> str:
        return self.spf.verdict if self.spf is not None else "none"

    @property
    def dkim_results(self) -> tuple[str, ...]:
        return self.dkim.results if self.dkim is not None else ()

    def as_row(self) -> list[object]:
        stamp = datetime.fromtimestamp(self.time, tz=UTC).strftime("%H:%M:%S")
        dkim = ", ".join(f"{s.verdict} ({s.domain or '?'})" for s in self.dkim.signatures) \
            if self.dkim is not None and self.dkim.signatures else "none"
        return [stamp, self.client_ip, self.mail_from or "<>",
                ", ".join(self.recipients), self.spf_result, dkim, self.dmarc_result,
                self.action]

    def text(self) -> str:
        lines = [f"message {self.message_id or '(no Message-ID)'} from {self.client_ip}, "
                 f"MAIL FROM <{self.mail_from}> to {', '.join(self.recipients)}",
                 f"Authentication-Results: {self.header}"]
        if self.spf is not None:
            lines.append("  SPF: " + self.spf.summary)
        if self.dkim is not None:
            lines.append("  DKIM: " + self.dkim.summary)
        if self.dmarc is not None:
            lines.append(f"  DMARC: {self.dmarc.summary} -> {self.action}")
        if self.arc is not None:
            lines.append("  ARC: " + self.arc.summary)
        if self.policy_override:
            lines.append(f"  policy not applied: {self.policy_override}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        parts = [f"<p><b>Authentication-Results:</b> <code>{html.escape(self.header)}</code></p>"]
        if self.spf is not None:
            parts.append(f"<details><summary>SPF: {html.escape(self.spf.verdict)}</summary>"
                         f"{self.spf._repr_html_()}</details>")
        if self.dkim is not None:
            parts.append(f"<details><summary>DKIM: {html.escape(self.dkim.verdict)}</summary>"
                         f"{self.dkim._repr_html_()}</details>")
        if self.dmarc is not None:
            parts.append(f"<details><summary>DMARC: {html.escape(self.dmarc_result)}, "
                         f"{html.escape(self.action)}</summary>"
                         f"{self.dmarc._repr_html_()}</details>")
        if self.arc is not None:
            parts.append(f"<details><summary>ARC: {html.escape(self.arc.verdict)}</summary>"
                         f"{self.arc._repr_html_()}</details>")
        return "".join(parts)


class EvaluationLog:
    """The MX role's latest evaluations (``lab.smtp.evaluations``), newest last, at most
    ``maxlen``; ``lab.reset()`` empties it. Thread-safe; indexable like a list."""

    HEADERS = ["time (UTC)", "client", "MAIL FROM", "recipients", "SPF", "DKIM", "DMARC",
               "action"]

    def __init__(self, maxlen: int = MAX_EVALUATIONS) -> None:
        self._items: collections.deque[AuthEvaluation] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def append(self, evaluation: AuthEvaluation) -> None:
        with self._lock:
            self._items.append(evaluation)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def all(self) -> list[AuthEvaluation]:
        with self._lock:
            return list(self._items)

    def last(self) -> AuthEvaluation | None:
        """The newest evaluation, or None."""
        with self._lock:
            return self._items[-1] if self._items else None

    def for_recipient(self, address: str) -> list[AuthEvaluation]:
        """The evaluations of messages that went to ``address``, oldest first."""
        wanted = address.lower()
        return [e for e in self.all() if wanted in (r.lower() for r in e.recipients)]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[AuthEvaluation]:
        return iter(self.all())

    def __getitem__(self, index: int) -> AuthEvaluation:
        return self.all()[index]

    def __bool__(self) -> bool:
        return bool(self._items)

    def __str__(self) -> str:
        return text_table(self.HEADERS, [e.as_row() for e in self.all()[-20:]])

    def _repr_html_(self) -> str:
        return html_table(self.HEADERS, [e.as_row() for e in self.all()[-20:]],
                          caption="MX role: SPF, DKIM and DMARC of the latest messages "
                                  "(last 20)")


def _header_value(raw: bytes, name: str) -> str | None:
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    value = parsed.get(name)
    return " ".join(str(value).split()) if value is not None else None


def authenticate(message: bytes, *, client_ip: str, mail_from: str, helo: str | None,
                 resolver: Any, authserv_id: str = LAB_AUTHSERV_ID,
                 recipients: Iterable[str] = (), now: Any = None,
                 queue_id: str | None = None, dmarc: bool = True,
                 dmarc_method: str = "treewalk", arc: bool = True) -> AuthEvaluation:
    """Check SPF (RFC 7208, the MAIL FROM identity, or postmaster@HELO for ``<>``),
    every DKIM signature (RFC 6376) of ``message``, then DMARC (RFC 9989, with
    ``dmarc_method``: the tree walk, or ``"psl"`` as RFC 7489 did) and the ARC chain
    (RFC 8617 section 5.2) as the MX role does, and build the one
    Authentication-Results value for them (``dmarc=False``: no DMARC; ``arc=False``: no
    ARC). The ARC result of a message that carries ARC sets is reported (``arc=pass`` or
    ``arc=fail``, with ``header.oldest-pass``; a message without any gets no ``arc=``)
    and kept on the evaluation either way; it never changes the DMARC verdict.

    ``resolver`` follows dnspython's ``Resolver.resolve`` contract; the MX role gives
    the lab's in-memory zones (``lab.zones``), never a resolver that asks the lab's DNS
    server over UDP, which shares its event loop. ``now`` is the time for DKIM's
    ``x=`` and SPF's ``%{t}`` (a :class:`~labsupport.core.clock.LabClock`, seconds or None).
    """
    from .dkim import verify
    from .spf import SPFArgumentError, spf_verdict

    if now is None:
        seconds = time.time()
    elif isinstance(now, datetime):
        seconds = now.timestamp()
    elif isinstance(now, int | float):
        seconds = float(now)
    else:
        seconds = float(now.time())  # a LabClock
    try:
        spf: SPFResult | None = spf_verdict(client_ip, mail_from, helo or "", resolver,
                                            receiver=authserv_id, timestamp=int(seconds))
    except SPFArgumentError:
        spf = None  # no address to check (a client address the lab cannot read)
    dkim = verify(message, resolver, now=seconds)
    dmarc_result: Any = None
    extra: list[str] = []
    if dmarc:
        from .dmarc import evaluate

        dmarc_result = evaluate(message, mail_from=mail_from, spf=spf, dkim=dkim,
                                resolver=resolver, method=dmarc_method)
        extra.append(dmarc_result.authres())
    arc_result: ARCValidation | None = None
    if arc:
        from .arc_verify import validate_chain

        arc_result = validate_chain(message, resolver)
        if arc_result.verdict != "none":  # a message without ARC sets: nothing to report
            extra.append(arc_result.authres(client_ip))
    return AuthEvaluation(
        time=seconds, client_ip=client_ip, helo=helo, mail_from=mail_from,
        recipients=tuple(recipients), message_id=_header_value(message, "Message-ID"),
        spf=spf, dkim=dkim, header=format_authres(authserv_id, spf, dkim, extra=extra),
        authserv_id=authserv_id, queue_id=queue_id,
        subject=_header_value(message, "Subject"), dmarc=dmarc_result, arc=arc_result)


