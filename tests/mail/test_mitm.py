"""The STARTTLS downgrade (labsupport.mail.mitm): the three outcomes the TLS lesson teaches."""

from __future__ import annotations

import pytest

import labsupport
from labsupport.core.errors import LabError
from labsupport.mail.mitm import Downgrader, run_scenario, submit
from labsupport.wire.capture import can_sniff

MODES = ["relay", pytest.param("live", marks=pytest.mark.skipif(
    not can_sniff()[0], reason="this process may not sniff (needs root or CAP_NET_RAW)"))]


@pytest.mark.parametrize("mode", MODES)
def test_opportunistic_client_gives_its_password_away(clean_lab: labsupport.Lab,
                                                      mode: str) -> None:
    alice = clean_lab.accounts.get("alice@northwind.test")
    scenario = run_scenario(clean_lab, "starttls", attacker=True, capture_mode=mode)
    assert scenario.transcript.verdict == "accepted"  # the victim sees success
    assert scenario.password_exposed
    assert [s.password for s in scenario.stolen] == [alice.password]
    assert "250-STARTTLS" not in scenario.capture.dialogue().texts()
    assert "250-AUTH LOGIN PLAIN" in scenario.capture.dialogue().texts()
    assert any("upstream: STARTTLS" in line for line in scenario.attacker_log)
    assert "SMTP AUTH (credentials in the clear!)" in scenario.capture.summary().whats()


@pytest.mark.parametrize("mode", MODES)
def test_client_requiring_tls_refuses(clean_lab: labsupport.Lab, mode: str) -> None:
    scenario = run_scenario(clean_lab, "starttls", require_tls=True, attacker=True,
                            capture_mode=mode)
    assert scenario.transcript.verdict == "refused"
    assert not scenario.password_exposed and scenario.stolen == ()
    assert not any(t.startswith("AUTH") for t in scenario.capture.dialogue().texts())


@pytest.mark.parametrize("mode", MODES)
def test_implicit_tls_cannot_be_stripped(clean_lab: labsupport.Lab, mode: str) -> None:
    scenario = run_scenario(clean_lab, "implicit", attacker=True, capture_mode=mode)
    assert scenario.transcript.verdict == "accepted"
    assert not scenario.password_exposed and scenario.stolen == ()
    assert scenario.capture.summary().whats()[2] == "TLS ClientHello"


def test_without_attacker_starttls_protects_and_plain_exposes(clean_lab: labsupport.Lab) -> None:
    safe = run_scenario(clean_lab, "starttls", capture_mode="relay")
    assert safe.transcript.verdict == "accepted" and not safe.password_exposed
    plain = run_scenario(clean_lab, "plain", capture_mode="relay")
    assert plain.transcript.verdict == "accepted" and plain.password_exposed
    assert "password exposed: yes" in plain.title()


def test_plain_role_with_attacker_and_a_careful_client(clean_lab: labsupport.Lab) -> None:
    read = run_scenario(clean_lab, "plain", attacker=True, capture_mode="relay")
    assert read.password_exposed and read.stolen
    careful = run_scenario(clean_lab, "plain", require_tls=True, capture_mode="relay")
    assert careful.transcript.verdict == "refused" and not careful.password_exposed


def test_downgrader_answers_a_stubborn_starttls_with_454(clean_lab: labsupport.Lab) -> None:
    from labsupport import SMTPSession

    with Downgrader(clean_lab) as mitm:
        session = SMTPSession("127.0.0.1", mitm.port, ca_file=clean_lab.ca.ca_file)
        session.connect()
        session.ehlo()
        assert not session.has_extension("STARTTLS") and session.has_extension("AUTH")
        assert session.starttls().code == 454
        session.quit()


def test_bad_arguments_are_refused(lab: labsupport.Lab) -> None:
    with pytest.raises(LabError):
        run_scenario(lab, "carrier-pigeon")
    with pytest.raises(LabError):
        Downgrader(lab, "mx")
    with pytest.raises(LabError):
        submit("127.0.0.1", 1, policy="hopeful", user="a", password="b", rcpt="c",
               message="d")


def test_a_refused_starttls_stays_in_the_clear_in_the_capture(clean_lab: labsupport.Lab) -> None:
    from labsupport import SMTPSession
    from labsupport.wire.capture import capture

    with Downgrader(clean_lab) as mitm, \
            capture(clean_lab, mitm.target(), mode="relay", dns=False) as cap:
        session = SMTPSession("127.0.0.1", cap.port("attacker"), ca_file=clean_lab.ca.ca_file)
        session.connect()
        session.ehlo()
        session.starttls()
        session.noop()
        session.quit()
    dialogue = cap.dialogue()
    assert dialogue.verdict == "clear"
    assert dialogue.texts()[-4:] == ["NOOP", "250 2.0.0 OK", "QUIT", "221 2.0.0 Bye"]


def test_the_downgrader_refuses_another_user(lab: labsupport.Lab,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from labsupport.core.peers import PeerCheck
    from labsupport.mail import mitm

    def another_user(sock: socket.socket) -> PeerCheck:  # made up: no second Unix user
        return PeerCheck(verdict="other-user", summary="belongs to uid 4242",
                         transport="tcp", local=("127.0.0.1", 1), peer=("127.0.0.1", 2),
                         own_uid=0, peer_uid=4242, supported=True)

    monkeypatch.setattr(mitm, "check_socket", another_user)
    with Downgrader(lab) as attacker:
        with socket.create_connection(("127.0.0.1", attacker.port), timeout=5) as sock:
            assert sock.recv(100) == b""  # closed before any greeting is relayed
    assert attacker.log == ["refused a connection: belongs to uid 4242"]
