"""Captures in both modes: real pcaps that scapy and tshark read, summaries, dialogues,
and TLS 1.3 decryption with a key log (labsupport.wire.capture)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import labsupport
from labsupport import send_mail
from labsupport.wire.capture import (
    Capture,
    CaptureError,
    can_sniff,
    capture,
    keylog_path,
    load,
)

MODES = ["relay", pytest.param("live", marks=pytest.mark.skipif(
    not can_sniff()[0], reason="this process may not sniff (needs root or CAP_NET_RAW)"))]
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

BODY = "The body: meet at the station at noon."
#: Long lines, so the message is larger than one TCP segment and one TLS record spans
#: several segments in the relay's packets.
MESSAGE = (f"From: alice@northwind.test\r\nTo: carol@campus.test\r\nSubject: capture\r\n\r\n"
           f"{BODY}\r\n" + ("y" * 900 + "\r\n") * 5)


def tshark(cap: Capture, *args: str, keylog: Path | None = None) -> str:
    argv = ["tshark", "-r", str(cap.path)]
    for hint in cap.decode_hints():
        argv += hint.split(" ", 1)
    if keylog is not None:
        argv += ["-o", f"tls.keylog_file:{keylog}"]
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def plain_capture(lab: labsupport.Lab, mode: str) -> Capture:
    lab.smtp.enable_legacy()
    alice = lab.accounts.get("alice@northwind.test")
    with capture(lab, "legacy", mode=mode) as cap:
        answer = cap.query("northwind.test", "MX")
        sent = send_mail("127.0.0.1", cap.port("legacy"), mail_from=alice.address,
                         rcpt_to="carol@campus.test", message=MESSAGE,
                         auth=(alice.address, alice.password), allow_plaintext_auth=True)
    assert answer.rcode == "NOERROR"
    assert sent.verdict == "accepted", sent.summary
    return cap


def tls_capture(lab: labsupport.Lab, mode: str, tls: str, keylog: Path) -> Capture:
    role = "submission" if tls == "starttls" else "submissions"
    alice = lab.accounts.get("alice@northwind.test")
    with capture(lab, role, mode=mode, dns=False) as cap:
        sent = send_mail("127.0.0.1", cap.port(role), mail_from=alice.address,
                         rcpt_to="carol@campus.test", message=MESSAGE, tls=tls,
                         auth=(alice.address, alice.password), ca_file=lab.ca.ca_file,
                         keylog_file=keylog)
    assert sent.verdict == "accepted", sent.summary
    return cap


@pytest.mark.parametrize("mode", MODES)
def test_plain_capture_is_a_real_pcap(clean_lab: labsupport.Lab, mode: str) -> None:
    from scapy.layers.inet import TCP, UDP
    from scapy.utils import rdpcap

    cap = plain_capture(clean_lab, mode)
    assert cap.mode == mode
    assert cap.path is not None and cap.path.exists()
    packets = rdpcap(str(cap.path))
    assert any(TCP in p for p in packets) and any(UDP in p for p in packets)
    whats = cap.summary().whats()
    for expected in ("TCP SYN (open)", "SMTP EHLO", "SMTP MAIL FROM", "SMTP DATA",
                     "SMTP message content", "DNS MX query for northwind.test.",
                     "SMTP AUTH (credentials in the clear!)", "TCP FIN (close)"):
        assert expected in whats, (expected, whats)
    messages = cap.dns_messages()
    assert [d for d, _ in messages][:2] == ["client → server", "server → client"]
    assert messages[0][1].id == messages[1][1].id and len(messages[1][1].answer) == 1
    dialogue = cap.dialogue()
    assert dialogue.verdict == "clear"
    assert dialogue.contains("EHLO client.lab.test") and dialogue.contains(BODY)
    alice = clean_lab.accounts.get("alice@northwind.test")
    assert alice.password in dialogue.credentials()
    assert cap.round_trips() is None  # never protected


def test_relay_packets_use_the_lab_world(clean_lab: labsupport.Lab) -> None:
    from scapy.layers.inet import IP, TCP, UDP

    cap = plain_capture(clean_lab, "relay")
    tcp = [p for p in cap.packets if TCP in p]
    assert {p[IP].dst for p in tcp if p[TCP].dport == 587} == {"192.0.2.30"}
    assert {p[UDP].dport for p in cap.packets if UDP in p and p[IP].dst == "192.0.2.53"} \
        == {53}
    assert cap.decode_hints() == []
    # The handshake, then sequence numbers that follow the bytes sent.
    assert [str(p[TCP].flags) for p in tcp[:3]] == ["S", "SA", "A"]
    expected: dict[tuple[str, int], int] = {}
    for p in tcp:
        key = (p[IP].src, p[TCP].sport)
        seq = int(p[TCP].seq)
        if key in expected:
            assert seq == expected[key], p.summary()
        size = len(bytes(p[TCP].payload))
        expected[key] = seq + size + (1 if p[TCP].flags & 0x03 else 0)
        if p[TCP].flags & 0x10:  # ACK: acknowledges everything the other side sent
            other = (p[IP].dst, p[TCP].dport)
            assert int(p[TCP].ack) == expected.get(other, int(p[TCP].ack)), p.summary()


@needs_tshark
@pytest.mark.parametrize("mode", MODES)
def test_tshark_decodes_smtp_and_dns(clean_lab: labsupport.Lab, mode: str) -> None:
    cap = plain_capture(clean_lab, mode)
    everything = tshark(cap)
    assert "Malformed" not in everything
    assert "EHLO client.lab.test" in tshark(cap, "-Y", "smtp")
    assert "MX northwind.test" in tshark(cap, "-Y", "dns")
    analysis = tshark(cap, "-Y", "tcp.analysis.flags && !tcp.analysis.window_update")
    if mode == "relay":  # synthesized packets: no lost segment, no retransmission
        assert analysis.strip() == "", analysis


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_tls13_dialogue_is_recovered_with_the_key_log(clean_lab: labsupport.Lab, mode: str,
                                                      tls: str) -> None:
    keylog = keylog_path(clean_lab, "test")
    cap = tls_capture(clean_lab, mode, tls, keylog)
    clear = cap.dialogue()
    assert clear.verdict == "tls", cap.summary(show_acks=True).text()
    assert not clear.contains(BODY) and not clear.contains("AUTH PLAIN")
    whats = cap.summary().whats()
    assert "TLS ClientHello" in whats
    assert any("application data" in w for w in whats)
    view = cap.decrypt(keylog)
    assert view.verdict == "decrypted", view.summary
    assert view.contains("AUTH PLAIN") and view.contains(BODY)
    alice = clean_lab.accounts.get("alice@northwind.test")
    assert alice.password in view.credentials()
    assert view.server_hello["version"] == "TLS 1.3"
    assert "TLS 1.3" in view.client_hello["versions"]
    assert "smtp.lab.test" in view.certificate["names"]
    assert cap.round_trips() == (4 if tls == "starttls" else 2)
    assert f"tls.keylog_file:{keylog}" in cap.tshark_command(keylog)


def test_relay_splits_records_across_segments(clean_lab: labsupport.Lab) -> None:
    keylog = keylog_path(clean_lab, "split")
    cap = tls_capture(clean_lab, "relay", "implicit", keylog)
    assert any("continued record" in w for w in cap.summary().whats())
    assert cap.decrypt(keylog).contains(BODY)


@needs_tshark
def test_tshark_decrypts_with_the_key_log(clean_lab: labsupport.Lab) -> None:
    keylog = keylog_path(clean_lab, "tshark")
    cap = tls_capture(clean_lab, "relay", "starttls", keylog)
    assert "AUTH PLAIN" not in tshark(cap, "-Y", "smtp")
    decrypted = tshark(cap, "-Y", "smtp", keylog=keylog)
    assert "AUTH PLAIN" in decrypted and "Malformed" not in decrypted


def test_a_wrong_key_log_decrypts_nothing(clean_lab: labsupport.Lab, tmp_path: Path) -> None:
    keylog = keylog_path(clean_lab, "right")
    cap = tls_capture(clean_lab, "relay", "implicit", keylog)
    other = tmp_path / "other.keylog"
    other.write_text("")
    assert cap.decrypt(other).verdict == "not decrypted"
    with pytest.raises(CaptureError):
        cap.decrypt(tmp_path / "missing.keylog")


def test_a_saved_capture_reads_the_same(clean_lab: labsupport.Lab) -> None:
    cap = plain_capture(clean_lab, "relay")
    again = load(cap.path)  # type: ignore[arg-type]
    assert again.summary().whats() == cap.summary().whats()
    assert again.dialogue().texts() == cap.dialogue().texts()


def test_capture_says_how_to_connect_and_refuses_misuse(lab: labsupport.Lab) -> None:
    with capture(lab, "mx", mode="relay") as cap:
        assert cap.port("mx") != lab.smtp.port("mx")
        assert cap.dns_port != lab.dns.port
        with pytest.raises(CaptureError):
            cap.port("submission")
        with pytest.raises(CaptureError):
            cap.summary()
    assert "relay" in cap.describe()
    assert cap.summary().rows == ()
    with pytest.raises(CaptureError):
        capture(lab, mode="sideways")


def test_the_ladder_is_drawn(clean_lab: labsupport.Lab) -> None:
    import matplotlib

    matplotlib.use("Agg")
    cap = plain_capture(clean_lab, "relay")
    from labsupport.teach.plots import capture_ladder

    fig = capture_ladder(cap.summary())
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("EHLO" in t for t in texts)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_auto_mode_falls_back_to_the_relay(lab: labsupport.Lab,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import labsupport.wire.capture as capture_module

    monkeypatch.delenv("MAIL_LABS_CAPTURE", raising=False)
    monkeypatch.setattr(capture_module, "can_sniff", lambda: (False, "not allowed here"))
    with capture(lab, "mx") as cap:
        pass
    assert cap.mode == "relay" and "not allowed here" in cap.why
    monkeypatch.setenv("MAIL_LABS_CAPTURE", "relay")
    monkeypatch.setattr(capture_module, "can_sniff", lambda: (True, "root"))
    with capture(lab, "mx") as forced:
        pass
    assert forced.mode == "relay" and "MAIL_LABS_CAPTURE" in forced.why


@pytest.mark.skipif(not can_sniff()[0], reason="this process may not sniff")
@needs_tshark
def test_live_implicit_tls_hints_let_tshark_decrypt(clean_lab: labsupport.Lab) -> None:
    keylog = keylog_path(clean_lab, "live")
    cap = tls_capture(clean_lab, "live", "implicit", keylog)
    port = clean_lab.smtp.port("submissions")
    assert f"-d tls.port=={port},smtp" in cap.decode_hints()
    assert f"-d tcp.port=={port},tls" in cap.tshark_command()
    assert "AUTH PLAIN" in tshark(cap, "-Y", "smtp", keylog=keylog)


@pytest.mark.parametrize("mode", MODES)
def test_dns_only_capture(lab: labsupport.Lab, mode: str) -> None:
    with capture(lab, "dns", mode=mode) as cap:
        assert cap.targets == {}
        answer = cap.resolver().resolve("campus.test", "MX")
        cap.query("nosuchhost.northwind.test", "A")
    assert len(answer) == 2
    whats = cap.summary().whats()
    asked = whats.index("DNS MX query for campus.test.")
    assert "DNS MX response for campus.test.: NOERROR, 2 answers" in whats[asked + 1:]
    assert "DNS A response for nosuchhost.northwind.test.: NXDOMAIN, 0 answers" in whats
    assert all(row.protocol == "DNS" for row in cap.summary().rows)


def test_auto_mode_survives_a_failing_sniffer(lab: labsupport.Lab,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import labsupport.wire.capture as capture_module

    def broken(self: Capture) -> None:
        raise OSError("no loopback here")

    monkeypatch.delenv("MAIL_LABS_CAPTURE", raising=False)
    monkeypatch.setattr(capture_module, "can_sniff", lambda: (True, "root"))
    monkeypatch.setattr(Capture, "_start_live", broken)
    with capture(lab, "mx") as cap:
        pass
    assert cap.mode == "relay" and "no loopback here" in cap.why
    with pytest.raises(CaptureError, match="no loopback here"):
        capture(lab, "mx", mode="live").start()


# -- who may read a capture, and who may use the relay ----------------------------------------


def test_captures_are_private_to_their_user(clean_lab: labsupport.Lab, tmp_path: Path) -> None:
    import os
    import stat

    folder = clean_lab.state_dir / "captures"
    if folder.exists():
        folder.chmod(0o755)  # as an older version left it
    cap = plain_capture(clean_lab, "relay")  # it sent a password in the clear
    assert cap.path is not None and cap.path.parent == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(cap.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keylog_path(clean_lab).parent).st_mode) == 0o700
    # A file the caller names outside the state directory keeps the usual mode.
    mask = os.umask(0o022)
    try:
        with capture(clean_lab, "mx", mode="relay", dns=False, path=tmp_path / "a.pcap") as out:
            pass
    finally:
        os.umask(mask)
    assert out.path is not None and stat.S_IMODE(out.path.stat().st_mode) == 0o644


def test_the_relay_refuses_another_user(clean_lab: labsupport.Lab,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from labsupport.core.peers import PeerCheck
    from labsupport.wire import relay

    def another_user(sock: socket.socket, peer: object = None) -> PeerCheck:  # made up
        return PeerCheck(verdict="other-user", summary="belongs to uid 4242",
                         transport="tcp", local=("127.0.0.1", 1), peer=("127.0.0.1", 2),
                         own_uid=0, peer_uid=4242, supported=True)

    with capture(clean_lab, "mx", mode="relay") as cap:
        monkeypatch.setattr(relay, "check_socket", another_user)
        with socket.create_connection(("127.0.0.1", cap.port("mx")), timeout=5) as sock:
            assert sock.recv(100) == b""  # closed at once: no greeting relayed
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(0.5)
            udp.sendto(b"\x12\x34" + b"\x00" * 10, ("127.0.0.1", cap.dns_port))
            with pytest.raises(TimeoutError):
                udp.recv(512)  # dropped, not forwarded
        relays = [cap._relays["mx"], cap._udp]
    assert all(r is not None and r.refused and r.refused[-1].peer_uid == 4242 for r in relays)
    assert cap.summary().whats() == [] and cap.dns_messages() == []
