"""Exercise checks of ``notebooks/02-smtp-dialogue.ipynb`` (the commands that reach 354,
a message partly accepted) and of ``notebooks/08-troubleshooting.ipynb`` (what a sender
does after each reply, and the check cells of the bug hunt and the provider pairing,
whose judges live in :mod:`labsupport.teach.troubleshoot` and
:mod:`labsupport.teach.providers`). Part of :mod:`labsupport.teach.checks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core.errors import LabError
from .verdicts import Verdict, answer_of, report

# -- notebooks/02-smtp-dialogue.ipynb ------------------------------------------------------

def judge_commands_to_354(answer: Any, host: str, port: int) -> Verdict:
    """Exercise: the commands that bring a server to answer 354 (the last one is DATA).

    The commands are sent, one by one, to the server at ``host``:``port``; the session is
    then reset and closed, so nothing is delivered.
    """
    from ..mail.smtp import SMTPSession

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
    from ..mail.smtp import send_mail

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


# -- notebooks/08-troubleshooting.ipynb ----------------------------------------------------
# The judges live beside what they judge (troubleshoot, replycodes, providers); these
# are the check cells' names, imported when first called.

def check_diagnoses(answer: Any, hunt: Any) -> None:
    """Check cell: a cause for each ticket (see
    :func:`labsupport.teach.troubleshoot.judge_diagnoses`)."""
    from .troubleshoot import check_diagnoses as check

    check(answer, hunt)


def check_ticket_fixed(answer: Any, hunt: Any, number: int) -> None:
    """Check cell: ticket ``number`` fixed in the running lab
    (:func:`labsupport.teach.troubleshoot.judge_fixed`)."""
    from .troubleshoot import check_fixed

    check_fixed(answer, hunt, number)


def judge_reply_actions(answer: Any, replies: Mapping[str, str] | Sequence[str]) -> Verdict:
    """Exercise: for each reply, what does the sending side do next?

    ``replies`` is a list of reply lines, or a mapping of labels to reply lines. The answer
    maps each reply (its line, or its label) to one of "done", "continue", "retry later"
    or "give up" (variants such as "retry" or "bounce" count); a list in the same order as
    ``replies`` is accepted too. The expected word comes from :func:`decode`'s class-based
    category (RFC 5321 section 4.2.1).
    """
    from ..mail import replycodes

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: for each reply, say what the sending "
                       "side does next: done, continue, retry later or give up.")
    items = (list(replies.items()) if isinstance(replies, Mapping)
             else [(line, line) for line in replies])
    if isinstance(value, Mapping):
        said_for = {str(k).strip(): v for k, v in value.items()}

        def said_of(label: str, line: str) -> Any:
            return said_for.get(label.strip(), said_for.get(line.strip()))
    elif isinstance(value, Sequence) and not isinstance(value, str) and \
            len(value) == len(items):
        by_position = {label: v for (label, _), v in zip(items, value, strict=True)}

        def said_of(label: str, line: str) -> Any:
            return by_position[label]
    else:
        return Verdict("wrong", "the answer should be a dict: {reply: 'done' | 'continue' | "
                       "'retry later' | 'give up', ...}, one entry for each reply.")
    problems = []
    for label, line in items:
        shown = line if label == line else f"{label} ({line})"
        decoded = replycodes.decode(line)
        raw = said_of(label, line)
        if raw is None or not str(raw).strip():
            problems.append(f"no answer for {shown!r}")
            continue
        said = replycodes.normalise_action(raw)
        if said is None:
            problems.append(f"for {shown!r}, {str(raw)!r} is not one of done, continue, "
                            "retry later, give up")
        elif said != decoded.category:
            digit = (f"the first digit of {decoded.code}" if decoded.code is not None
                     else f"the class of {decoded.enhanced}")
            problems.append(f"{shown!r}: not {said!r}. Hint: look at {digit} "
                            f"({decoded.reply_class}) and what that class means "
                            f"({replycodes.RFC_REPLY_CLASSES})")
    if problems:
        return Verdict("wrong", "; ".join(problems) + ".")
    summary = ", ".join(f"{(line if label == line else label)!r}: "
                        f"{replycodes.decode(line).category}" for label, line in items)
    return Verdict("right", f"right: {summary}.")


def check_reply_actions(answer: Any, replies: Mapping[str, str] | Sequence[str]) -> None:
    """Check cell for :func:`judge_reply_actions`."""
    report(judge_reply_actions(answer, replies))
def check_lab_pairing(answer: Any, lab: Any) -> None:
    """Check cell: a port and TLS mode that work with the lab's submission service
    (:func:`labsupport.teach.providers.judge_lab_pairing`)."""
    from .providers import check_lab_pairing as check

    check(answer, lab)
