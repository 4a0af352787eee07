"""What a receiver that trusts an ARC sealer may conclude when DMARC fails after
forwarding (RFC 8617 sections 1 and 7, RFC 9990's ``trusted_forwarder``).

ARC changes no verdict by itself: DMARC still fails when a forwarder's host is not in
the sender's SPF record and a list's changes broke the author's DKIM. What ARC adds is
evidence: a chain that validates proves which handlers added which sets, and each set's
ARC-Authentication-Results says what the authentication looked like when that handler
received the message. RFC 8617 leaves it to the receiver's local policy whether to
believe a sealer; a receiver that does (it knows the forwarder, or the list) may treat
the message as it would have been treated before forwarding, and says so in its DMARC
aggregate report with the override reason ``trusted_forwarder`` (RFC 9990).

:func:`trusted_sealer_verdict` spells that reasoning out for one message, as a
:class:`ARCTrustVerdict` with a trace, without changing anything: the MX role's DMARC
verdict and disposition stay what they are. ``evaluation.trusting_sealers(...)``
(:class:`~labsupport.auth.authres_evaluation.AuthEvaluation`) is the same for one of
the MX role's evaluations.

Introduced with the forwarder and the list (``labsupport.mail.aliases``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..core.results import Result, TraceBuilder
from .arc_results import ARCValidation
from .authres_model import AuthResults

RFC_LOCAL_POLICY = "RFC 8617 section 7"
RFC_OVERRIDE = "RFC 9990 (policy override trusted_forwarder)"

#: The DMARC aggregate report's override reason a trusting receiver gives (RFC 9990).
TRUSTED_FORWARDER = "trusted_forwarder"


@dataclass(frozen=True, kw_only=True)
class ARCTrustVerdict(Result):
    """What a receiver that trusts ``trusted`` would conclude about DMARC.

    ``verdict`` is that conclusion (``pass`` when a trusted sealer's recorded results
    said dmarc=pass, otherwise the DMARC verdict as evaluated); ``dmarc`` the DMARC
    verdict as evaluated, which stands; ``relied_on`` the instance whose results were
    believed and ``sealer`` who sealed it; ``earlier`` those results; ``override`` the
    reason a report would give (``trusted_forwarder``) when the conclusion differs from
    the evaluated verdict.
    """

    dmarc: str
    trusted: tuple[str, ...] = ()
    relied_on: int | None = None
    sealer: str | None = None
    earlier: AuthResults | None = None
    override: str | None = None

    @property
    def changed(self) -> bool:
        """True when trusting the sealer turns the DMARC verdict into a pass."""
        return self.override is not None

    def title(self) -> str:
        return f"Trusting {', '.join(self.trusted) or 'no sealer'}: DMARC would be {self.verdict}"


def _results_words(results: AuthResults | None) -> str:
    if results is None:
        return "(unreadable)"
    return " ".join(f"{r.method}={r.result}" for r in results.results) or "none"


def trusted_sealer_verdict(arc: ARCValidation | None, dmarc: str,
                           trusted: Iterable[str]) -> ARCTrustVerdict:
    """What a receiver that trusts the ARC sealers ``trusted`` (domains, the ARC-Seal's
    ``d=``) would conclude about a message whose DMARC verdict was ``dmarc`` and whose
    ARC chain validated as ``arc``.

    The conclusion is ``pass`` when DMARC passed anyway, or when the chain passes and a
    set sealed by a trusted domain recorded ``dmarc=pass`` (the oldest such set: the
    results nearest the author); otherwise it is the evaluated verdict, with the reason.
    Nothing is changed: the evaluated verdict stands (RFC 8617 leaves the choice to the
    receiver's local policy).
    """
    domains = tuple(d.strip().lower().rstrip(".") for d in trusted
                    if d and d.strip())
    t = TraceBuilder()
    t.add(f"DMARC as evaluated here: {dmarc}; sealers trusted: "
          f"{', '.join(domains) or 'none'}", rfc=RFC_LOCAL_POLICY)

    def done(verdict: str, summary: str, relied_on: int | None = None,
             sealer: str | None = None, earlier: AuthResults | None = None,
             override: str | None = None) -> ARCTrustVerdict:
        return ARCTrustVerdict(verdict=verdict, summary=summary, trace=t.freeze(),
                               dmarc=dmarc, trusted=domains, relied_on=relied_on,
                               sealer=sealer, earlier=earlier, override=override)

    if dmarc == "pass":
        t.add("DMARC passed here already: there is nothing for ARC to add", kind="ok")
        return done("pass", "DMARC passed here; ARC is not needed.")
    if arc is None or arc.verdict == "none":
        t.add("the message has no ARC chain: only this receiver's own checks count",
              kind="decision")
        return done(dmarc, f"No ARC chain: DMARC stays {dmarc}.")
    if arc.verdict != "pass":
        t.add(f"the ARC chain failed ({arc.summary.rstrip('.')}): a broken chain proves "
              "nothing about who recorded which results", kind="error")
        return done(dmarc, f"The ARC chain failed, so its earlier results cannot be believed: "
                           f"DMARC stays {dmarc}.")
    t.add(f"the ARC chain passes: {arc.instances} set(s) sealed by "
          f"{', '.join(arc.sealers)}, each seal verified", kind="ok")
    for found in arc.sets:
        sealer = (found.sealer or "").lower()
        results = found.authentication_results()
        t.add(f"set i={found.instance} sealed by {sealer or '?'} recorded: "
              f"{_results_words(results)}", kind="info")
        if sealer not in domains:
            with t.nested():
                t.add(f"{sealer or '?'} is not trusted: its results are not believed")
            continue
        recorded = results.find("dmarc") if results is not None else None
        if recorded is None or recorded.result != "pass":
            with t.nested():
                t.add(f"{sealer} is trusted, but it recorded "
                      f"dmarc={recorded.result if recorded else '(nothing)'}", kind="warning")
            continue
        later = [s.sealer or "?" for s in arc.sets if s.instance > found.instance
                 and (s.sealer or "").lower() not in domains]
        with t.nested():
            t.add(f"{sealer} is trusted and recorded dmarc=pass when it received the "
                  "message: a trusting receiver may treat it as having passed DMARC "
                  f"(override reason {TRUSTED_FORWARDER})", kind="ok", rfc=RFC_OVERRIDE)
            if later:
                t.add(f"later sets by {', '.join(later)} (not trusted) could not change these "
                      "results (the seals cover them), but could have changed the message",
                      kind="warning")
        return done("pass", f"DMARC failed here ({dmarc}), but {sealer} (trusted) sealed "
                            f"ARC set i={found.instance} recording "
                            f"{_results_words(results)}: a receiver trusting {sealer} would "
                            "treat the message as passing DMARC (local policy; the verdict "
                            "here is unchanged).",
                    relied_on=found.instance, sealer=sealer, earlier=results,
                    override=TRUSTED_FORWARDER)
    t.add("no trusted sealer recorded dmarc=pass", kind="decision")
    return done(dmarc, f"The ARC chain passes, but no trusted sealer recorded dmarc=pass: "
                       f"DMARC stays {dmarc}.")


__all__ = ["TRUSTED_FORWARDER", "ARCTrustVerdict", "trusted_sealer_verdict"]
