"""Exercise checks of the TLS lesson: right, wrong and unanswered answers."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

import labsupport
from labsupport import checks
from labsupport.core.errors import CheckFailed
from labsupport.mail.mailstore import MailStore
from labsupport.mail.mitm import run_scenario


@pytest.fixture(scope="module")
def downgraded(lab: labsupport.Lab) -> labsupport.wire.capture.Capture:
    scenario = run_scenario(lab, "starttls", attacker=True, capture_mode="relay")
    return scenario.capture


@pytest.fixture(scope="module")
def starttls(lab: labsupport.Lab) -> labsupport.wire.capture.Capture:
    return run_scenario(lab, "starttls", capture_mode="relay").capture


def unanswered() -> object:
    raise NotImplementedError


def test_round_trips(starttls: labsupport.wire.capture.Capture) -> None:
    assert checks.judge_round_trips(4, starttls, "STARTTLS").right
    assert checks.judge_round_trips(2, starttls).status == "wrong"
    assert checks.judge_round_trips("many", starttls).status == "wrong"
    assert checks.judge_round_trips(unanswered, starttls).status == "unanswered"
    with pytest.raises(CheckFailed):
        checks.check_round_trips(lambda: 1, starttls)
    checks.check_round_trips(lambda: 4, starttls)


def test_stolen_password(lab: labsupport.Lab, downgraded: labsupport.wire.capture.Capture) -> None:
    alice = lab.accounts.get("alice@northwind.test")
    assert checks.judge_stolen_password(alice.password, downgraded).right
    user = checks.judge_stolen_password(alice.address, downgraded)
    assert user.status == "wrong" and "user name" in user.message
    assert checks.judge_stolen_password("hunter2", downgraded).status == "wrong"
    assert checks.judge_stolen_password(unanswered, downgraded).status == "unanswered"
    checks.check_stolen_password(lambda: alice.password, downgraded)


def test_verifying_context(lab: labsupport.Lab) -> None:
    port = lab.smtp.port("submissions")
    right = ssl.create_default_context(cafile=str(lab.ca.ca_file))
    assert checks.judge_verifying_context(right, port).right
    assert checks.judge_verifying_context(ssl.create_default_context(), port).status == "wrong"
    lax = ssl.create_default_context(cafile=str(lab.ca.ca_file))
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    assert "middle" in checks.judge_verifying_context(lax, port).message
    assert checks.judge_verifying_context(right, port, "evil.example").status == "wrong"
    assert checks.judge_verifying_context("context", port).status == "wrong"
    assert checks.judge_verifying_context(unanswered, port).status == "unanswered"
    with pytest.raises(CheckFailed):
        checks.check_verifying_context(lambda: lax, port)


def test_imap_message_id(tmp_path: Path) -> None:
    store = MailStore(tmp_path / "mail")
    address = "carol@campus.test"
    assert checks.judge_imap_message_id("<x@y>", store, address).status == "wrong"  # empty
    for n in (1, 2):
        store.deliver(address, f"Message-ID: <m{n}@lab.test>\r\nSubject: {n}\r\n\r\nHi\r\n"
                      .encode())
    assert checks.judge_imap_message_id("<m2@lab.test>", store, address).right
    assert checks.judge_imap_message_id(b"Message-ID: <m2@lab.test>\r\n", store, address).right
    older = checks.judge_imap_message_id("<m1@lab.test>", store, address)
    assert older.status == "wrong" and "older message" in older.message
    assert "no message with that" in checks.judge_imap_message_id("<zz@q>", store, address).message
    assert checks.judge_imap_message_id(unanswered, store, address).status == "unanswered"
    with pytest.raises(CheckFailed):
        checks.check_imap_message_id(lambda: "<m1@lab.test>", store, address)
