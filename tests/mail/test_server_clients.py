"""Real clients no one here wrote, against ``python -m labsupport serve``: swaks, openssl
s_client and curl, on every role they can speak to. Each test is skipped, with the reason,
only when its tool is not installed (``.ci/run`` installs them all)."""

from __future__ import annotations

import functools
import json
import shutil
import smtplib
import socket
import ssl
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from lab_helpers import Served, run_cli

from labsupport.mail.mailstore import MailStore, StoredMessage
from labsupport.wire.tls import LabCA

TOOL_TIMEOUT = 30  # seconds a client may take before the test fails
ARRIVAL_TIMEOUT = 20  # seconds for submitted mail to cross the lab's queue to a mailbox


@functools.cache
def swaks_tls_problem() -> str | None:
    if shutil.which("swaks") is None:
        return "swaks is not installed (apt-get install swaks)"
    if shutil.which("perl") is None or subprocess.run(
            ["perl", "-MNet::SSLeay", "-e", "1"], capture_output=True, check=False).returncode:
        return "swaks cannot speak TLS without Net::SSLeay (apt-get install libnet-ssleay-perl)"
    return None


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it with apt-get)")


def need_swaks_tls() -> None:
    problem = swaks_tls_problem()
    if problem:
        pytest.skip(problem)


def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT, check=False)


def port(served: Served, role: str) -> str:
    return str(served.info["smtp"][role]["port"])


def account(served: Served, address: str = "alice@northwind.test") -> tuple[str, str]:
    [found] = [a for a in served.info["accounts"] if a["address"] == address]
    return found["address"], found["password"]


def marker() -> str:
    return f"lab-{uuid.uuid4().hex[:12]}"


def arrived(served: Served, address: str, subject: str,
            timeout: float = ARRIVAL_TIMEOUT) -> StoredMessage:
    """The message with ``subject`` in ``address``'s mailbox, once it is there (mail
    submitted for delivery crosses the lab's queue first)."""
    store = MailStore(served.state_dir / "mail")
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in store.messages(address) if m.subject == subject]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            pytest.fail(f"no message {subject!r} for {address} after {timeout} s")
        time.sleep(0.05)


def swaks(served: Served, role: str, subject: str, *extra: str,
          to: str = "carol@campus.test") -> subprocess.CompletedProcess[str]:
    return run("swaks", "--server", f"127.0.0.1:{port(served, role)}", "--to", to,
               "--header", f"Subject: {subject}", "--timeout", "20", *extra)


def swaks_login(served: Served) -> list[str]:
    address, password = account(served)
    return ["--auth", "PLAIN", "--auth-user", address, "--auth-password", password,
            "--from", address]


# -- what serve says -------------------------------------------------------------------------


def test_serve_json_names_roles_ca_and_accounts(served: Served) -> None:
    info = served.info
    assert set(info["smtp"]) == {"mx", "submission", "submissions"}
    assert all(role["host"] == "127.0.0.1" and role["port"] > 0 for role in info["smtp"].values())
    assert Path(info["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert [a["address"] for a in info["accounts"]][:2] == ["alice@northwind.test",
                                                           "bob@northwind.test"]
    assert all(len(a["password"]) >= 12 for a in info["accounts"])


def test_serve_prints_mail_events(served: Served) -> None:
    subject = marker()
    with smtplib.SMTP("127.0.0.1", int(port(served, "mx")), timeout=TOOL_TIMEOUT) as client:
        client.sendmail("bob@northwind.test", ["carol@campus.test"],
                        f"Subject: {subject}\r\n\r\nhi\r\n".encode())
    arrived(served, "carol@campus.test", subject)
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    while not any(line.startswith("smtp: ") and " mx " in line and "delivered" in line
                  for line in served.output):
        assert time.monotonic() < deadline, served.output[-10:]
        time.sleep(0.05)


def test_rude_clients_leave_nothing_on_stderr(served: Served) -> None:
    """Clients that hang up at every awkward moment: the server's process must not
    print warnings or tracebacks (asyncio complains loudly about some of these)."""
    before = len(served.errors)
    mx, sub, subs = (int(port(served, r)) for r in ("mx", "submission", "submissions"))
    context = ssl.create_default_context(cafile=served.info["ca_file"])

    def connect(port_number: int) -> socket.socket:
        return socket.create_connection(("127.0.0.1", port_number), timeout=TOOL_TIMEOUT)

    with connect(sub) as sock:  # STARTTLS, then no TLS at all
        sock.recv(200)
        sock.sendall(b"EHLO rude.example\r\nSTARTTLS\r\n")
        sock.recv(500)
        sock.sendall(b"this is not a TLS ClientHello\r\n" * 3)
    with connect(subs) as sock:  # plain text to the implicit-TLS port
        sock.sendall(b"EHLO rude.example\r\n")
    connect(subs).close()  # and gone before the handshake
    for _ in range(5):  # a race: the EHLO reply meets the hang-up more or less often
        with context.wrap_socket(connect(subs), server_hostname="127.0.0.1") as tls:
            tls.recv(200)
            tls.sendall(b"EHLO rude.example\r\n")  # then hang up before the reply
        with context.wrap_socket(connect(subs), server_hostname="127.0.0.1") as tls:
            tls.recv(200)
            tls.sendall(b"NOOP\r\n" * 20)  # pipelined, and gone
    with connect(mx) as sock:  # a reset in the middle of DATA
        sock.recv(200)
        sock.sendall(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<carol@campus.test>\r\n"
                     b"DATA\r\nSubject: half\r\n\r\nhalf a messa")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with smtplib.SMTP("127.0.0.1", mx, timeout=TOOL_TIMEOUT) as client:  # still serving
        assert client.noop()[0] == 250
    time.sleep(0.5)  # let the server's stderr reach the pump thread
    assert served.errors[before:] == []


# -- swaks ---------------------------------------------------------------------------------------


def test_swaks_plain_to_the_mx_role(served: Served) -> None:
    need("swaks")
    subject = marker()
    done = swaks(served, "mx", subject, "--from", "bob@northwind.test", "--helo", "pc.example")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<-  250 2.0.0 Ok: delivered as " in done.stdout
    assert "<-  250-ENHANCEDSTATUSCODES" in done.stdout and "AUTH" not in done.stdout
    stored = arrived(served, "carol@campus.test", subject)
    assert stored.message["Received"].startswith("from pc.example (localhost [127.0.0.1])")


def test_swaks_with_xclient_is_seen_as_the_attacker(served: Served) -> None:
    need("swaks")
    subject = marker()
    done = swaks(served, "mx", subject, "--from", "ceo@northwind.test", "--xclient-addr",
                 "203.0.113.66", "--xclient-helo", "out.phisher.example")
    assert " -> XCLIENT ADDR=203.0.113.66 HELO=out.phisher.example" in done.stdout
    assert "<-  220 mx.lab.test" in done.stdout
    # northwind.test publishes DMARC p=reject: the attacker's message is refused
    assert done.returncode != 0, done.stdout
    assert "<** 550 5.7.1 Message rejected: DMARC policy of northwind.test" in done.stdout
    log = run_cli("log", "--mail", "--last", "50", home=served.home)
    assert "203.0.113.66 (XCLIENT, really 127.0.0.1:" in log.stdout
    assert "rejected" in log.stdout


def test_swaks_mx_refuses_auth_and_relaying(served: Served) -> None:
    need("swaks")
    done = swaks(served, "mx", marker(), *swaks_login(served))
    assert done.returncode != 0
    assert "did not advertise authentication" in done.stdout + done.stderr
    relay = swaks(served, "mx", marker(), "--from", "bob@northwind.test",
                  to="someone@gmail.com")
    assert relay.returncode != 0 and "<** 550 5.7.1 <someone@gmail.com>: Relay access denied" \
        in relay.stdout


def test_swaks_starttls_and_auth_to_submission(served: Served) -> None:
    need_swaks_tls()
    subject = marker()
    done = swaks(served, "submission", subject, "--tls", "--tls-verify", "--tls-ca-path",
                 served.info["ca_file"], *swaks_login(served))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<-  250-STARTTLS" in done.stdout
    before_tls = done.stdout.split("-> STARTTLS")[0]
    assert "250-AUTH" not in before_tls  # AUTH is offered only inside TLS
    assert "<~  250-AUTH LOGIN PLAIN" in done.stdout
    assert "<~  235 2.7.0 Authentication successful" in done.stdout
    assert " ~> MAIL FROM:<alice@northwind.test>" in done.stdout
    stored = arrived(served, "carol@campus.test", subject)
    assert "with ESMTPSA" in " ".join(str(h) for h in stored.message.get_all("Received", []))


def test_swaks_auth_login_tls_on_connect_to_submissions(served: Served) -> None:
    need_swaks_tls()
    subject = marker()
    address, password = account(served, "dave@campus.test")
    done = swaks(served, "submissions", subject, "--tls-on-connect", "--tls-verify",
                 "--tls-ca-path", served.info["ca_file"], "--auth", "LOGIN", "--auth-user",
                 address, "--auth-password", password, "--from", address,
                 to="alice@northwind.test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<~  220 smtp.lab.test" in done.stdout  # the greeting already inside TLS
    assert "<~  250-AUTH LOGIN PLAIN" in done.stdout
    assert "<~  235 2.7.0 Authentication successful" in done.stdout
    arrived(served, "alice@northwind.test", subject)


def test_swaks_wrong_password_gets_535(served: Served) -> None:
    need_swaks_tls()
    done = swaks(served, "submissions", marker(), "--tls-on-connect", "--auth", "PLAIN",
                 "--auth-user", "alice@northwind.test", "--auth-password", "not-it",
                 "--from", "alice@northwind.test")
    assert done.returncode != 0
    assert "<~* 535 5.7.8 Authentication credentials invalid" in done.stdout


def test_swaks_sees_a_greylisting_fault_set_from_the_command_line(served: Served) -> None:
    need("swaks")
    added = run_cli("faults", "add", "rcpt", "451 4.7.1 Greylisted, try again later",
                    "--match", "bob@", home=served.home)
    assert added.returncode == 0, added.stderr
    try:
        first = swaks(served, "mx", marker(), "--from", "carol@campus.test",
                      to="bob@northwind.test")
        assert first.returncode != 0
        assert "<** 451 4.7.1 Greylisted, try again later" in first.stdout
        subject = marker()
        retry = swaks(served, "mx", subject, "--from", "carol@campus.test",
                      to="bob@northwind.test")
        assert retry.returncode == 0, retry.stdout
        arrived(served, "bob@northwind.test", subject)
    finally:
        run_cli("faults", "clear", home=served.home)


# -- openssl s_client --------------------------------------------------------------------------


@pytest.mark.parametrize("role, starttls", [("submission", True), ("mx", True),
                                            ("submissions", False)])
def test_openssl_verifies_the_lab_certificate(served: Served, role: str,
                                              starttls: bool) -> None:
    need("openssl")
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port(served, role)}", "-CAfile",
            served.info["ca_file"], "-verify_hostname", "mx1.northwind.test", "-crlf",
            "-ign_eof"]
    if starttls:
        argv[2:2] = ["-starttls", "smtp"]
    done = run(*argv, stdin="EHLO openssl.example\nQUIT\n")
    assert "Verify return code: 0 (ok)" in done.stdout, done.stdout + done.stderr
    assert "250-ENHANCEDSTATUSCODES" in done.stdout  # the SMTP dialogue went on inside TLS
    if role != "mx":
        assert "250-AUTH LOGIN PLAIN" in done.stdout


def test_openssl_rejects_the_certificate_with_another_ca(served: Served, tmp_path: Path) -> None:
    need("openssl")
    stranger = LabCA.load_or_create(tmp_path, ["mx.lab.test"])
    done = run("openssl", "s_client", "-connect", f"127.0.0.1:{port(served, 'submissions')}",
               "-CAfile", str(stranger.ca_file), stdin="QUIT\n")
    assert "Verify return code: 0 (ok)" not in done.stdout
    assert "unable to" in done.stdout  # "unable to get local issuer certificate" or similar


# -- curl -----------------------------------------------------------------------------------------


def test_curl_sends_through_submission_with_tls_required(served: Served) -> None:
    need("curl")
    subject = marker()
    address, password = account(served)
    done = run("curl", "--silent", "--show-error", "--ssl-reqd", "--url",
               f"smtp://127.0.0.1:{port(served, 'submission')}", "--cacert",
               served.info["ca_file"], "--user", f"{address}:{password}", "--mail-from",
               address, "--mail-rcpt", "dave@campus.test", "--upload-file", "-",
               stdin=f"From: {address}\r\nTo: dave@campus.test\r\nSubject: {subject}\r\n\r\n"
                     "Sent with curl.\r\n")
    assert done.returncode == 0, done.stderr
    stored = arrived(served, "dave@campus.test", subject)
    assert "Sent with curl." in stored.message.get_content()


def test_curl_with_a_wrong_password_is_refused(served: Served) -> None:
    need("curl")
    done = run("curl", "--silent", "--show-error", "--ssl-reqd", "--url",
               f"smtp://127.0.0.1:{port(served, 'submission')}", "--cacert",
               served.info["ca_file"], "--user", "alice@northwind.test:wrong", "--mail-from",
               "alice@northwind.test", "--mail-rcpt", "dave@campus.test", "--upload-file", "-",
               stdin="Subject: x\r\n\r\nx\r\n")
    assert done.returncode == 67, done.stderr  # CURLE_LOGIN_DENIED


def test_the_status_command_reports_the_mail_roles(served: Served) -> None:
    done = run_cli("status", "--json", home=served.home)
    assert json.loads(done.stdout)["smtp"] == served.info["smtp"]
    text = run_cli("status", home=served.home).stdout
    assert f"SMTP on 127.0.0.1 (mx {port(served, 'mx')}, submission " in text
