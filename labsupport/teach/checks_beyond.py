"""Lesson 10 (``notebooks/10-after-dmarc.ipynb``): what the lesson builds with the lab's
code, and its exercise checks. Part of :mod:`labsupport.teach.checks`.

* :func:`forward_then_list` replays, hop by hop, a message that goes through the lab's
  forwarder (``carol@alumni.example``) and then the lab's mailing list
  (``course@lists.campus.test``), with the code the MX role runs at each hop
  (:func:`labsupport.auth.authres_evaluation.authenticate`, the aliases'
  ``seal``/``post``, :func:`labsupport.auth.dkim.sign`). The running lab cannot make
  that trip itself: its forwarder sends only to ``carol@campus.test``. The answer, a
  :class:`ForwardedJourney`, keeps every evaluation and every ARC sealing.
* :class:`~labsupport.mail.smuggling_lenient.LenientServer` (re-exported here) is a toy
  SMTP server on 127.0.0.1 that also reads a bare LF (or a bare CR) as a line end: the
  receiver SMTP smuggling needs. Its messages are
  counted like the lab's mailboxes, so
  :func:`labsupport.mail.smuggling.send_every_variant` can survey it.
* The exercises: which fake ends of data a server that reads bare LF takes
  (:func:`judge_lenient_variants`), the instance and ``cv=`` of the list's ARC set
  (:func:`judge_list_set`), and the exact octets of a message after 354
  (:func:`judge_data_octets`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.results import html_table, text_table
from ..mail.smuggling import VARIANTS, EndOfDataVariant, bare_line_end, spelled
from ..mail.smuggling_lenient import LenientServer as LenientServer
from .checks_core import _letters
from .verdicts import Verdict, answer_of, report

# -- forwarder, then list -----------------------------------------------------------------

#: The post Alice sends to Carol's alumni address in lesson 10.
JOURNEY_MESSAGE = (b"From: Alice Adams <alice@northwind.test>\r\nTo: carol@alumni.example\r\n"
                   b"Subject: Exam dates\r\nDate: Mon, 01 Mar 2027 09:00:00 +0000\r\n"
                   b"Message-ID: <exam-dates@northwind.test>\r\n\r\n"
                   b"Hello Carol,\r\n\r\nthe exam is on Monday.\r\n")


@dataclass(frozen=True)
class JourneyHop:
    """One hop of :class:`ForwardedJourney`: where the message arrived (``where``), from
    which host (``client_ip``, ``helo``), what that MX found (``evaluation``, an
    :class:`~labsupport.auth.authres_evaluation.AuthEvaluation`) and the ARC set the
    handler added as it re-sent the message (``sealing``; None at the last hop)."""

    where: str
    client_ip: str
    helo: str
    evaluation: Any
    sealing: Any = None

    def row(self) -> list[object]:
        ev = self.evaluation
        dkim = ", ".join(f"{r}" for r in ev.dkim_results) or "none"
        sealed = (f"i={self.sealing.instance} cv={self.sealing.cv} by {self.sealing.domain}"
                  if self.sealing is not None and self.sealing.sealed else "-")
        return [self.where, self.client_ip, ev.spf_result, dkim, ev.dmarc_result,
                ev.arc_result, sealed]


_HOP_HEADERS = ["arrives at", "sent from", "SPF", "DKIM", "DMARC", "ARC",
                "then sealed as it is re-sent"]


@dataclass(frozen=True)
class ForwardedJourney:
    """A message through the forwarder and then the list, hop by hop.

    ``hops`` are the three arrivals: at the forwarder's MX, at the list's MX and at the
    members' MX; ``original`` is the message as the author's server sent it, ``posted``
    the list's copy before its seal, and ``delivered`` the message the members' MX
    received (two ARC sets on top).
    """

    original: bytes
    posted: bytes
    delivered: bytes
    hops: tuple[JourneyHop, ...]

    @property
    def final(self) -> Any:
        """The members' MX's evaluation (the last hop)."""
        return self.hops[-1].evaluation

    def sealing_by(self, domain: str) -> Any:
        """The ARC sealing the handler sealing as ``domain`` made."""
        for hop in self.hops:
            if hop.sealing is not None and (hop.sealing.domain or "") == domain:
                return hop.sealing
        raise KeyError(f"no hop sealed as {domain}; the sealers were "
                       + ", ".join(h.sealing.domain for h in self.hops if h.sealing))

    def rows(self) -> list[list[object]]:
        return [hop.row() for hop in self.hops]

    def __str__(self) -> str:
        return text_table(_HOP_HEADERS, self.rows())

    def _repr_html_(self) -> str:
        return html_table(_HOP_HEADERS, self.rows(), caption="The message, hop by hop")


def _outbound(zones: Any, domain: str) -> tuple[str, str]:
    """The address and HELO name of ``domain``'s outbound host ``out.<domain>``, as the
    lab's delivering MTA uses them."""
    name = f"out.{domain}"
    answer = zones.resolve(name, "A")
    return str(answer[0].address), name


def _lab_aliases(aliases: Iterable[Any] | Mapping[str, Any] | None) -> tuple[Any, Any]:
    from ..mail.aliases import LAB_ALIASES, Forwarder, MailingList

    found = list(aliases.values()) if isinstance(aliases, Mapping) else list(aliases or
                                                                            LAB_ALIASES)
    forwarder = next((a for a in found if isinstance(a, Forwarder)), None)
    mailing_list = next((a for a in found if isinstance(a, MailingList)), None)
    if forwarder is None or mailing_list is None:
        raise ValueError("forward_then_list needs a forwarder and a mailing list among the "
                         "aliases (lab.smtp.aliases())")
    return forwarder, mailing_list


def forward_then_list(zones: Any, aliases: Iterable[Any] | Mapping[str, Any] | None = None,
                      *, message: bytes = JOURNEY_MESSAGE, rewrite_from: bool = False,
                      now: Any = None) -> ForwardedJourney:
    """``message``, DKIM-signed by its author's domain, sent from that domain's outbound
    host to the forwarder, which seals it and re-sends it unchanged (with the original
    MAIL FROM) from its own host to the list; the list tags the Subject, adds a footer
    (and, with ``rewrite_from``, rewrites From as it does for p=reject authors), signs
    as its organisation, seals, and sends it from ``out.lists.campus.test`` to its
    members. Each arrival is checked with :func:`~labsupport.auth.authres_evaluation.
    authenticate` against ``zones`` (``lab.zones``), as the MX role checks it.
    ``aliases`` defaults to the lab's (``lab.smtp.aliases()``); ``now`` is the time (the
    lab clock, seconds, or None for now)."""
    import email.utils

    from ..auth.authres_evaluation import authenticate
    from ..auth.dkim import sign
    from ..auth.dkim_keys import lab_key
    forwarder, mailing_list = _lab_aliases(aliases)
    seconds = _seconds(now)
    author = email.utils.parseaddr(_field(message, "From") or "")[1]
    author_domain = author.rpartition("@")[2].lower()
    if not author_domain:
        raise ValueError("the message needs a From field with an address")
    key = lab_key(author_domain)
    original = sign(message, domain=author_domain, selector=key.selector or "",
                    private_key=key, timestamp=seconds)

    def arrive(where: str, raw: bytes, domain: str, mail_from: str) -> JourneyHop:
        ip, helo = _outbound(zones, domain)
        evaluation = authenticate(raw, client_ip=ip, mail_from=mail_from, helo=helo,
                                  resolver=zones, now=seconds)
        return JourneyHop(where, ip, helo, evaluation)

    first = arrive(f"{forwarder.address} (the forwarder)", original, author_domain, author)
    forwarded = forwarder.seal(original, first.evaluation.header, chain=first.evaluation.arc,
                               timestamp=seconds)
    if forwarded.sealed_message is None:
        raise ValueError(f"the forwarder did not seal: {forwarded.summary}")
    second = arrive(f"{mailing_list.address} (the list)", forwarded.sealed_message,
                    forwarder.sender_domain, author)
    posted = mailing_list.post(forwarded.sealed_message, rewrite_from=rewrite_from)
    list_key = mailing_list.arc_key()
    posted = sign(posted, domain=mailing_list.signing_domain, selector=list_key.selector or "",
                  private_key=list_key, timestamp=seconds + 60)
    listed = mailing_list.seal(posted, second.evaluation.header, chain=second.evaluation.arc,
                               timestamp=seconds + 60)
    if listed.sealed_message is None:
        raise ValueError(f"the list did not seal: {listed.summary}")
    third = arrive(f"{mailing_list.members[0]} (a member)", listed.sealed_message,
                   mailing_list.sender_domain, mailing_list.bounce_address)
    hops = (JourneyHop(first.where, first.client_ip, first.helo, first.evaluation, forwarded),
            JourneyHop(second.where, second.client_ip, second.helo, second.evaluation, listed),
            third)
    return ForwardedJourney(original=original, posted=posted,
                            delivered=listed.sealed_message, hops=hops)


def _seconds(now: Any) -> int:
    """``now`` (a LabClock, a datetime, seconds or None) as whole seconds."""
    import time
    from datetime import datetime

    from ..core.clock import LabClock

    if isinstance(now, LabClock):
        return int(now.time())
    if isinstance(now, datetime):
        return int(now.timestamp())
    return int(now) if now is not None else int(time.time())


def _field(message: bytes, name: str) -> str | None:
    import email.parser
    import email.policy

    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(message)
    value = parsed.get(name)
    return " ".join(str(value).split()) if value is not None else None


# -- exercise: which variants end the data? ------------------------------------------------

#: The fake ends of data of the exercise, by letter (the order of
#: :data:`labsupport.mail.smuggling.VARIANTS`).
SMUGGLING_LETTERS: dict[str, EndOfDataVariant] = {
    chr(ord("a") + n): each for n, each in enumerate(VARIANTS)}


def lenient_survey(reads_bare: Iterable[str] = ("LF",), settle: float = 0.1) -> Any:
    """Every variant sent to a fresh :class:`LenientServer` reading ``reads_bare``, with
    :func:`~labsupport.mail.smuggling.send_every_variant`; the server is closed after."""
    from ..mail.smuggling import send_every_variant

    with LenientServer(reads_bare) as server:
        return send_every_variant(server.host, server.port, store=server, follow_up=False,
                                  settle=settle)


def judge_lenient_variants(answer: Any, reads_bare: Iterable[str] = ("LF",), *,
                           settle: float = 0.1) -> Verdict:
    """Exercise: the letters of :data:`SMUGGLING_LETTERS` that a server reading CR LF
    and ``reads_bare`` as line ends takes as the end of data. The expected letters come
    from sending every variant to such a server (:func:`lenient_survey` with
    ``settle``)."""
    given, value = answer_of(answer)
    wanted = tuple(reads_bare)
    what = " and ".join(f"bare {b}" for b in wanted) or "nothing but CR LF"
    if not given:
        return Verdict("unanswered", f"not answered yet: which variants does a server that "
                       f"reads {what} as a line end take as the end of data?")
    letters = _letters(value)
    if letters is None:
        return Verdict("wrong", 'give letters, such as {"a", "c"} or "ac".')
    unknown = sorted(letters - set(SMUGGLING_LETTERS))
    if unknown:
        return Verdict("wrong", f"there is no variant {', '.join(unknown)}: the letters are "
                       f"a to {max(SMUGGLING_LETTERS)}.")
    survey = lenient_survey(wanted, settle)
    by_name = {r.variant.name: r.verdict for r in survey.results}
    expected = {k for k, v in SMUGGLING_LETTERS.items() if by_name.get(v.name) == "smuggled"}
    if letters == expected:
        return Verdict("right", "right: " + ", ".join(
            SMUGGLING_LETTERS[k].shown for k in sorted(expected)) + " end the data there, "
            "and what follows runs as commands: a second message is smuggled in.")
    extra, missing = sorted(letters - expected), sorted(expected - letters)
    parts = []
    if extra:
        parts.append(", ".join(f"({k}) {SMUGGLING_LETTERS[k].shown}" for k in extra)
                     + " did not end the data there (that server kept one message)")
    if missing:
        parts.append(", ".join(f"({k}) {SMUGGLING_LETTERS[k].shown}" for k in missing)
                     + " did")
    return Verdict("wrong", "not quite: " + "; ".join(parts) + ". Hint: split each variant "
                   f"where that server sees a line end (CR LF, and {what}); the data ends "
                   "when a line holds only '.'.")


def check_lenient_variants(answer: Any, reads_bare: Iterable[str] = ("LF",), *,
                           settle: float = 0.1) -> None:
    """Check cell for :func:`judge_lenient_variants`."""
    report(judge_lenient_variants(answer, reads_bare, settle=settle))


# -- exercise: the list's ARC set ----------------------------------------------------------


def judge_list_set(answer: Any, journey: ForwardedJourney, list_domain: str = "campus.test"
                   ) -> Verdict:
    """Exercise: ``(instance, cv)`` of the ARC set the list (sealing as ``list_domain``)
    added to ``journey``'s message, read from the delivered message's chain."""
    from ..auth.arc_sets import AS, collect_arc_fields
    from ..auth.dkim_canon import parse_message

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: the list's ARC set, as (i, cv).")
    try:
        instance, cv = value
        instance, cv = int(instance), str(cv).strip().lower()
    except (TypeError, ValueError):
        return Verdict("wrong", 'give a pair: the instance number and the cv= value, such '
                       'as (1, "none").')
    collected = collect_arc_fields(parse_message(journey.delivered))
    by_sealer = {tags[AS].get("d", "").lower(): (number, tags[AS].get("cv", ""))
                 for number, tags in collected.tags.items() if AS in tags}
    if list_domain not in by_sealer:
        raise ValueError(f"no ARC set sealed by {list_domain} in the journey's message")
    expected = by_sealer[list_domain]
    if (instance, cv) == expected:
        return Verdict("right", f"right: the list's set is i={expected[0]} with "
                       f"cv={expected[1]}: the chain it received (one set, by the "
                       "forwarder) validated.")
    if instance != expected[0]:
        return Verdict("wrong", f"not i={instance}. Hint: each handler adds the next "
                       "instance number; who sealed before the list? (look at d= in each "
                       "ARC-Seal, or validate_chain(...).sealers)")
    return Verdict("wrong", f"i={instance} is right, but not cv={cv}. Hint: cv= says what "
                   "the list found when it validated the chain it received; none is only "
                   "for the first set (RFC 8617 section 4.1.3).")


def check_list_set(answer: Any, journey: ForwardedJourney, list_domain: str = "campus.test"
                   ) -> None:
    """Check cell for :func:`judge_list_set`."""
    report(judge_list_set(answer, journey, list_domain))


# -- exercise: the octets after 354 --------------------------------------------------------

#: A message written on a Unix machine (bare LF line ends) with a line holding only
#: "." and a line starting with ".": what the exercise turns into SMTP's octets.
DATA_DRAFT = ("From: Dave <dave@campus.test>\nTo: Carol <carol@campus.test>\n"
              "Subject: Notes for the exam\n\nThe notes, one per line:\n.\n"
              ".profile is a hidden file\nEnd of the notes.\n")


def judge_data_octets(answer: Any, port: int, store: Any, draft: str = DATA_DRAFT,
                      rcpt_to: str = "carol@campus.test") -> Verdict:
    """Exercise: the exact octets a client sends after 354 for ``draft``: CR LF line
    ends, a line starting with "." doubled (RFC 5321 section 4.5.2), and CR LF . CR LF
    (section 4.1.1.4). The expected octets are :func:`labsupport.mail.smtp_encoding.
    dot_stuff`'s; a right answer is then sent to the MX role at ``port`` and must be
    stored (``store`` is ``lab.mail``) with the draft's lines intact."""
    from ..mail.smtp_encoding import dot_stuff

    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: the octets after 354, as bytes.")
    if isinstance(value, str):
        return Verdict("wrong", 'give bytes (b"..." or text.encode()), the octets on the '
                       "wire, not a str.")
    if not isinstance(value, bytes | bytearray):
        return Verdict("wrong", "give the octets as bytes.")
    value = bytes(value)
    expected = dot_stuff(draft)
    if value == expected:
        return _sent_and_stored(value, port, store, draft, rcpt_to)
    bare = bare_line_end(value)
    if bare is not None:
        return Verdict("wrong", f"these octets hold {bare.describe()}: a lenient server may "
                       "read it as a line end, the lab's refuses the message. Hint: every "
                       "line ends with CR LF (RFC 5321 section 2.3.8).")
    if not value.endswith(b"\r\n.\r\n"):
        return Verdict("wrong", f"the octets end with {spelled(value[-7:])!r}, not with "
                       "<CR><LF>.<CR><LF>: the server would wait for more. Hint: the last "
                       "line's CR LF, then a line holding only '.' (section 4.1.1.4).")
    early = value.find(b"\r\n.\r\n")
    if early != len(value) - 5:
        line = value.count(b"\r\n", 0, early) + 2
        return Verdict("wrong", f"line {line} holds only '.', so the data would end there "
                       "and the rest would be read as commands. Hint: transparency "
                       "(RFC 5321 section 4.5.2): a line that starts with '.' gets one more.")
    return Verdict("wrong", "close, but not the draft's lines exactly. Hint: keep every line "
                   "of the draft, double the '.' at the start of a line, nothing more "
                   "(compare with dot_stuff(checks.DATA_DRAFT)).")


def _sent_and_stored(octets: bytes, port: int, store: Any, draft: str,
                     rcpt_to: str) -> Verdict:
    """Send the octets to the MX role and find the stored message."""
    import email.parser
    import email.policy

    from ..mail.smtp_replies import SMTPClientError
    from ..mail.smtp_session import SMTPSession

    before = store.count(rcpt_to)
    session = SMTPSession("127.0.0.1", port, timeout=10)
    try:
        session.connect()
        session.ehlo("client.lab.test")
        session.mail("dave@campus.test")
        session.rcpt(rcpt_to)
        started = session.send("DATA")
        if started.code != 354:
            return Verdict("wrong", f"the lab's MX role did not take DATA: "
                           f"{started.first_line}")
        session.send_raw(octets, what="the exercise's octets")
        reply = session.read_reply()
        session.quit()
    except SMTPClientError as exc:
        return Verdict("wrong", f"the octets are right, but sending them failed: {exc}")
    finally:
        session.close()
    if reply is None or not reply.is_positive:
        return Verdict("wrong", "the octets match, but the lab's MX role answered "
                       f"{reply.first_line if reply else 'nothing'}.")
    subject = next((line[len("Subject:"):].strip() for line in draft.splitlines()
                    if line.lower().startswith("subject:")), None)
    stored = [m for m in store.messages(rcpt_to) if subject is None or m.subject == subject]
    if store.count(rcpt_to) != before + 1 or not stored:
        return Verdict("wrong", "the MX role accepted the octets, but stored "
                       f"{store.count(rcpt_to) - before} messages instead of one.")
    parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(stored[-1].raw)
    body = parsed.get_payload()
    lines = str(body).replace("\r\n", "\n").splitlines()
    wanted = draft.split("\n\n", 1)[1].splitlines()
    if lines != wanted:
        return Verdict("wrong", "the MX role stored a message whose body differs from the "
                       f"draft's: {lines!r}")
    return Verdict("right", f"right: the lab's MX role answered {reply.first_line} and "
                   f"stored one message whose body is the draft's, the '.' line included.")


def check_data_octets(answer: Any, port: int, store: Any, draft: str = DATA_DRAFT,
                      rcpt_to: str = "carol@campus.test") -> None:
    """Check cell for :func:`judge_data_octets`."""
    report(judge_data_octets(answer, port, store, draft, rcpt_to))


__all__ = [
    "DATA_DRAFT", "JOURNEY_MESSAGE", "SMUGGLING_LETTERS", "ForwardedJourney", "JourneyHop",
    "LenientServer", "check_data_octets", "check_lenient_variants", "check_list_set",
    "forward_then_list", "judge_data_octets", "judge_lenient_variants", "judge_list_set",
    "lenient_survey",
]
