"""The capstone, ``notebooks/07-capstone-secure-a-domain.ipynb``: what a receiver concludes
about a domain's mail (:func:`receiver_report`, with :class:`ReceiverReport` and
:class:`ReceiverOutcome`), the steps of securing a domain (:data:`CAPSTONE_STEPS`,
:func:`judge_secure_step`) and the exercise on a forgery from a subdomain that does not
exist (:func:`judge_subdomain_forgery`). Part of :mod:`labsupport.teach.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import LabError
from ..dns.mx import mx_hosts
from .checks_core import _spf
from .checks_spf import spf_record_of
from .verdicts import Verdict, answer_of, report

# -- Lab 07: what a receiver concludes about a domain's mail (the capstone) ---------------

#: The lab's attacker (``phisher.example``'s host), as XCLIENT tells the MX role.
CAPSTONE_ATTACKER = {"ADDR": "203.0.113.66", "HELO": "out.phisher.example"}
#: The steps of securing a domain, in the order the capstone takes them.
CAPSTONE_STEPS = ("mx", "spf", "dkim", "dmarc-none", "dmarc-reject")


@dataclass(frozen=True)
class ReceiverOutcome:
    """What the receiving MX role did with one test message, and why, in words."""

    label: str
    legitimate: bool
    action: str  # "INBOX", "Junk", "rejected (550 5.7.1)" or "not received"
    spf: str
    dkim: str
    dmarc: str
    reply: str
    meaning: str

    @property
    def delivered(self) -> bool:
        return self.action in ("INBOX", "Junk")

    @property
    def rejected(self) -> bool:
        return self.action.startswith("rejected")

    @property
    def passes(self) -> bool:
        """Delivered to INBOX with DMARC pass: the receiver knows it is genuine."""
        return self.action == "INBOX" and self.dmarc == "pass"

    def as_row(self) -> list[object]:
        return [self.label, self.action, f"spf={self.spf} dkim={self.dkim} dmarc={self.dmarc}",
                self.meaning]


@dataclass(frozen=True)
class ReceiverReport:
    """One legitimate message and two forgeries in a domain's name, as a receiver saw them
    (made by :func:`receiver_report`)."""

    domain: str
    receiving: str
    outcomes: tuple[ReceiverOutcome, ...]

    @property
    def legitimate(self) -> list[ReceiverOutcome]:
        return [o for o in self.outcomes if o.legitimate]

    @property
    def forgeries(self) -> list[ReceiverOutcome]:
        return [o for o in self.outcomes if not o.legitimate]

    @property
    def legitimate_pass(self) -> bool:
        """Every legitimate message reached the INBOX with DMARC pass."""
        return all(o.passes for o in self.legitimate)

    @property
    def forgeries_rejected(self) -> bool:
        """Every forgery was refused (550 5.7.1)."""
        return all(o.rejected for o in self.forgeries)

    @property
    def secured(self) -> bool:
        return self.legitimate_pass and self.forgeries_rejected

    def conclusion(self) -> str:
        if self.secured:
            return (f"{self.domain} is secured: its own mail passes DMARC and every forgery "
                    "is refused.")
        fooled = [o for o in self.forgeries if o.delivered]
        if fooled:
            return (f"{len(fooled)} of {len(self.forgeries)} forgeries in {self.domain}'s "
                    "name still reach the recipient.")
        return f"the forgeries are refused, but {self.domain}'s own mail does not pass DMARC."

    HEADERS = ["message", "receiver's action", "Authentication-Results", "what it means"]

    def __str__(self) -> str:
        from ..core.results import text_table

        rows = [o.as_row() for o in self.outcomes]
        return (f"Receiver's view of {self.domain}\n{text_table(self.HEADERS, rows)}\n"
                f"Mail to {self.domain}: {self.receiving}\n=> {self.conclusion()}")

    def _repr_html_(self) -> str:
        from ..core.results import html_table as _html_table

        rows = [o.as_row() for o in self.outcomes]
        return (_html_table(self.HEADERS, rows,
                            caption=f"What a receiver concludes about mail from {self.domain}")
                + f"<p>Mail <em>to</em> {self.domain}: {self.receiving}</p>"
                + f"<p><strong>{self.conclusion()}</strong></p>")


def _capstone_message(sender: str, display: str, rcpt: str, subject: str, msgid: str) -> str:
    return (f"From: {display} <{sender}>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid}>\r\n\r\nThis is a test of what a receiver concludes.\r\n")


def _capstone_evaluation(lab: Any, msgid: str) -> Any:
    for evaluation in reversed(lab.smtp.evaluations.all()):
        if evaluation.message_id and msgid in evaluation.message_id:
            return evaluation
    return None


def _capstone_meaning(legitimate: bool, action: str, spf: str, dkim: str, dmarc: str,
                      evaluation: Any) -> str:
    if action == "not received":
        return "never reached the receiver's MX role"
    if action.startswith("rejected"):
        if legitimate:
            return "genuine mail refused: DMARC fails, and the policy says reject"
        return "refused: DMARC fails and the domain's policy says reject"
    where = "Junk (quarantine)" if action == "Junk" else "the inbox"
    if dmarc == "pass":
        how = []
        if getattr(evaluation.dmarc, "spf_aligned", False):
            how.append("SPF")
        if getattr(evaluation.dmarc, "dkim_aligned", False):
            how.append("DKIM")
        proof = " and ".join(how) or "an aligned identifier"
        if legitimate:
            return f"authenticated: {proof} pass aligned with the From domain"
        return f"a forgery that passes DMARC ({proof}): the domain's records are too loose"
    if dmarc == "none":
        if legitimate:
            return (f"delivered to {where}, but nothing proves it is genuine (no DMARC "
                    "record)")
        if spf in ("fail", "softfail"):
            return (f"delivered to {where}: SPF fails, but with no DMARC record the "
                    "receiver does not act on it")
        return f"delivered to {where}: the receiver cannot tell it from genuine mail"
    if legitimate:
        return f"genuine mail that fails DMARC ({dmarc}), delivered to {where}"
    return (f"fails DMARC, yet delivered to {where}: the policy asks only for "
            + ("quarantine" if action == "Junk" else "monitoring (p=none)"))


def receiver_report(domain: str, lab: Any, rcpt: str = "carol@campus.test",
                    timeout: float = 15.0) -> ReceiverReport:
    """Send three messages in ``domain``'s name to ``rcpt`` at another organisation and
    report what its MX role concludes about each:

    * legitimate: the domain's user (its lab account) submits through the submission role
      (STARTTLS, AUTH); the lab's queue delivers it from the domain's outbound host
      ``out.<domain>``;
    * forgery 1: the attacker (203.0.113.66, via XCLIENT) sends ``From: <domain>`` with
      its own envelope sender (``mallory@phisher.example``);
    * forgery 2: the attacker claims the domain in MAIL FROM as well.

    Each outcome gives the receiver's action (INBOX, Junk, rejected), the spf, dkim and
    dmarc results of its Authentication-Results, and what that means. ``receiving`` says
    whether mail *to* the domain can be delivered (its MX). Introduced in
    ``notebooks/07-capstone-secure-a-domain.ipynb``.
    """
    import secrets

    from ..mail.smtp import send_mail

    domain = domain.lower().rstrip(".")
    account = next((a for a in lab.accounts.all() if a.domain == domain), None)
    if account is None:
        raise LabError(f"the lab has no account at {domain} to send its mail with")
    tag = secrets.token_hex(4)
    plans = [
        ("legitimate", True, f"{account.name} through out.{domain}", account.address),
        ("forgery-1", False, "forgery from 203.0.113.66, MAIL FROM mallory@phisher.example",
         "mallory@phisher.example"),
        ("forgery-2", False, f"forgery from 203.0.113.66, MAIL FROM {account.address}",
         account.address),
    ]
    replies: dict[str, str] = {}
    ids: dict[str, str] = {}
    for key, legitimate, _label, mail_from in plans:
        msgid = f"{key}.{tag}@capstone.{domain}"
        ids[key] = msgid
        display = account.name if legitimate else "Accounts team"
        subject = "Our new price list" if legitimate else "Please pay this invoice today"
        message = _capstone_message(account.address, display, rcpt, subject, msgid)
        if legitimate:
            sent = send_mail("127.0.0.1", lab.smtp.port("submission"), mail_from=mail_from,
                             rcpt_to=[rcpt], message=message, tls="starttls",
                             auth=(account.address, account.password),
                             ca_file=lab.ca.ca_file)
            if lab.queue is not None:
                lab.queue.wait_idle(timeout)
        else:
            sent = send_mail("127.0.0.1", lab.smtp.port("mx"), mail_from=mail_from,
                             rcpt_to=[rcpt], message=message, xclient=CAPSTONE_ATTACKER)
        # the answer to the message itself: the last reply before QUIT's 221
        answers = [r for r in getattr(sent, "replies", ()) if r.code != 221]
        replies[key] = answers[-1].first_line if answers else str(sent.verdict)
    outcomes = []
    for key, legitimate, label, _mail_from in plans:
        evaluation = _capstone_evaluation(lab, ids[key])
        if evaluation is None:
            outcomes.append(ReceiverOutcome(label, legitimate, "not received", "-", "-", "-",
                                            replies[key], _capstone_meaning(
                                                legitimate, "not received", "", "", "", None)))
            continue
        results = evaluation.results

        def result_of(method: str, results: Any = results) -> str:
            found = results.find(method)
            return found.result if found is not None else "none"

        spf, dkim, dmarc = result_of("spf"), result_of("dkim"), result_of("dmarc")
        action = evaluation.action
        outcomes.append(ReceiverOutcome(label, legitimate, action, spf, dkim, dmarc,
                                        replies[key], _capstone_meaning(
                                            legitimate, action, spf, dkim, dmarc, evaluation)))
    found = mx_hosts(domain, lab.zones)
    if found.deliverable:
        hosts = ", ".join(h.name if hasattr(h, "name") else str(h) for h in found.hosts)
        receiving = f"deliverable ({found.verdict}: {hosts}); replies and bounces arrive"
    else:
        receiving = f"undeliverable ({found.verdict}): replies and bounces have nowhere to go"
    return ReceiverReport(domain, receiving, tuple(outcomes))


def judge_secure_step(answer: Any, step: str, domain: str, lab: Any) -> Verdict:
    """Has the capstone step ``step`` (one of :data:`CAPSTONE_STEPS`) been done for
    ``domain`` in the running lab? ``answer`` is what the student published (any value:
    it only has to be given). Judged from the lab's DNS and mail server, not the answer.

    The steps build on each other: a step that is in place while an earlier one is not
    (a student skipped it) is "not answered yet", and the message names the missing step."""
    given, _value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: step {step!r} is not done: fill "
                                     "in the cell above")
    verdict = _secure_step_state(step, domain, lab)
    if not verdict.right:
        return verdict
    missing = _missing_step(CAPSTONE_STEPS[: CAPSTONE_STEPS.index(step)], domain, lab)
    if missing is not None:
        return Verdict("unanswered", f"not answered yet: step {missing!r} above is not "
                                     f"done, and step {step!r} builds on it: do step "
                                     f"{missing!r}, then run this cell again. This step "
                                     f"itself is in place: {verdict.message}")
    return verdict


def _missing_step(steps: tuple[str, ...], domain: str, lab: Any) -> str | None:
    """The first of the capstone's ``steps`` not in place for ``domain``, or None. The p=none
    record of "dmarc-none" is replaced at "dmarc-reject", so it is never required here."""
    for step in steps:
        if step != "dmarc-none" and not _secure_step_state(step, domain, lab).right:
            return step
    return None


def _secure_step_state(step: str, domain: str, lab: Any) -> Verdict:
    """Is ``step`` in place for ``domain`` in the lab, taken alone ("right" or "wrong")?"""
    from ..auth import dmarc as dmarc_mod

    zones = lab.zones
    if step == "mx":
        found = mx_hosts(domain, zones)
        if found.verdict == "mx" and found.deliverable:
            return Verdict("right", f"{domain} publishes an MX whose host has an address.")
        return Verdict("wrong", f"MX selection for {domain} gives {found.verdict!r}: publish "
                                "an MX record naming a host that has an A record")
    if step == "spf":
        record = spf_record_of(domain, zones)
        if record is None:
            return Verdict("wrong", f"{domain} publishes no SPF record (TXT v=spf1 ...)")
        spf = _spf()
        ok = spf.spf_verdict(_out_ip(domain, zones), f"postmaster@{domain}", f"out.{domain}",
                             zones).verdict
        bad = spf.spf_verdict(CAPSTONE_ATTACKER["ADDR"], f"postmaster@{domain}",
                              CAPSTONE_ATTACKER["HELO"], zones).verdict
        if ok == "pass" and bad == "fail":
            return Verdict("right", f"SPF of {domain}: pass for out.{domain}, fail for the "
                                    f"attacker ({record}).")
        return Verdict("wrong", f"with {record!r}, out.{domain} gets {ok!r} and the attacker "
                                f"{bad!r}: authorise the outbound host and end with -all")
    if step == "dkim":
        key = lab.smtp.signing_key(domain)
        if key is None:
            return Verdict("wrong", f"the submission roles do not sign {domain}'s mail yet: "
                                    "lab.smtp.set_signing_key(domain, key, selector)")
        selector = lab.smtp.signing_selector(domain)
        from ..auth.dkim_keys import key_name

        try:
            published = zones.resolve(key_name(domain, selector), "TXT")
            text = "".join(b"".join(r.strings).decode() for r in published)
        except Exception:  # noqa: BLE001 - no record is the answer
            text = ""
        if key.public and key.public in text.replace(" ", ""):
            return Verdict("right", f"{domain} signs with selector {selector!r}, and its "
                                    "public key is published.")
        return Verdict("wrong", f"nothing at {key_name(domain, selector)} matches the key "
                                "the server signs with: publish it under the same selector")
    if step in ("dmarc-none", "dmarc-reject"):
        want = step.split("-")[1]
        discovered = dmarc_mod.discover(domain, zones)
        policy = discovered.record
        if policy is None or discovered.record_domain != domain:
            return Verdict("wrong", f"no DMARC record at _dmarc.{domain}")
        if policy.p != want:
            return Verdict("wrong", f"_dmarc.{domain} has p={policy.p}; this step wants "
                                    f"p={want}")
        return Verdict("right", f"_dmarc.{domain} publishes p={want}.")
    raise LabError(f"unknown step {step!r}: use one of {', '.join(CAPSTONE_STEPS)}")


def _out_ip(domain: str, zones: Any) -> str:
    answer = zones.resolve(f"out.{domain}", "A")
    return str(next(iter(answer)))


def check_secure_step(answer: Any, step: str, domain: str, lab: Any) -> None:
    report(judge_secure_step(answer, step, domain, lab))


# -- the capstone's subdomain forgery (DMARC's p= and sp=, from notebooks/06-dmarc.ipynb) -

def _capstone_forgery_action(domain: str, lab: Any, sub: str = "pay",
                             rcpt: str = "carol@campus.test") -> str:
    """Send one forgery ``From: billing@<sub>.<domain>`` from the attacker and return the
    receiver's action in one word: INBOX, Junk or rejected."""
    import secrets

    from ..mail.smtp import send_mail

    msgid = f"sub.{secrets.token_hex(4)}@capstone.{domain}"
    message = _capstone_message(f"billing@{sub}.{domain}", "Billing", rcpt,
                                "Your invoice is overdue", msgid)
    send_mail("127.0.0.1", lab.smtp.port("mx"), mail_from="mallory@phisher.example",
              rcpt_to=[rcpt], message=message, xclient=CAPSTONE_ATTACKER)
    evaluation = _capstone_evaluation(lab, msgid)
    if evaluation is None:
        raise LabError("the receiver recorded no evaluation of the subdomain forgery")
    return "rejected" if evaluation.action.startswith("rejected") else evaluation.action


def judge_subdomain_forgery(answer: Any, domain: str, lab: Any) -> Verdict:
    """Exercise of lab 07: what does the receiver do with a forgery from a subdomain that
    does not exist (``pay.<domain>``)? Answer INBOX, Junk or rejected. The question is
    about the secured domain: until the capstone's last step is done, the check says which
    step is missing instead of judging."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", "not answered yet: set subdomain_action")
    missing = _missing_step(CAPSTONE_STEPS, domain, lab)
    if missing is not None:
        return Verdict("unanswered", f"not answered yet: this exercise is about {domain} "
                                     f"once it is secured, and step {missing!r} above is "
                                     "not done: do it first, then run this cell again.")
    said = str(value).strip().lower()
    said = "rejected" if said.startswith("reject") else said
    actual = _capstone_forgery_action(domain, lab)
    if said == actual.lower():
        return Verdict("right", f"the receiver's action: {actual}. With no sp= tag the "
                                "organizational domain's p= covers its subdomains too "
                                "(RFC 9989, the tree walk finds _dmarc." + domain + ").")
    return Verdict("wrong", f"you said {value!r}; the receiver's action was {actual}. Hint: "
                            f"the tree walk from pay.{domain} finds _dmarc.{domain}, and "
                            "without sp= its p= applies to subdomains.")


def check_subdomain_forgery(answer: Any, domain: str, lab: Any) -> None:
    """Check cell for :func:`judge_subdomain_forgery`."""
    report(judge_subdomain_forgery(answer, domain, lab))
