"""Exercise checks of ``notebooks/00-start-here.ipynb`` (the address of a name) and
``notebooks/01-dns-mx.ipynb`` (the order a sender tries the MX hosts, what is wrong
with a domain's mail set-up, an MX that fixes it). Part of :mod:`labsupport.teach.checks`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ..core.errors import LabError
from ..dns.mx import PROBLEM_KINDS, ResolverLike, mx_hosts
from ..dns.zone import ZoneSet
from .verdicts import Verdict, answer_of, report


def _normalise_host(name: Any) -> str:
    return str(name).strip().rstrip(".").lower()


# -- notebooks/00-start-here.ipynb ---------------------------------------------------------

def judge_address(answer: Any, name: str, resolver: ResolverLike) -> Verdict:
    """Exercise: the IPv4 address of ``name``, as the lab's DNS gives it."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: what is the address of {name}?")
    try:
        expected = sorted(rr.address for rr in resolver.resolve(name, "A"))
    except Exception as exc:  # noqa: BLE001 - the lab itself is broken: say so
        return Verdict("wrong", f"the lab could not look {name} up ({exc}); is it running?")
    said = str(value).strip()
    if said in expected:
        return Verdict("right", f"right: {name} has the address {said}.")
    return Verdict("wrong", f"{said!r} is not an address of {name}. Hint: "
                   f"lab.query({name!r}, 'A') and read the ANSWER SECTION.")


def check_address(answer: Any, name: str, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_address`."""
    report(judge_address(answer, name, resolver))


# -- notebooks/01-dns-mx.ipynb -------------------------------------------------------------

def judge_try_order(answer: Any, domain: str, resolver: ResolverLike) -> Verdict:
    """Exercise: the hosts a sender tries for ``domain``, in order (a list of names)."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: list the hosts for {domain} in "
                       "the order a sender tries them.")
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        return Verdict("wrong", "the answer should be a list of host names, e.g. "
                       "['mx1.example.test', 'mx2.example.test'].")
    names = [_normalise_host(v) for v in value]
    result = mx_hosts(domain, resolver, rng=random.Random(0))
    groups: dict[int, set[str]] = {}
    for host in result.hosts:
        if host.usable:
            groups.setdefault(host.preference, set()).add(host.name.lower())
    expected_len = sum(len(g) for g in groups.values())
    if len(names) != expected_len:
        return Verdict("wrong", f"{domain} has {expected_len} usable mail host(s), your "
                       f"list has {len(names)}. Hint: look at every MX record, and leave "
                       "out hosts a sender cannot use.")
    position = 0
    for preference in sorted(groups):
        block = set(names[position : position + len(groups[preference])])
        if block != groups[preference]:
            return Verdict("wrong", f"position {position + 1} should hold the host(s) of "
                           f"preference {preference}: {', '.join(sorted(groups[preference]))}."
                           " Hint: lower preference values are tried first.")
        position += len(groups[preference])
    return Verdict("right", f"right: a sender tries {', '.join(names)} in that order"
                   + (" (hosts of equal preference in either order)."
                      if any(len(g) > 1 for g in groups.values()) else "."))


def judge_diagnosis(answer: Any, resolver: ResolverLike, domains: list[str]) -> Verdict:
    """Exercise: map each domain to what is wrong with its mail set-up.

    Allowed diagnoses: the keys of :data:`~labsupport.dns.mx.PROBLEM_KINDS` plus ``"ok"``,
    ``"null-mx"`` (accepts no mail, on purpose) and ``"implicit-mx"`` (no MX; the
    domain's address takes mail).
    """
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: fill in a diagnosis for each domain.")
    if not isinstance(value, Mapping):
        return Verdict("wrong", "the answer should be a dict: {'domain': 'diagnosis', ...}.")
    allowed = {"ok", "null-mx", "implicit-mx", *PROBLEM_KINDS}
    wrong = []
    for domain in domains:
        result = mx_hosts(domain, resolver, rng=random.Random(0))
        if result.problems:
            expected = result.problems[0]
        elif result.verdict in ("null-mx", "implicit-mx"):
            expected = result.verdict
        else:
            expected = "ok"
        raw = value.get(domain)
        said = "" if raw is None else str(raw).strip().lower()
        if said not in allowed:
            wrong.append(f"{domain}: {said or 'no answer'!r} is not one of "
                         f"{', '.join(sorted(allowed))}")
        elif said != expected:
            wrong.append(f"{domain}: not {said!r}. Hint: run lab.mx({domain!r}) and read "
                         "the trace, step by step")
    if wrong:
        return Verdict("wrong", f"{len(domains) - len(wrong)} of {len(domains)} right. "
                       + "; ".join(wrong) + ".")
    return Verdict("right", f"all {len(domains)} diagnoses are right.")


def judge_mx_fix(answer: Any, domain: str, zones: ZoneSet, resolver: ResolverLike) -> Verdict:
    """Exercise: a new MX set that fixes ``domain``. The answer (one MX value such as
    ``"10 host.example.test."`` or a list of them) is put into the live zone, so the
    student can query it afterwards; ``zones.reset(domain)`` puts the old one back."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: write the MX value that fixes "
                       f"{domain}.")
    if isinstance(value, str):
        values = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        values = list(value)
    else:
        return Verdict("wrong", "the answer should be an MX value as text, such as "
                       "'10 host.example.test.' (or a list of them).")
    try:
        zones.set(domain, "MX", *values)
    except LabError as exc:
        return Verdict("wrong", f"the zone does not accept that: {exc}")
    result = mx_hosts(domain, resolver, rng=random.Random(0))
    if result.verdict == "mx" and not result.problems:
        return Verdict("right", f"fixed: {result.summary}")
    if result.verdict == "mx":
        return Verdict("wrong", f"mail for {domain} is deliverable, but still: "
                       + "; ".join(h.problem or "" for h in result.hosts if h.problem)
                       + ". Hint: an MX must name the host that has the address.")
    return Verdict("wrong", f"not yet: {result.summary} Hint: which name in the zone has "
                   "an A record?")


def check_try_order(answer: Any, domain: str, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_try_order`."""
    report(judge_try_order(answer, domain, resolver))


def check_diagnosis(answer: Any, resolver: ResolverLike, domains: list[str]) -> None:
    """Check cell for :func:`judge_diagnosis`."""
    report(judge_diagnosis(answer, resolver, domains))


def check_mx_fix(answer: Any, domain: str, zones: ZoneSet, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_mx_fix`."""
    report(judge_mx_fix(answer, domain, zones, resolver))
