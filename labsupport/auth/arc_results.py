"""What ARC gives back: a chain validated, a message sealed (RFC 8617).

* :class:`ARCValidation`, from :func:`labsupport.auth.arc_verify.validate_chain`: the
  chain validation status (``none``, ``pass`` or ``fail``, RFC 8617 section 5.2), the
  oldest-pass instance, one :class:`ARCSetResult` per instance (who sealed it, what
  ``cv=`` it claimed, whether its signatures verified, and the earlier results its
  ARC-Authentication-Results carries), and the trace of every step.
* :class:`ARCSealing`, from :func:`labsupport.auth.arc_sign.seal_traced`: the message
  with its new ARC set, and the trace of how the three fields were made.

Both render as text (``str(result)``) and as HTML in a notebook, like every lab result.

Introduced with the forwarder and the list (``labsupport.mail.aliases``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..core.results import Result, html_table, text_table
from .authres_model import AuthResults, AuthResultsError, _comment_text, _pvalue
from .authres_parse import parse_authres


@dataclass(frozen=True)
class ARCSetResult:
    """One ARC set as the validator saw it.

    ``sealer`` and ``selector`` are the ARC-Seal's ``d=`` and ``s=``; ``cv`` what it
    claims; ``seal`` and ``message_signature`` the outcome of checking its ARC-Seal and
    its ARC-Message-Signature (``pass``, ``fail`` or ``not checked``); ``results`` the
    value of its ARC-Authentication-Results (after ``i=N;``); ``sealed_at`` its ``t=``.
    """

    instance: int
    sealer: str | None
    selector: str | None
    cv: str | None
    signer: str | None
    seal: str = "not checked"
    message_signature: str = "not checked"
    results: str = ""
    sealed_at: int | None = None

    def authentication_results(self) -> AuthResults | None:
        """The ARC-Authentication-Results value read as Authentication-Results, or None
        when it cannot be read."""
        try:
            return parse_authres(self.results)
        except AuthResultsError:
            return None

    def as_row(self) -> list[object]:
        return [self.instance, self.sealer or "?", self.cv or "?", self.message_signature,
                self.seal, _short_results(self.results)]


def _short_results(text: str) -> str:
    """The results of an AAR without comments: ``spf=pass dkim=pass dmarc=pass``."""
    try:
        found = parse_authres(text)
    except AuthResultsError:
        return text[:60]
    return " ".join(f"{r.method}={r.result}" for r in found.results) or "none"


_SET_HEADERS = ["i", "sealed by (d=)", "cv", "AMS", "AS", "results it recorded (AAR)"]


@dataclass(frozen=True, kw_only=True)
class ARCValidation(Result):
    """The validation of a message's ARC chain (RFC 8617 section 5.2).

    ``verdict`` is the chain validation status: ``none`` (no ARC sets), ``pass`` or
    ``fail``; ``instances`` the number of sets (N); ``oldest_pass`` the lowest
    instance from which every ARC-Message-Signature still verifies, 0 when all of them
    do (None when not computed: the chain failed first); ``sets`` one
    :class:`ARCSetResult` per instance, oldest first; ``failed_instance`` the set that
    made the chain fail, when one did.
    """

    instances: int = 0
    oldest_pass: int | None = None
    sets: tuple[ARCSetResult, ...] = ()
    failed_instance: int | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def sealers(self) -> tuple[str, ...]:
        """Who sealed each set (the ARC-Seal's ``d=``), oldest first."""
        return tuple(s.sealer or "?" for s in self.sets)

    def set(self, instance: int) -> ARCSetResult:
        """The set with instance number ``instance`` (1 is the oldest)."""
        for found in self.sets:
            if found.instance == instance:
                return found
        raise KeyError(f"the chain has no ARC set i={instance} (it has "
                       f"{', '.join(str(s.instance) for s in self.sets) or 'none'})")

    def results_of(self, instance: int) -> AuthResults | None:
        """What the handler of ``instance`` recorded (its ARC-Authentication-Results),
        parsed; None when it cannot be read."""
        return self.set(instance).authentication_results()

    @property
    def earliest_results(self) -> AuthResults | None:
        """The results the first handler recorded (instance 1), or None without sets."""
        return self.results_of(1) if self.sets else None

    def title(self) -> str:
        sets = f" ({self.instances} set{'s' if self.instances != 1 else ''})" \
            if self.instances else ""
        return f"ARC chain: {self.verdict}{sets}"

    def authres(self, remote_ip: str | None = None) -> str:
        """The ``arc=`` resinfo for Authentication-Results: the status, a short comment,
        ``header.oldest-pass`` and ``smtp.remote-ip`` (the properties RFC 8617
        registers for the ``arc`` method)."""
        parts = [f"arc={self.verdict}"]
        if self.verdict == "pass":
            parts.append(f"({self.instances} ARC set{'s' if self.instances != 1 else ''} "
                         f"verified, sealed by {_comment_text(', '.join(self.sealers))})")
        elif self.verdict == "fail":
            parts.append(f"({_comment_text(self.summary)})")
        if self.verdict == "pass" and self.oldest_pass is not None:
            parts.append(f"header.oldest-pass={self.oldest_pass}")
        if remote_ip and self.verdict != "none":
            parts.append(f"smtp.remote-ip={_pvalue(remote_ip)}")
        return " ".join(parts)

    def table(self) -> str:
        """The sets as a plain-text table, oldest first."""
        return text_table(_SET_HEADERS, [s.as_row() for s in self.sets])

    def text(self) -> str:
        base = super().text()
        if not self.sets:
            return base
        head, sep, rest = base.partition("\nTrace:")
        return head + "\n" + self.table() + (sep + rest if sep else "")

    def _repr_html_(self) -> str:
        table = html_table(_SET_HEADERS, [s.as_row() for s in self.sets],
                           caption="ARC sets, oldest first") if self.sets else ""
        return (f"<div>{table}{super()._repr_html_()}</div>" if table
                else super()._repr_html_())


@dataclass(frozen=True, kw_only=True)
class ARCSealing(Result):
    """A message sealed with a new ARC set (RFC 8617 section 5.1), or why it was not.

    ``verdict`` is ``sealed``, ``not sealed`` (the chain already failed, so a sealer
    adds nothing, section 5.1) or ``refused`` (a request that cannot be honoured, with
    the reason). ``sealed_message`` is the message with the three new fields on top;
    ``arc_set`` the three fields alone (AS, AMS, AAR, top to bottom); ``chain`` the
    validation that decided ``cv`` when the sealer ran one.
    """

    domain: str | None = None
    selector: str | None = None
    instance: int | None = None
    cv: str | None = None
    sealed_message: bytes | None = None
    arc_set: bytes | None = None
    aar: bytes | None = None
    message_signature: bytes | None = None
    seal: bytes | None = None
    signed_headers: tuple[str, ...] = ()
    chain: ARCValidation | None = None

    @property
    def sealed(self) -> bool:
        return self.sealed_message is not None

    def title(self) -> str:
        if self.instance is not None and self.verdict == "sealed":
            return f"ARC sealing: i={self.instance} cv={self.cv} by {self.domain}"
        return f"ARC sealing: {self.verdict}"

    def _repr_html_(self) -> str:
        fields = ""
        if self.arc_set is not None:
            fields = ('<pre style="font-size:85%">'
                      + html.escape(self.arc_set.decode("utf-8", "replace")) + "</pre>")
        return f"<div>{super()._repr_html_()}{fields}</div>"


__all__ = ["ARCSealing", "ARCSetResult", "ARCValidation"]
