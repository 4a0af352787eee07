"""The troubleshooting lab's exercise checks: the diagnosis of each ticket and the fixes
made in the running lab, judged against what :meth:`BugHunt.triage` finds.

Part of :mod:`labsupport.teach.troubleshoot`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .troubleshoot_tickets import CAUSES, Ticket, TroubleshootError, ticket

if TYPE_CHECKING:
    from .troubleshoot_hunt import BugHunt


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
