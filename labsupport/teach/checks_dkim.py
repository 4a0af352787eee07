"""Exercise checks of ``notebooks/05-dkim.ipynb``: the changes a signature survives under
relaxed canonicalization but not simple (:data:`DKIM_CHANGES`, :func:`dkim_survival`),
and a key rotation to a new selector. Part of :mod:`labsupport.teach.checks`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..dns.mx import ResolverLike
from ..dns.zone import ZoneSet
from .checks_core import _dkim, _letters
from .verdicts import Verdict, answer_of, report

# -- notebooks/05-dkim.ipynb ---------------------------------------------------------------

# Imported here so that ``labsupport.auth.dkim`` is there after ``import labsupport``.

#: The message the DKIM exercises sign (Northwind's lab key) before changing it.
DKIM_EXERCISE_MESSAGE = (
    b"From: Alice Adams <alice@northwind.test>\r\n"
    b"To: Bob <bob@northwind.test>\r\n"
    b"Subject: Quarterly figures\r\n"
    b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <exercise@northwind.test>\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"the figures are attached.\r\n"
)

#: The changes of the exercise "which survive relaxed canonicalization but not simple?":
#: letter -> (what the change is, in words; the change made to the signed message).
DKIM_CHANGES: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "a": ("the Subject's text changed (figures -> figurez)",
          lambda m: m.replace(b"Subject: Quarterly figures", b"Subject: Quarterly figurez")),
    "b": ("the Subject field folded onto two lines (CR LF and a tab before 'figures')",
          lambda m: m.replace(b"Subject: Quarterly figures\r\n",
                              b"Subject: Quarterly\r\n\tfigures\r\n")),
    "c": ("a footer line added at the end of the body, as a mailing list does",
          lambda m: m + b"-- \r\nSent through the course list\r\n"),
    "d": ("an empty line added at the end of the body",
          lambda m: m + b"\r\n"),
    "e": ("three spaces added at the end of the body's last line",
          lambda m: m.replace(b"attached.\r\n", b"attached.   \r\n")),
    "f": ("the To field's name written in capitals (TO:)",
          lambda m: m.replace(b"\r\nTo: Bob", b"\r\nTO: Bob")),
}


def dkim_survival(change: Callable[[bytes], bytes], resolver: ResolverLike,
                  message: bytes = DKIM_EXERCISE_MESSAGE) -> dict[str, str]:
    """Sign ``message`` with Northwind's lab key under simple/simple and under
    relaxed/relaxed, apply ``change`` to each signed copy and verify it against
    ``resolver``: ``{"simple": verdict, "relaxed": verdict}``."""
    key = _dkim().lab_key("northwind.test")
    assert key.domain is not None and key.selector is not None
    verdicts: dict[str, str] = {}
    for canon in ("simple", "relaxed"):
        signed = _dkim().sign(message, domain=key.domain, selector=key.selector, private_key=key,
                      canonicalization=(canon, canon))
        verdicts[canon] = _dkim().verify(change(signed), resolver).verdict
    return verdicts


def judge_relaxed_only(answer: Any, resolver: ResolverLike) -> Verdict:
    """Exercise: the letters of :data:`DKIM_CHANGES` whose signature survives relaxed
    canonicalization but not simple. The verdicts are computed by signing and verifying
    against ``resolver`` (the lab's zones), never typed in."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: give the letters of the changes that "
                       "survive relaxed but not simple, e.g. {'a', 'c'}.")
    said = _letters(value)
    if said is None or not said:
        return Verdict("wrong", "the answer should be letters, such as {'a', 'c'} or 'ac'.")
    unknown = sorted(said - set(DKIM_CHANGES))
    if unknown:
        return Verdict("wrong", f"{', '.join(map(repr, unknown))} is not one of the changes "
                       f"({', '.join(DKIM_CHANGES)}).")
    outcome = {letter: dkim_survival(change, resolver)
               for letter, (_what, change) in DKIM_CHANGES.items()}
    expected = {k for k, v in outcome.items() if v["relaxed"] == "pass" and v["simple"] != "pass"}
    if said == expected:
        return Verdict("right", f"right: {', '.join(sorted(expected))} survive relaxed and "
                       "break simple; relaxed forgives white space and the case of field "
                       "names, never a changed word.")

    def fate(letter: str) -> str:
        v = outcome[letter]
        if v["relaxed"] == "pass" and v["simple"] == "pass":
            return "survives both"
        if v["relaxed"] != "pass" and v["simple"] != "pass":
            return "breaks both"
        return "survives relaxed only"

    problems = [f"({k}) {fate(k)}" for k in sorted(said - expected)]
    missing = len(expected - said)
    text = "not quite: " + ("; ".join(problems) if problems else "")
    if missing:
        text += ("; " if problems else "") + f"{missing} change(s) that survive relaxed " \
            "only are missing"
    return Verdict("wrong", text + ". Hint: sign, change and verify each one, as in the "
                   "tamper table of section 5.")


def check_relaxed_only(answer: Any, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_relaxed_only`."""
    report(judge_relaxed_only(answer, resolver))


def _shipped_selectors(domain: str, shipped: ZoneSet | None) -> set[str]:
    """The DKIM selectors the course's own zone files publish for ``domain``."""
    import re

    if shipped is None:
        from ..core.paths import DATA_DIR
        shipped = ZoneSet.from_directory(DATA_DIR / "zones")
    suffix = f"._domainkey.{domain.rstrip('.').lower()}."
    found = set()
    for origin in shipped.origins:
        for line in shipped.zone_text(origin).splitlines():
            owner = line.split(None, 1)[0].lower() if line.strip() else ""
            if owner.endswith(suffix):
                found.add(re.sub(re.escape(suffix) + r"\Z", "", owner))
    return found


def judge_key_rotation(answer: Any, zones: ZoneSet, domain: str,
                       shipped: ZoneSet | None = None) -> Verdict:
    """Exercise: a message signed for ``domain`` with a new key under a new selector.

    The answer is the signed message (bytes or text). It is verified against ``zones``
    (the running lab's ``lab.zones``, where the new key must be published); the selector
    must be one the course's zone files (``shipped``, by default ``data/zones``) do not
    already publish.
    """
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: sign a message with your new key and "
                       "put it in the answer.")
    if not isinstance(value, (bytes, str)):
        return Verdict("wrong", "the answer should be the signed message (bytes, as "
                       f"dkim.sign returns it), not a {type(value).__name__}.")
    result = _dkim().verify(value, zones)
    if not result.signatures:
        return Verdict("wrong", "the message has no DKIM-Signature. Hint: dkim.sign(message, "
                       f"domain={domain!r}, selector=..., private_key=new_key).")
    ours = [s for s in result.signatures if (s.domain or "").lower() == domain.lower()]
    if not ours:
        others = ", ".join(sorted({s.domain or "?" for s in result.signatures}))
        return Verdict("wrong", f"the message is signed for {others}, not {domain}.")
    old = _shipped_selectors(domain, shipped)
    new = [s for s in ours if (s.selector or "").lower() not in old]
    if not new:
        used = ", ".join(sorted({s.selector or "?" for s in ours}))
        return Verdict("wrong", f"signed with selector {used}, which the course already "
                       "publishes. A rotation moves to a new selector: pick a new name, "
                       "publish the new key there, and sign with it.")
    good = [s for s in new if s.passed]
    if good:
        s = good[0]
        return Verdict("right", f"right: the signature by {domain} with the new selector "
                       f"{s.selector} verifies against the key published at {s.key_name} "
                       f"({s.algorithm}). Old mail still verifies as long as the old "
                       "selector stays published.")
    s = new[0]
    if s.verdict == "permerror" and "no key" in s.summary:
        hint = (f"publish the new public key first: dkim.publish(lab.zones, {domain!r}, "
                f"{s.selector!r}, new_key)")
    elif s.verdict == "fail":
        hint = (f"the key published at {s.key_name} is not the one that signed, or the "
                "message changed after signing")
    else:
        hint = "read dkim.verify(answer, lab.zones) for the whole trace"
    return Verdict("wrong", f"the signature with selector {s.selector} gives {s.verdict}: "
                   f"{s.summary}. Hint: {hint}.")


def check_key_rotation(answer: Any, zones: ZoneSet, domain: str,
                       shipped: ZoneSet | None = None) -> None:
    """Check cell for :func:`judge_key_rotation`."""
    report(judge_key_rotation(answer, zones, domain, shipped))
