"""IMAP on implicit TLS: Dovecot serving the lab's Maildirs (labsupport.mail.imap)."""

from __future__ import annotations

import imaplib
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labsupport.core.errors import LabError
from labsupport.mail import imap as imap_module
from labsupport.mail import imap_dovecot
from labsupport.mail.accounts import Account, Accounts
from labsupport.mail.imap import GREETING, IMAPServer
from labsupport.mail.imap_dovecot import DovecotConfig, RunAs, dovecot_available
from labsupport.mail.mailstore import JUNK, MailStore
from labsupport.wire.tls import LabCA

pytestmark = pytest.mark.skipif(
    not dovecot_available(),
    reason="Dovecot is not installed (Debian package dovecot-imapd): the lab's IMAP server "
           "runs it")

ALICE, BOB = "alice@northwind.test", "bob@northwind.test"
FIRST = (b"From: Bob Brown <bob@northwind.test>\r\nTo: alice@northwind.test\r\n"
         b"Subject: Lunch?\r\nMessage-ID: <1@northwind.test>\r\n\r\nNoon at the canteen?\r\n")
SECOND = (b"From: Carol Clark <carol@campus.test>\r\nTo: alice@northwind.test\r\n"
          b"Subject: Slides\r\nMessage-ID: <2@campus.test>\r\n\r\nAttached, finally.\r\n"
          b".leading dot stays\r\n")
SPAM = b"From: ceo@northwind.test\r\nSubject: Urgent wire\r\n\r\nPay now.\r\n"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.load_or_create(tmp_path_factory.mktemp("tls"), ["northwind.test"])


@pytest.fixture
def accounts() -> Accounts:
    return Accounts([Account(ALICE, "alice-pw-2345", "Alice Adams"),
                     Account(BOB, "bob-pw-6789", "Bob Brown")])


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    mail = MailStore(tmp_path / "mail")
    mail.deliver(ALICE, FIRST)
    mail.deliver(ALICE, SECOND)
    mail.deliver(ALICE, SPAM, folder=JUNK)
    return mail


@pytest.fixture
def server(tmp_path: Path, store: MailStore, accounts: Accounts, ca: LabCA
           ) -> Iterator[IMAPServer]:
    imap = IMAPServer(tmp_path / "imap", store=store, accounts=accounts, ca=ca,
                      auth_failure_delay=0)
    imap.start()
    yield imap
    imap.stop()


def connect(server: IMAPServer, ca: LabCA) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL(server.host, server.port, ssl_context=ca.client_context(),
                             timeout=10)


def test_login_list_and_fetch_give_the_stored_bytes(server: IMAPServer, ca: LabCA,
                                                    store: MailStore) -> None:
    client = connect(server, ca)
    try:
        assert client.login("Alice@Northwind.test", "alice-pw-2345")[0] == "OK"
        status, boxes = client.list()
        assert status == "OK"
        names = sorted(line.decode().rsplit(" ", 1)[1] for line in boxes if line)
        assert names == ["INBOX", JUNK]
        status, count = client.select("INBOX", readonly=True)
        assert (status, count) == ("OK", [b"2"])
        fetched = []
        for number in (b"1", b"2"):
            status, data = client.fetch(number, "(BODY.PEEK[])")
            assert status == "OK"
            fetched.append(data[0][1])
    finally:
        client.logout()
    # IMAP sends CRLF line endings (RFC 9051 section 2.2); the Maildir keeps Unix ones.
    assert fetched == [FIRST, SECOND]
    stored = [m.raw for m in store.messages(ALICE)]
    assert [raw.replace(b"\n", b"\r\n") for raw in stored] == fetched
    assert store.count(ALICE) == 3  # Dovecot's index files are not taken for messages


def test_the_junk_folder_and_an_empty_mailbox(server: IMAPServer, ca: LabCA,
                                              store: MailStore) -> None:
    client = connect(server, ca)
    try:
        client.login(ALICE, "alice-pw-2345")
        assert client.select(JUNK, readonly=True) == ("OK", [b"1"])
        assert client.fetch(b"1", "(BODY.PEEK[])")[1][0][1] == SPAM
    finally:
        client.logout()
    client = connect(server, ca)
    try:
        client.login(BOB, "bob-pw-6789")  # no mail yet: Dovecot makes his Maildir
        assert client.select("INBOX") == ("OK", [b"0"])
    finally:
        client.logout()
    assert store.messages(BOB) == []


@pytest.mark.parametrize("user, password", [(ALICE, "wrong"), (ALICE, "bob-pw-6789"),
                                            ("nobody@northwind.test", "alice-pw-2345")])
def test_a_wrong_password_is_refused(server: IMAPServer, ca: LabCA, user: str,
                                     password: str) -> None:
    client = connect(server, ca)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(user, password)
    finally:
        client.shutdown()


def test_cleartext_imap_is_not_offered(server: IMAPServer, tmp_path: Path) -> None:
    # An IMAP client that does not start TLS gets no greeting and no reply: the port
    # expects a TLS ClientHello as its first bytes (RFC 8314 section 3.2).
    with socket.create_connection((server.host, server.port), timeout=5) as plain:
        plain.sendall(b"a CAPABILITY\r\n")
        answer = plain.recv(4096)
    assert not answer.startswith(b"*")
    assert b"IMAP" not in answer and b"CAPABILITY" not in answer
    config = (tmp_path / "imap" / "dovecot.conf").read_text()
    assert "inet_listener imap {\n    port = 0\n" in config  # port 143's listener is off
    assert "ssl = required" in config and "disable_plaintext_auth = yes" in config


def test_the_passwd_file_holds_no_password(server: IMAPServer, accounts: Accounts) -> None:
    text = (server.directory / "passwd").read_text()
    assert (server.directory / "passwd").stat().st_mode & 0o077 == 0
    for account in accounts.all():
        assert account.password not in text
        assert f"{account.address}:{{SSHA512}}" in text


def test_start_reports_itself(server: IMAPServer) -> None:
    started = server.started
    assert started is not None and started.verdict == "running"
    assert started.port == server.port and started.seconds > 0
    assert GREETING in started.greeting and "IMAP4rev1" in started.greeting
    assert f"imaps://127.0.0.1:{server.port}" in started.text()
    assert any(step.kind == "ok" for step in started.trace)
    info = server.info()
    assert info["port"] == server.port and info["tls"] == "implicit"
    assert Path(info["ca_file"]) == server.ca_file
    expected = (f"curl --cacert {server.ca_file} imaps://127.0.0.1:{server.port}/INBOX "
                f"-u '{ALICE}:alice-pw-2345'")
    assert server.curl_command() == expected
    assert expected in str(server) and str(server.port) in server._repr_html_()
    assert "Login: user=<" not in "\n".join(server.log())  # the probe did not log in


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="/usr/bin/curl is not installed")
def test_curl_lists_and_reads_the_mailbox(server: IMAPServer) -> None:
    def curl(command: str) -> bytes:
        args = ["/usr/bin/curl", "-sS", "-m", "20", *shlex.split(command)[1:]]
        done = subprocess.run(args, capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert b'"." INBOX' in curl(server.curl_command())
    assert curl(server.curl_command(query="?ALL")).split() == [b"*", b"SEARCH", b"1", b"2"]
    assert curl(server.curl_command(query="/;UID=1")) == FIRST
    refused = subprocess.run(["/usr/bin/curl", "-sS", "-m", "20",
                              *shlex.split(server.curl_command(password="wrong"))[1:]],
                             capture_output=True, timeout=30, check=False)
    assert refused.returncode == 67  # CURLE_LOGIN_DENIED


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_shows_the_lab_certificate(server: IMAPServer) -> None:
    # -ign_eof: wait for the server to close after LOGOUT, not for the end of our input
    # (the command's -crlf turns our "\n" into the CRLF IMAP wants)
    done = subprocess.run([*shlex.split(server.openssl_command()), "-ign_eof"],
                          input=b"a LOGOUT\n", capture_output=True, timeout=30, check=False)
    output = done.stdout.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in output
    assert "O = Mail Labs, OU = lab mail server" in output
    assert GREETING in output and "a OK Logout completed." in output


def test_stop_ends_dovecot_and_start_again(server: IMAPServer, ca: LabCA) -> None:
    port = server.port
    server.stop()
    assert not server.running
    with pytest.raises(LabError, match="not running"):
        _ = server.port
    with pytest.raises(OSError):
        socket.create_connection((server.host, port), timeout=2).close()
    server.start()
    client = connect(server, ca)
    try:
        assert client.login(ALICE, "alice-pw-2345")[0] == "OK"
    finally:
        client.logout()


def test_a_dovecot_left_by_a_crashed_lab_is_stopped(server: IMAPServer, store: MailStore,
                                                    accounts: Accounts, ca: LabCA) -> None:
    assert server._process is not None
    left_behind = server._process
    again = IMAPServer(server.directory, store=store, accounts=accounts, ca=ca)
    try:
        started = again.start()
        assert left_behind.wait(timeout=5) is not None
        assert any("earlier lab left running" in s.text for s in started.trace)
        assert again.running and again.port != 0
    finally:
        again.stop()


def test_a_taken_port_is_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 store: MailStore, accounts: Accounts, ca: LabCA) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real = imap_module.free_port
        monkeypatch.setattr(imap_module, "free_port", lambda host: next(ports, None) or real(host))
        with IMAPServer(tmp_path / "imap", store=store, accounts=accounts, ca=ca) as imap:
            assert imap.port != busy
            assert imap.started is not None
            assert any(f"port {busy} was taken" in s.text for s in imap.started.trace)


def test_a_long_state_directory_puts_the_sockets_elsewhere(
        tmp_path: Path, store: MailStore, accounts: Accounts, ca: LabCA) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 40) / "imap"
    imap = IMAPServer(deep, store=store, accounts=accounts, ca=ca)
    with imap:
        assert imap.started is not None
        assert any("too long for a Unix socket" in s.text for s in imap.started.trace)
        sockets = imap._temporary_base_dir
        assert sockets is not None and sockets.is_dir()
        # Dovecot opens its base_dir (run/) to all; the folder above it stays private.
        assert sockets.stat().st_mode & 0o777 == 0o700
        assert len(str(sockets / "run/token-login/imap-urlauth")) <= 107
        client = connect(imap, ca)
        try:
            assert client.login(ALICE, "alice-pw-2345")[0] == "OK"
        finally:
            client.logout()
    assert not sockets.exists()


def test_a_start_failure_is_a_lab_error(tmp_path: Path, store: MailStore,
                                        accounts: Accounts, ca: LabCA) -> None:
    broken = LabCA(tmp_path / "missing", ca.hostnames)  # no certificate files at all
    broken.ca_file = ca.ca_file
    imap = IMAPServer(tmp_path / "imap", store=store, accounts=accounts, ca=broken)
    began = time.monotonic()
    with pytest.raises(LabError, match="Dovecot did not start: .*server.pem"):
        imap.start()
    assert time.monotonic() - began < imap_module._START_TIMEOUT
    assert not imap.running


def test_missing_dovecot_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(imap_dovecot, "_SBIN_DIRS", ())
    assert not dovecot_available()
    with pytest.raises(LabError, match="apt-get install dovecot-imapd"):
        imap_dovecot.find_dovecot()


def test_rootless_configuration_for_an_ordinary_user(tmp_path: Path) -> None:
    who = RunAs("student", "student", 1000, 1000)
    assert who.prefix() == []
    text = DovecotConfig(host="127.0.0.1", port=40993, directory=tmp_path, base_dir=tmp_path,
                         mail_root=tmp_path / "mail", cert_file=tmp_path / "c.pem",
                         key_file=tmp_path / "k.pem", run_as=who).text()
    for line in ("default_internal_user = student", "default_login_user = student",
                 "first_valid_uid = 1000", "last_valid_uid = 1000", "listen = 127.0.0.1",
                 f'mail_location = "maildir:{tmp_path}/mail/%Ld/%Ln"',
                 f'log_path = "{tmp_path}/dovecot.log"', "    port = 40993"):
        assert line in text.splitlines()
    assert "syslog" not in text
    with pytest.raises(LabError, match="cannot name the path"):
        DovecotConfig(host="127.0.0.1", port=1, directory=tmp_path / "my labs",
                      base_dir=tmp_path, mail_root=tmp_path, cert_file=tmp_path,
                      key_file=tmp_path, run_as=who).text()


def test_the_state_directory_stays_private(server: IMAPServer, store: MailStore,
                                           ca: LabCA) -> None:
    client = connect(server, ca)
    try:
        client.login(ALICE, "alice-pw-2345")
        client.select("INBOX")  # Dovecot writes its index files beside the messages
    finally:
        client.logout()
    server.stop()
    open_to_others = [
        f"{path} {path.stat().st_mode & 0o777:04o}"
        for root in (server.directory, store.root)
        for path in [root, *root.rglob("*")]
        if not path.is_symlink() and path.stat().st_mode & 0o077]
    assert open_to_others == [], open_to_others
    assert not (server.directory / "run").exists()  # its sockets go when it stops
    assert (store.root / "northwind.test" / "alice" / "dovecot-uidlist").exists()
