"""The capstone (notebooks/07-capstone-secure-a-domain.ipynb): newco.test starts with no
MX, SPF, DKIM or DMARC; the receiver report after each step; signing configured at run
time (lab.smtp.set_signing_key); the step checks and the subdomain exercise against
right, wrong and unanswered answers; the account added to an older accounts.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import labsupport
from labsupport import checks, dkim
from labsupport.core.errors import CheckFailed, LabError
from labsupport.dns.mx import mx_hosts
from labsupport.dns.zone import ZoneSet
from labsupport.mail.accounts import Accounts

DOMAIN = "newco.test"


@pytest.fixture
def newco(lab: labsupport.Lab) -> Iterator[labsupport.Lab]:
    lab.reset()
    lab.smtp.set_signing_key(DOMAIN, None)
    yield lab
    lab.smtp.set_signing_key(DOMAIN, None)
    lab.reset()


def secure(lab: labsupport.Lab, *, through: str) -> None:
    """Do the capstone's steps up to and including ``through``."""
    steps = checks.CAPSTONE_STEPS
    for step in steps[: steps.index(through) + 1]:
        if step == "mx":
            lab.zones.set("mx.newco.test", "A", "198.51.100.72")
            lab.zones.set(DOMAIN, "MX", "10 mx.newco.test.")
        elif step == "spf":
            lab.zones.set(DOMAIN, "TXT", "v=spf1 ip4:198.51.100.71 -all")
        elif step == "dkim":
            key = dkim.generate_key("ed25519")
            dkim.publish(lab.zones, DOMAIN, "t1", key)
            lab.smtp.set_signing_key(DOMAIN, key, "t1")
        else:
            policy = step.split("-")[1]
            lab.zones.set(f"_dmarc.{DOMAIN}", "TXT", f"v=DMARC1; p={policy}")


# -- the lab world ----------------------------------------------------------------------


def test_newco_starts_with_nothing_for_mail(world: ZoneSet) -> None:
    assert DOMAIN in world.mail_domains()
    assert mx_hosts(DOMAIN, world).verdict == "no-mail-host"  # no MX, no apex address
    assert checks.spf_record_of(DOMAIN, world) is None
    for name in (f"_dmarc.{DOMAIN}", f"lab2026-rsa._domainkey.{DOMAIN}"):
        assert not world.lookup(name, "TXT").answer
    assert str(next(iter(world.resolve("out.newco.test", "A")))) == "198.51.100.71"
    ptr = world.resolve("71.100.51.198.in-addr.arpa", "PTR")
    assert str(next(iter(ptr))) == "out.newco.test."


def test_an_older_accounts_file_gains_nina(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"accounts": [
        {"address": "alice@northwind.test", "password": "kept", "name": "Alice Adams"}]}))
    accounts = Accounts.load_or_create(path)
    nina = accounts.get("nina@newco.test")
    assert nina is not None and nina.name == "Nina Novak" and nina.password
    assert accounts.check("alice@northwind.test", "kept")
    assert "nina@newco.test" in json.loads(path.read_text())["accounts"][-1]["address"]


# -- signing configured at run time ------------------------------------------------------


def test_set_signing_key_and_unset(newco: labsupport.Lab) -> None:
    assert newco.smtp.signing_key(DOMAIN) is None
    key = dkim.generate_key("ed25519")
    newco.smtp.set_signing_key(DOMAIN, key, "s1")
    assert newco.smtp.signing_key("NewCo.test.") is key
    assert newco.smtp.signing_selector(DOMAIN) == "s1"
    newco.smtp.set_signing_key(DOMAIN, None)
    assert newco.smtp.signing_key(DOMAIN) is None
    assert newco.smtp.signing_selector("northwind.test") == "lab2026-rsa"
    with pytest.raises(LabError, match="selector"):
        newco.smtp.set_signing_key(DOMAIN, key)  # a generated key has no selector yet


# -- the receiver report after each step -------------------------------------------------


def test_before_anything_every_forgery_reaches_the_inbox(newco: labsupport.Lab) -> None:
    report = checks.receiver_report(DOMAIN, newco)
    assert [o.action for o in report.outcomes] == ["INBOX"] * 3
    assert [o.dmarc for o in report.outcomes] == ["none"] * 3
    assert report.outcomes[1].spf == "pass"  # the attacker's own envelope domain
    assert report.receiving.startswith("undeliverable")
    assert not report.secured and "2 of 2 forgeries" in report.conclusion()
    assert "newco.test" in str(report) and "<table" in report._repr_html_()


def test_spf_fails_forgery_two_but_nothing_is_refused(newco: labsupport.Lab) -> None:
    secure(newco, through="spf")
    report = checks.receiver_report(DOMAIN, newco)
    assert [o.spf for o in report.outcomes] == ["pass", "pass", "fail"]
    assert [o.action for o in report.outcomes] == ["INBOX"] * 3
    assert report.receiving.startswith("deliverable")
    assert "does not act on it" in report.outcomes[2].meaning


def test_dkim_signs_nina_with_the_configured_selector(newco: labsupport.Lab) -> None:
    secure(newco, through="dkim")
    report = checks.receiver_report(DOMAIN, newco)
    assert [o.dkim for o in report.outcomes] == ["pass", "none", "none"]
    assert any("d=newco.test s=t1" in e.detail for e in newco.smtp.log.entries()
               if e.event == "dkim signed")


def test_p_none_monitors_and_p_reject_refuses(newco: labsupport.Lab) -> None:
    secure(newco, through="dmarc-none")
    watching = checks.receiver_report(DOMAIN, newco)
    assert [o.dmarc for o in watching.outcomes] == ["pass", "fail", "fail"]
    assert [o.action for o in watching.outcomes] == ["INBOX"] * 3
    secure(newco, through="dmarc-reject")
    done = checks.receiver_report(DOMAIN, newco)
    assert done.secured and done.legitimate_pass and done.forgeries_rejected
    assert all(o.reply.startswith("550 5.7.1") for o in done.forgeries)
    assert "secured" in done.conclusion()


def test_genuine_mail_that_fails_is_reported_as_genuine(newco: labsupport.Lab) -> None:
    # p=reject without SPF or DKIM: NewCo rejects its own mail
    newco.zones.set(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject")
    report = checks.receiver_report(DOMAIN, newco)
    assert report.forgeries_rejected and not report.legitimate_pass
    assert "own mail does not pass" in report.conclusion()


def test_no_account_at_the_domain(newco: labsupport.Lab) -> None:
    with pytest.raises(LabError, match="no account"):
        checks.receiver_report("parked.test", newco)


# -- the step checks -----------------------------------------------------------------------


@pytest.mark.parametrize("step", checks.CAPSTONE_STEPS)
def test_step_unanswered_wrong_right(newco: labsupport.Lab, step: str) -> None:
    def unanswered() -> object:
        raise NotImplementedError

    assert checks.judge_secure_step(unanswered, step, DOMAIN, newco).status == "unanswered"
    index = checks.CAPSTONE_STEPS.index(step)
    if index:
        secure(newco, through=checks.CAPSTONE_STEPS[index - 1])
    if step != "dmarc-reject":  # after p=none, p=reject is still wrong
        assert checks.judge_secure_step(lambda: "x", step, DOMAIN, newco).status == "wrong"
        with pytest.raises(CheckFailed):
            checks.check_secure_step(lambda: "x", step, DOMAIN, newco)
    else:
        assert checks.judge_secure_step(lambda: "x", step, DOMAIN, newco).status == "wrong"
    secure(newco, through=step)
    assert checks.judge_secure_step(lambda: "x", step, DOMAIN, newco).right


def test_wrong_spf_and_unpublished_key(newco: labsupport.Lab) -> None:
    newco.zones.set(DOMAIN, "TXT", "v=spf1 +all")
    verdict = checks.judge_secure_step(lambda: "v=spf1 +all", "spf", DOMAIN, newco)
    assert verdict.status == "wrong" and "-all" in verdict.message
    newco.smtp.set_signing_key(DOMAIN, dkim.generate_key("ed25519"), "unpublished")
    verdict = checks.judge_secure_step(lambda: "unpublished", "dkim", DOMAIN, newco)
    assert verdict.status == "wrong" and "unpublished._domainkey.newco.test" in verdict.message
    with pytest.raises(LabError, match="unknown step"):
        checks.judge_secure_step(lambda: 1, "arc", DOMAIN, newco)


# -- the subdomain exercise ----------------------------------------------------------------


def test_subdomain_forgery(newco: labsupport.Lab) -> None:
    assert checks.judge_subdomain_forgery(lambda: None, DOMAIN, newco).status == "unanswered"
    secure(newco, through="dmarc-reject")
    assert checks.judge_subdomain_forgery(lambda: "rejected", DOMAIN, newco).right
    assert checks.judge_subdomain_forgery(lambda: "Reject", DOMAIN, newco).right
    wrong = checks.judge_subdomain_forgery(lambda: "INBOX", DOMAIN, newco)
    assert wrong.status == "wrong" and "sp=" in wrong.message
    newco.zones.set(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject; sp=none")
    assert checks.judge_subdomain_forgery(lambda: "INBOX", DOMAIN, newco).right


def test_lab_reset_forgets_signing_keys_set_at_run_time(clean_lab) -> None:
    from labsupport import dkim_keys

    key = dkim_keys.generate_key("ed25519")
    clean_lab.smtp.set_signing_key("newco.test", key, selector="reset-test")
    assert clean_lab.smtp.signing_selector("newco.test") == "reset-test"
    clean_lab.reset()
    assert clean_lab.smtp.signing_selector("newco.test") != "reset-test"
