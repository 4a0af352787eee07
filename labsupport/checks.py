"""Check cells: teaching claims and exercise checks that speak in words.

Two kinds of check appear in the notebooks:

* :func:`claim` and :func:`claim_true` back a sentence of the lesson ("the first host a
  sender tries is mx1") with the lab's behaviour. A claim that holds prints a line that
  says so; one that stops being true raises :class:`~labsupport.errors.CheckFailed` with
  what was expected and what happened, so the notebook fails in CI.
* Exercise checks (``check_*``) take the student's answer, say whether it is right and
  give a hint when it is not. An answer that was not given yet (the answer cell raised
  ``NotImplementedError``, or the name is undefined) is reported as "not answered yet",
  not as an error. The expected answers are computed from the lab, never typed in.

Introduced in ``notebooks/00-start-here.ipynb``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import CheckFailed, LabError
from .mx import PROBLEM_KINDS, ResolverLike, mx_hosts
from .zone import ZoneSet

PASS = "✔"
FAIL = "✘"
TODO = "…"


def claim(what: str, got: Any, expected: Any) -> None:
    """Assert that ``got == expected`` and say so in words; ``what`` names the fact."""
    if got == expected:
        print(f"{PASS} {what}: {got!r}, as the lesson says.")
        return
    raise CheckFailed(f"{FAIL} {what}: the lesson expects {expected!r}, but the lab gave "
                      f"{got!r}.")


def claim_true(what: str, condition: bool, detail: str = "") -> None:
    """Assert that the sentence ``what`` holds; ``detail`` says what was observed."""
    if condition:
        print(f"{PASS} {what}" + (f" ({detail})" if detail else ""))
        return
    raise CheckFailed(f"{FAIL} Expected: {what}. " + (f"Observed: {detail}." if detail
                                                     else "It does not hold."))


@dataclass(frozen=True)
class Verdict:
    """What an exercise check found: right, wrong (with a hint), or not answered yet."""

    status: str  # "right", "wrong" or "unanswered"
    message: str

    @property
    def right(self) -> bool:
        return self.status == "right"

    def __str__(self) -> str:
        mark = {"right": PASS, "wrong": FAIL}.get(self.status, TODO)
        return f"{mark} {self.message}"

    __repr__ = __str__


def answer_of(get: Callable[[], Any] | Any) -> tuple[bool, Any]:
    """Read a student's answer: ``(False, None)`` when it is not given yet.

    ``get`` is a value or a no-argument callable such as ``lambda: my_answer``; a callable
    that raises NameError (the answer cell did not run) or NotImplementedError (the
    placeholder is still there) means "not answered yet".
    """
    if not callable(get):
        return (get is not Ellipsis and get is not None), get
    try:
        value = get()
    except (NameError, NotImplementedError):
        return False, None
    return (value is not Ellipsis and value is not None), value


def report(verdict: Verdict) -> None:
    """Print the verdict; raise CheckFailed when the answer is wrong (so CI notices)."""
    if verdict.status == "wrong":
        raise CheckFailed(str(verdict))
    print(verdict)


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

    Allowed diagnoses: the keys of :data:`~labsupport.mx.PROBLEM_KINDS` plus ``"ok"``,
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


# -- notebooks/02-smtp-dialogue.ipynb ------------------------------------------------------

def judge_commands_to_354(answer: Any, host: str, port: int) -> Verdict:
    """Exercise: the commands that bring a server to answer 354 (the last one is DATA).

    The commands are sent, one by one, to the server at ``host``:``port``; the session is
    then reset and closed, so nothing is delivered.
    """
    from .smtp import SMTPSession

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: list the commands, one string each.")
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        return Verdict("wrong", "the answer should be a list of command lines, e.g. "
                       "['EHLO me.example', ...].")
    session = SMTPSession(host, port, timeout=10)
    last = None
    try:
        session.connect()
        for command in value:
            last = session.send(command)
            if last.code >= 400:
                return Verdict("wrong", f"the server refused {command!r} with {last.first_line!r}."
                               " Hint: which command must come before it?")
        if last is None or last.code != 354:
            got = last.first_line if last else "nothing"
            return Verdict("wrong", f"the last reply was {got!r}, not 354. Hint: 354 is the "
                           "server's answer to DATA, once a sender and a recipient are set.")
        return Verdict("right", f"right: after {len(value)} commands the server answered "
                       f"{last.first_line!r}.")
    finally:
        # Inside DATA, closing the connection before the final dot abandons the message
        # (RFC 5321 section 3.3): nothing is delivered. Otherwise leave politely.
        try:
            if session.connected and not (last is not None and last.code == 354):
                session.rset()
                session.quit()
        except LabError:
            pass
        session.close()


def judge_partly_accepted(answer: Any, host: str, port: int, message: str) -> Verdict:
    """Exercise: two recipients for which the MX role accepts one and refuses the other."""
    from .smtp import send_mail

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: give two recipient addresses.")
    if isinstance(value, str) or len(list(value)) != 2:
        return Verdict("wrong", "the answer should be a list of exactly two addresses.")
    transcript = send_mail(host, port, mail_from="student@northwind.test",
                           rcpt_to=[str(v) for v in value], message=message)
    if transcript.verdict == "partly accepted" and len(transcript.accepted) == 1:
        return Verdict("right", f"right: {transcript.accepted[0]} was accepted and "
                       f"{', '.join(r for r, _ in transcript.refused)} refused; the message "
                       "went to one of them only.")
    return Verdict("wrong", f"the server's verdict was {transcript.verdict!r} "
                   f"(accepted: {list(transcript.accepted)}). Hint: one address must exist "
                   "in the lab (lab.accounts), the other must not.")


def check_commands_to_354(answer: Any, host: str, port: int) -> None:
    """Check cell for :func:`judge_commands_to_354`."""
    report(judge_commands_to_354(answer, host, port))


def check_partly_accepted(answer: Any, host: str, port: int, message: str) -> None:
    """Check cell for :func:`judge_partly_accepted`."""
    report(judge_partly_accepted(answer, host, port, message))
