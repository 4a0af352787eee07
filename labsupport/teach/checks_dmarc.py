"""Exercise checks of ``notebooks/06-dmarc.ipynb`` and their helpers: scratch zones for
DMARC records, :func:`alignment_of` (the DMARC result for given identifiers and modes),
the pairs that align in relaxed mode (:data:`DMARC_PAIRS`) and a record with its own
policy for subdomains (:data:`DMARC_RECORD_CASES`). Part of :mod:`labsupport.teach.checks`.
"""

from __future__ import annotations

from typing import Any

from ..dns.zone import ZoneSet
from .checks_core import _letters
from .verdicts import Verdict, answer_of, report

# -- notebooks/06-dmarc.ipynb --------------------------------------------------------------


def dmarc_scratch_zones(zones: ZoneSet) -> ZoneSet:
    """An empty root zone plus a copy of every zone of ``zones`` as they stand now: DMARC
    records can be tried there for any name, and the lab's own zones never change. The
    copy's ``reset()`` puts it back to this snapshot."""
    scratch = ZoneSet.empty()
    for origin in zones.origins:
        if origin.rstrip(".") == "":
            continue
        scratch.load_text(zones.zone_text(origin), origin)
    return scratch


def _with_modes(record: str, aspf: str, adkim: str) -> str:
    parts = [p.strip() for p in record.split(";") if p.strip()
             and p.split("=")[0].strip().lower() not in ("aspf", "adkim")]
    return "; ".join([*parts, f"aspf={aspf}", f"adkim={adkim}"])


def alignment_of(from_domain: str, *, mail_from_domain: str | None, dkim_domain: str | None,
                 zones: ZoneSet, aspf: str = "r", adkim: str = "r", spf_result: str = "pass",
                 dkim_result: str = "pass", method: str = "treewalk",
                 scratch: ZoneSet | None = None) -> Any:
    """The DMARC result (:class:`labsupport.auth.dmarc.DMARCResult`) for a message
    ``From: someone@<from_domain>`` whose SPF result for ``mail_from_domain`` and DKIM
    result for ``d=dkim_domain`` are given (None: no such identifier), with ``aspf`` and
    ``adkim`` (``"r"`` or ``"s"``) in force. The record that applies to the From domain
    in ``zones`` gets those modes (in a scratch copy: ``zones`` never change); a From
    domain without a record is given ``v=DMARC1; p=reject`` at its own name. No network:
    :func:`labsupport.auth.dmarc.evaluate` asks the in-memory zones."""
    from ..auth.dkim import DKIMResult, DKIMVerification
    from ..auth.dmarc import discover, evaluate
    from ..auth.spf import SPFResult

    author = from_domain.strip().rstrip(".").lower()
    scratch = scratch if scratch is not None else dmarc_scratch_zones(zones)
    scratch.reset()
    found = discover(author, scratch, method=method)
    where = found.record_domain if found.record is not None else author
    text = found.record.text if found.record is not None else "v=DMARC1; p=reject"
    scratch.set(f"_dmarc.{where}", "TXT", _with_modes(text, aspf, adkim))
    spf = None
    if mail_from_domain:
        domain = mail_from_domain.strip().rstrip(".").lower()
        spf = SPFResult(verdict=spf_result, summary=f"SPF {spf_result} (given)",
                        ip="192.0.2.1", domain=domain, sender=f"bounce@{domain}")
    dkim = None
    if dkim_domain:
        d = dkim_domain.strip().rstrip(".").lower()
        sig = DKIMResult(verdict=dkim_result, summary=f"DKIM {dkim_result} (given)",
                         index=0, domain=d, selector="s1")
        dkim = DKIMVerification(verdict=dkim_result, summary="given", signatures=(sig,))
    message = (f"From: someone@{author}\r\nTo: bob@northwind.test\r\nSubject: alignment\r\n"
               f"\r\nHello.\r\n")
    return evaluate(message, mail_from=f"bounce@{mail_from_domain or author}", spf=spf,
                    dkim=dkim, resolver=scratch, method=method)


#: The pairs of the exercise "which align in relaxed mode?": letter -> (From domain,
#: the domain of an identifier that passed, SPF's MAIL FROM or DKIM's d=).
DMARC_PAIRS: dict[str, tuple[str, str]] = {
    "a": ("northwind.test", "northwind.test"),
    "b": ("billing.northwind.test", "northwind.test"),
    "c": ("northwind.test", "mailcloud.example"),
    "d": ("campus.test", "lists.campus.test"),
    "e": ("news.campus.test", "mail.campus.test"),
    "f": ("northwind.test", "northwind.test.phisher.example"),
    "g": ("campus.test", "test"),
}


def relaxed_pairs(zones: ZoneSet) -> set[str]:
    """The letters of :data:`DMARC_PAIRS` that align in relaxed mode, computed by
    :func:`alignment_of` (a passing DKIM ``d=``) on the lab's zones."""
    scratch = dmarc_scratch_zones(zones)
    return {letter for letter, (author, ident) in DMARC_PAIRS.items()
            if alignment_of(author, mail_from_domain=None, dkim_domain=ident, zones=zones,
                            scratch=scratch).dkim_aligned}


def judge_relaxed_pairs(answer: Any, zones: ZoneSet) -> Verdict:
    """Exercise: the letters of :data:`DMARC_PAIRS` whose two domains align in relaxed
    mode, as the DNS Tree Walk on ``zones`` (the lab's) finds them."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: give the letters of the pairs that "
                       "align in relaxed mode, e.g. {'a', 'c'}.")
    said = _letters(value)
    if not said:
        return Verdict("wrong", "the answer should be letters, such as {'a', 'c'} or 'ac'.")
    unknown = sorted(said - set(DMARC_PAIRS))
    if unknown:
        return Verdict("wrong", f"{', '.join(map(repr, unknown))} is not one of the pairs "
                       f"({', '.join(DMARC_PAIRS)}).")
    expected = relaxed_pairs(zones)
    if said == expected:
        return Verdict("right", f"right: {', '.join(sorted(expected))} align. Relaxed mode "
                       "compares Organizational Domains, which the tree walk finds by the "
                       "DMARC records on the way up; a look-alike name elsewhere never "
                       "aligns.")
    wrong_in = sorted(said - expected)
    missing = sorted(expected - said)
    parts = []
    if wrong_in:
        parts.append("these do not align: " + ", ".join(
            f"({k}) {DMARC_PAIRS[k][0]} / {DMARC_PAIRS[k][1]}" for k in wrong_in))
    if missing:
        parts.append(f"{len(missing)} aligned pair(s) are missing")
    return Verdict("wrong", "not quite: " + "; ".join(parts) + ". Hint: find each domain's "
                   "Organizational Domain with dmarc.organizational_domain(name, lab.zones) "
                   "and compare, or try the pair in the alignment explorer.")


def check_relaxed_pairs(answer: Any, zones: ZoneSet) -> None:
    """Check cell for :func:`judge_relaxed_pairs`."""
    report(judge_relaxed_pairs(answer, zones))


#: What the record exercise tries, under ``campus.test``: (From domain, what it is, the
#: disposition a failing message must get).
DMARC_RECORD_CASES = (
    ("campus.test", "the domain itself", "quarantine"),
    ("lists.campus.test", "an existing subdomain", "reject"),
    ("nosuch.campus.test", "a subdomain that does not exist", "reject"),
)


def judge_subdomain_record(answer: Any, zones: ZoneSet, domain: str = "campus.test") -> Verdict:
    """Exercise: a DMARC record asking for quarantine for ``domain`` itself and reject for
    every subdomain (existing or not). It is published at ``_dmarc.<domain>`` in a scratch
    copy of ``zones``, and a forged message from each case of :data:`DMARC_RECORD_CASES`
    is evaluated (no aligned identifier): each must get the disposition asked for."""
    from ..auth.dmarc import DMARCRecordError, evaluate, parse_record

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: write the record as a string, "
                       "starting with v=DMARC1.")
    if not isinstance(value, str):
        return Verdict("wrong", f"the record should be a string, not a {type(value).__name__}.")
    try:
        record = parse_record(value)
    except DMARCRecordError as exc:
        return Verdict("wrong", str(exc))
    if record.problems:
        return Verdict("wrong", "the record has problems: " + "; ".join(record.problems))
    scratch = dmarc_scratch_zones(zones)
    scratch.set(f"_dmarc.{domain}", "TXT", value.strip())
    got = []
    for name, what, wanted in DMARC_RECORD_CASES:
        name = name.replace("campus.test", domain)
        result = evaluate(f"From: forger@{name}\r\nSubject: x\r\n\r\nx\r\n",
                          mail_from="mallory@phisher.example", spf=None, dkim=None,
                          resolver=scratch)
        got.append((name, what, wanted, result.disposition, result.policy))
    bad = [g for g in got if g[2] != g[3]]
    if not bad:
        return Verdict("right", "right: " + "; ".join(f"{n} ({w}): {d} by {t}="
                                                      for n, w, _e, d, t in got)
                       + (" (np= absent: sp= covers names that do not exist too)"
                          if record.np is None else ""))
    hints = "; ".join(f"a forgery from {n} ({w}) gets {d}, not {e}" for n, w, e, d, _t in bad)
    tip = " p= is the domain's own policy, sp= its subdomains', np= non-existent names'."
    if record.testing:
        tip += " t=y (testing mode) lowers every policy by one step."
    return Verdict("wrong", f"not yet: {hints}.{tip}")


def check_subdomain_record(answer: Any, zones: ZoneSet, domain: str = "campus.test") -> None:
    """Check cell for :func:`judge_subdomain_record`."""
    report(judge_subdomain_record(answer, zones, domain))
