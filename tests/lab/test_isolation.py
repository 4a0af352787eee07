"""Two users on one host: another local user cannot drive a student's lab through its
control channel, nor read its state directory, its runtime file or its mailboxes, nor
use its services: the MX role greets it with 554, the DNS server answers REFUSED over
UDP and TCP, and the MTA-STS policy host closes the connection.

It needs a second Unix user, so it runs as root (CI does): the test makes the system
user ``mail-labs-other`` when it is absent (and removes it again), and runs small
standard-library clients as that user (``subprocess.run(..., user=, group=)``). The lab
itself runs as root here, the test's own user, which stands for the student.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest
from lab_helpers import PROCESS_TIMEOUT, Served

import labsupport
from labsupport import control
from labsupport.lab.lab import Lab
from labsupport.lab.statedir import RUNTIME_FILE, PermissionsTightened, read_runtime

OTHER = "mail-labs-other"

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="users on one host are told apart on Linux only"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="needs root, to make a second Unix user and run a client as it"),
]

#: Run as the other user: connect to the control channel with the real token, then try
#: to list or read each path; print what happened as one JSON object.
CLIENT = r"""
import json, socket, sys, os
port, token, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
out = {"uid": os.geteuid()}
try:
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(json.dumps({"token": token, "command": "status"}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    out["control"] = json.loads(data)
except OSError as exc:
    out["control"] = {"connect_error": type(exc).__name__}
for path in paths:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read()
        out[path] = "read"
    except OSError as exc:
        out[path] = type(exc).__name__
print(json.dumps(out))
"""


#: Run as the other user: read the MX role's greeting, send a DNS query (given as hex)
#: over UDP and over TCP, and try the MTA-STS policy host over TLS; print one JSON object.
PROBE = r"""
import json, socket, ssl, struct, sys
smtp, dns_port, https = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4])
query = bytes.fromhex(sys.argv[3])
out = {}
def attempt(name, action):
    try:
        out[name] = action()
    except (OSError, ValueError) as exc:
        out[name] = "error: " + type(exc).__name__
def greeting():
    with socket.create_connection(("127.0.0.1", smtp), 10) as sock:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.sendall(b"QUIT\r\n")
        return data.decode()
def udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query, ("127.0.0.1", dns_port))
        return sock.recv(65535).hex()
def tcp():
    with socket.create_connection(("127.0.0.1", dns_port), 10) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        data = b""
        while True:
            chunk = sock.recv(65535)
            if not chunk:
                break
            data += chunk
        return data.hex()
def policy():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # an intruder does not care who answers
    with socket.create_connection(("127.0.0.1", https), 10) as raw:
        with context.wrap_socket(raw, server_hostname="mta-sts.northwind.test") as tls:
            tls.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.0\r\n"
                        b"Host: mta-sts.northwind.test\r\n\r\n")
            return tls.recv(65535).decode()
attempt("smtp", greeting)
attempt("udp", udp)
attempt("tcp", tcp)
attempt("https", policy)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class OtherUser:
    uid: int
    gid: int
    python: str

    def run(self, port: int, token: str, *paths: Path) -> dict[str, Any]:
        done = subprocess.run([self.python, "-c", CLIENT, str(port), token, *map(str, paths)],
                              user=self.uid, group=self.gid, extra_groups=[], cwd="/",
                              env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                              timeout=PROCESS_TIMEOUT, check=False)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def probe(self, lab: Lab, query: dns.message.Message) -> dict[str, str]:
        """What the other user gets from the lab's MX role, DNS server and policy host."""
        args = [str(lab.smtp.port("mx")), str(lab.dns.port), query.to_wire().hex(),
                str(lab.mta_sts.port)]
        done = subprocess.run([self.python, "-c", PROBE, *args], user=self.uid,
                              group=self.gid, extra_groups=[], cwd="/",
                              env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                              timeout=PROCESS_TIMEOUT, check=False)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))


def runs_as(entry: pwd.struct_passwd, python: str) -> bool:
    """Can ``entry``'s user run ``python`` (the project's may be under root's home)?"""
    try:
        return subprocess.run([python, "-c", "pass"], user=entry.pw_uid, group=entry.pw_gid,
                              extra_groups=[], cwd="/", capture_output=True, check=False,
                              timeout=PROCESS_TIMEOUT).returncode == 0
    except OSError:
        return False


@pytest.fixture(scope="module")
def other_user() -> Iterator[OtherUser]:
    """The second user (made for the test when absent) and a Python it may run."""
    made = False
    try:
        entry = pwd.getpwnam(OTHER)
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip("useradd is not installed")
        subprocess.run(["useradd", "--system", "--no-create-home", OTHER], check=True,
                       capture_output=True, timeout=PROCESS_TIMEOUT)
        made = True
        entry = pwd.getpwnam(OTHER)
    try:
        python = next((p for p in (sys.executable, "/usr/bin/python3")
                       if runs_as(entry, p)), None)
        if python is None:
            pytest.skip(f"no Python interpreter that {OTHER} may run")
        yield OtherUser(entry.pw_uid, entry.pw_gid, python)
    finally:
        if made:
            subprocess.run(["userdel", OTHER], check=False, capture_output=True,
                           timeout=PROCESS_TIMEOUT)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user may enter (0755, as a home directory often is), so that only
    the lab's own modes stand between the other user and the state directory."""
    folder = Path(tempfile.mkdtemp(prefix="mail-labs-isolation-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def control_of(state_dir: Path) -> tuple[int, str]:
    runtime = read_runtime(state_dir)
    return int(runtime["control"]["port"]), str(runtime["control"]["token"])


def test_the_other_user_is_refused_by_the_control_channel(lab: Lab,
                                                          other_user: OtherUser) -> None:
    port, token = control_of(lab.state_dir)
    seen = other_user.run(port, token)  # even with the right token
    assert seen["uid"] == other_user.uid
    reply = seen["control"]
    assert reply["ok"] is False, reply
    assert reply["error"].startswith("refused: this lab belongs to another user"), reply
    assert f"uid {other_user.uid} ({OTHER})" in reply["error"]
    assert lab._control is not None and lab._control.refused[-1].peer_uid == other_user.uid
    # The owner, with the same token, is let in.
    assert control.call(lab.state_dir, "status")["pid"] == os.getpid()


def test_the_other_user_is_refused_by_a_served_lab(served: Served,
                                                   other_user: OtherUser) -> None:
    port, token = control_of(served.state_dir)
    reply = other_user.run(port, token)["control"]
    assert reply["ok"] is False and "belongs to another user" in reply["error"], reply
    assert control.call(served.state_dir, "status")["pid"] == served.proc.pid


def test_state_and_mailboxes_are_private(open_folder: Path, other_user: OtherUser) -> None:
    # A state directory left open by an older version (or a umask of 022) ...
    state = open_folder / "state"
    state.mkdir(mode=0o755)
    old = state / "notes.txt"
    old.write_text("left here\n", encoding="utf-8")
    old.chmod(0o644)
    readable = open_folder / "public.txt"
    readable.write_text("anyone may read this\n", encoding="utf-8")
    readable.chmod(0o644)
    with pytest.warns(PermissionsTightened, match=r"made it private .*state \(0755 -> 0700\)"):
        own = labsupport.start(state)
    try:
        key = own.mail.deliver("bob@northwind.test", b"Subject: private\r\n\r\nfor bob\r\n")
        junk = own.mail.deliver("bob@northwind.test", b"Subject: junk\r\n\r\nx\r\n", "Junk")
        mailbox = state / "mail" / "northwind.test" / "bob"
        message = mailbox / "new" / key
        # ... is private now, and so is everything the lab made in it.
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE(old.stat().st_mode) == 0o600
        for path in state.rglob("*"):
            mode = stat.S_IMODE(path.lstat().st_mode)
            assert mode & 0o077 == 0, f"{path} is {mode:04o}"
        assert stat.S_IMODE(message.stat().st_mode) == 0o600
        assert stat.S_IMODE((mailbox / ".Junk" / "new" / junk).stat().st_mode) == 0o600

        port, token = control_of(state)
        seen = other_user.run(port, token, readable, state, state / RUNTIME_FILE, message)
        assert seen[str(readable)] == "read"  # the client can read what is open to it
        for path in (state, state / RUNTIME_FILE, message):
            assert seen[str(path)] == "PermissionError", seen
        assert seen["control"]["ok"] is False
        # The owner reads them all.
        assert b"for bob" in message.read_bytes()
        assert own.mail.messages("bob@northwind.test")[0].subject == "private"
        assert control.call(state, "status")["state_dir"] == str(state)
    finally:
        own.stop()


def test_a_state_directory_of_another_user_is_refused(open_folder: Path,
                                                      other_user: OtherUser) -> None:
    theirs = open_folder / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, other_user.uid, other_user.gid)
    with pytest.raises(labsupport.LabError, match=f"belongs to uid {other_user.uid}"):
        labsupport.start(theirs)


def test_the_other_user_gets_no_service(lab: Lab, other_user: OtherUser) -> None:
    query = dns.message.make_query("northwind.test", "MX")
    seen = other_user.probe(lab, query)
    # The MX role: a 554 greeting (RFC 5321 section 3.1), logged with who it was.
    assert seen["smtp"].startswith("554 5.7.1 This lab belongs to another user"), seen
    refused = [e for e in lab.smtp.log.entries(50) if e.event == "refused"]
    assert refused and f"uid {other_user.uid} ({OTHER})" in refused[-1].detail
    # The DNS server: REFUSED over UDP and over TCP, the ID echoed, no answer.
    udp = dns.message.from_wire(bytes.fromhex(seen["udp"]))
    tcp_wire = bytes.fromhex(seen["tcp"])
    assert int.from_bytes(tcp_wire[:2], "big") == len(tcp_wire) - 2, "one message, then EOF"
    tcp = dns.message.from_wire(tcp_wire[2:])
    for reply in (udp, tcp):
        assert reply.rcode() == dns.rcode.REFUSED and reply.id == query.id
        assert reply.flags & dns.flags.QR and not reply.answer
        assert query.is_response(reply)
    assert lab.dns.refused[-1].peer_uid == other_user.uid
    logged = [(e.transport, e.note) for e in lab.dns.log.entries(20) if e.rcode == "REFUSED"]
    assert {transport for transport, note in logged if OTHER in note} == {"udp", "tcp"}, logged
    # The MTA-STS policy host: the connection is closed before TLS, no policy is read.
    assert seen["https"].startswith("error: "), seen
    assert lab.mta_sts.refused[-1].peer_uid == other_user.uid


def test_the_owner_still_gets_every_service(lab: Lab) -> None:
    # The same three services, asked by the lab's own user.
    from labsupport.mail.smtp import SMTPSession

    with SMTPSession("127.0.0.1", lab.smtp.port("mx")) as session:
        assert session.connect().code == 220
        session.quit()
    for tcp in (False, True):
        assert lab.query("northwind.test", "MX", tcp=tcp).rcode == "NOERROR"
    assert lab.mta_sts_fetcher is not None
    lab.mta_sts_fetcher.clear()
    looked_up = lab.mta_sts_fetcher.policy_for("northwind.test")
    assert looked_up.source == "fetched" and looked_up.verdict == "enforce", looked_up.text()
