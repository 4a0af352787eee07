"""Greylisting (labsupport.mail.greylist): the policy on a lab clock, and the MX role using it,
with the lab's own delivering MTA retrying as RFC 5321 section 4.5.4.1 asks."""

from __future__ import annotations

import pytest

import labsupport
from labsupport.core.clock import LabClock
from labsupport.core.errors import LabError
from labsupport.mail.greylist import Greylist
from labsupport.mail.smtp import send_mail


@pytest.fixture
def greylist() -> Greylist:
    clock = LabClock()
    clock.freeze()
    policy = Greylist(clock)
    policy.enable(["tinyshop.test"], delay=300, trusted=["198.51.100.90"])
    return policy


def test_off_until_enabled() -> None:
    policy = Greylist(LabClock())
    assert not policy.enabled and "off" in repr(policy)
    assert policy.check("192.0.2.10", "a@northwind.test", "erin@tinyshop.test") is None


def test_new_triplet_is_deferred_then_accepted_after_the_delay(greylist: Greylist) -> None:
    triplet = ("192.0.2.10", "alice@northwind.test", "erin@tinyshop.test")
    first = greylist.check(*triplet)
    assert first is not None and first.startswith("451 4.7.1 ") and "new here" in first
    greylist.clock.advance(60)
    too_soon = greylist.check(*triplet)
    assert too_soon is not None and "too soon (60 of 300 seconds)" in too_soon
    greylist.clock.advance(240)
    assert greylist.check(*triplet) is None
    # known from now on: the next message passes at once
    assert greylist.check("192.0.2.10", "<Alice@Northwind.test>", "ERIN@tinyshop.test") is None
    [seen] = greylist.triplets()
    assert seen.known and seen.attempts == 3 and seen.passed_at == seen.first_seen + 300


def test_each_part_of_the_triplet_counts(greylist: Greylist) -> None:
    assert greylist.check("192.0.2.10", "alice@northwind.test", "erin@tinyshop.test")
    greylist.clock.advance(300)
    assert greylist.check("192.0.2.10", "alice@northwind.test", "erin@tinyshop.test") is None
    # another client address, another sender: new triplets, deferred again
    assert greylist.check("192.0.2.11", "alice@northwind.test", "erin@tinyshop.test")
    assert greylist.check("192.0.2.10", "bob@northwind.test", "erin@tinyshop.test")


def test_other_domains_and_trusted_hosts_pass(greylist: Greylist) -> None:
    assert greylist.check("192.0.2.10", "alice@northwind.test", "carol@campus.test") is None
    assert greylist.check("198.51.100.90", "erin@tinyshop.test", "erin@tinyshop.test") is None
    assert greylist.triplets() == []


def test_bad_settings_are_refused_in_words() -> None:
    policy = Greylist(LabClock())
    with pytest.raises(LabError, match="at least one recipient domain"):
        policy.enable([])
    with pytest.raises(LabError, match="cannot be negative"):
        policy.enable(["tinyshop.test"], delay=-1)


def test_disable_forgets_everything(greylist: Greylist) -> None:
    greylist.check("192.0.2.10", "alice@northwind.test", "erin@tinyshop.test")
    assert "deferred" in str(greylist) and "<table" in greylist._repr_html_()
    greylist.disable()
    assert not greylist.enabled and greylist.triplets() == []
    assert "Greylisting is off" in str(greylist)


def test_the_mx_role_greylists_and_the_queue_gets_through(clean_lab: labsupport.Lab) -> None:
    lab = clean_lab
    lab.smtp.greylist.enable(["tinyshop.test"])
    message = ("From: Alice <alice@northwind.test>\r\nTo: erin@tinyshop.test\r\n"
               "Subject: teapots\r\n\r\nDo you have the blue one?\r\n")
    direct = send_mail("127.0.0.1", lab.smtp.port("mx"), mail_from="alice@northwind.test",
                       rcpt_to=["erin@tinyshop.test"], message=message,
                       xclient={"ADDR": "192.0.2.10", "HELO": "out.northwind.test"})
    assert direct.verdict == "rejected" and direct.temporary
    assert direct.stopped_by is not None and direct.stopped_by.code == 451
    assert any(e.event == "greylisted" for e in lab.smtp.log.entries())

    # The submission role is not greylisted; the delivering MTA meets the MX role's
    # greylisting, keeps the message and delivers it on a retry after the delay.
    alice = lab.accounts.get("alice@northwind.test")
    sent = send_mail("127.0.0.1", lab.smtp.port("submission"), mail_from=alice.address,
                     rcpt_to=["erin@tinyshop.test"], message=message, tls="starttls",
                     auth=(alice.address, alice.password), ca_file=lab.ca.ca_file)
    assert sent.verdict == "accepted"
    assert lab.queue is not None
    lab.queue.wait_idle(15)
    assert lab.queue.history(last=1)[-1].verdict == "deferred"
    assert lab.mail.messages("erin@tinyshop.test") == []
    lab.clock.advance(3600)
    lab.queue.flush()
    lab.queue.wait_idle(15)
    assert lab.queue.history(last=1)[-1].verdict == "delivered"
    assert len(lab.mail.messages("erin@tinyshop.test")) == 1

    lab.reset()
    assert not lab.smtp.greylist.enabled
