"""Reading the lab's mailboxes over IMAP on implicit TLS, served by Dovecot.

The lab does not speak IMAP itself: it runs Dovecot (Debian package ``dovecot-imapd``),
a well-kept IMAP server, as the current user, with a configuration it writes into its own
state directory. Dovecot reads the very Maildirs the MX role writes
(:mod:`labsupport.mail.mailstore`: ``mail/<domain>/<local part>/``, the Junk folder as the
Maildir++ subfolder ``.Junk``), checks logins against a passwd-file made from the lab
accounts (:mod:`labsupport.mail.accounts`; salted SHA-512, never the password itself), and
presents the lab's server certificate (:mod:`labsupport.wire.tls`).

Only the implicit-TLS listener is opened (the role of port 993, RFC 8314 section 3.2: TLS
from the first byte, then the IMAP greeting), on an ephemeral port of 127.0.0.1; the
cleartext IMAP listener (port 143) is switched off and ``ssl = required``, so a password
never crosses the wire in clear. Dovecot keeps its sockets, its state and its log in the
state directory (``imap/``): nothing is shared with a system Dovecot, nothing needs root.

Dovecot cannot be given port 0, so the server picks a free port (bind to port 0, read it,
close) and starts Dovecot on it, trying another port if something took it meanwhile.
Dovecot also refuses to read mail as root (uid 0); when the lab runs as root (CI, some
containers), Dovecot is started in a user namespace (``unshare --user``) where it is the
ordinary user ``nobody``, while the kernel still lets it open root's files as their owner.

Dovecot itself adds its index files (``dovecot.index*``, ``dovecot-uidlist``) to each
Maildir it opens, moves messages it has shown from ``new/`` to ``cur/``, and makes the
Maildir of an account that logs in before receiving mail; none of that changes what
:class:`~labsupport.mail.mailstore.MailStore` lists. Messages come back over IMAP with CRLF
line endings (RFC 9051 section 2.2), as the SMTP client sent them.

Introduced in ``notebooks/03-starttls-vs-implicit-tls.ipynb``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder, html_table, text_table
from .accounts import Accounts
from .imap_dovecot import (
    CONFIG_FILE,
    DEBIAN_PACKAGE,
    GREETING,
    LOG_FILE,
    PASSWD_FILE,
    DovecotConfig,
    RunAs,
    dovecot_available,
    dovecot_version,
    find_dovecot,
    free_port,
    make_private,
    passwd_file,
    stop_group,
    wait_group_gone,
    write_private,
)
from .mailstore import MailStore

if TYPE_CHECKING:
    from ..wire.tls import LabCA

#: IMAP over implicit TLS, RFC 8314 section 3.2 (the lab uses an ephemeral port instead).
IMAPS_PORT = 993
#: A Unix socket path holds 107 bytes; Dovecot's longest socket name under base_dir.
_SOCKET_PATH_MAX = 107
#: Dovecot 2.3's longest socket path under base_dir.
_LONGEST_SOCKET = "/token-login/imap-urlauth"
_PORT_ATTEMPTS = 5
_START_TIMEOUT = 10.0
#: Dovecot's master, told to stop, sometimes waits a second or two for its children;
#: after this grace the whole group is killed (Maildir deliveries are renames, and
#: Dovecot's index files are logs it repairs, so nothing is left half-written).
_STOP_GRACE = 0.25
#: How long one readiness probe waits for the TLS handshake and greeting.
_PROBE_TIMEOUT = 0.5
_PID_FILE = "dovecot.pid"
_STDERR_FILE = "dovecot.stderr"

#: Servers still running, stopped when the interpreter exits (a kernel shut down).
_RUNNING: weakref.WeakSet[IMAPServer] = weakref.WeakSet()


@dataclass(frozen=True, kw_only=True)
class IMAPStart(Result):
    """How the IMAP server started: its port, how long it took, and Dovecot's greeting."""

    port: int
    seconds: float
    greeting: str

    def title(self) -> str:
        return f"IMAP server (Dovecot): {self.verdict}"


class IMAPServer:
    """Dovecot serving the lab's Maildirs over IMAP on implicit TLS (module docstring).

    >>> imap = IMAPServer(lab.state_dir / "imap", store=lab.mail,  # doctest: +SKIP
    ...                   accounts=lab.accounts, ca=lab.ca)
    >>> imap.start(); print(imap.curl_command())                   # doctest: +SKIP
    curl --cacert .../tls/ca.pem imaps://127.0.0.1:40123/INBOX -u 'alice@...:...'

    Attributes:
        directory: Dovecot's configuration, passwd-file, log and state (``imap/``).
        started: how the last start went (an :class:`IMAPStart` with a trace), or None.
    """

    def __init__(self, directory: Path, *, store: MailStore, accounts: Accounts, ca: LabCA,
                 host: str = "127.0.0.1", auth_failure_delay: float = 2.0) -> None:
        self.directory = Path(directory)
        self.store = store
        self.accounts = accounts
        self.ca = ca
        self.host = host
        self.auth_failure_delay = auth_failure_delay
        self.started: IMAPStart | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._temporary_base_dir: Path | None = None
        self._sockets: Path | None = None

    # -- life cycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> IMAPStart:
        """Write the configuration, start Dovecot and wait for its greeting over TLS.

        Returns (and keeps in :attr:`started`) what happened, step by step. Raises a
        :class:`LabError` that says why when Dovecot is missing or does not start."""
        if self.running and self.started is not None:
            return self.started
        began = time.perf_counter()
        dovecot = find_dovecot()
        run_as = RunAs.current()
        trace = TraceBuilder()
        trace.add(f"Dovecot {dovecot_version(dovecot)} at {dovecot}")
        trace.add(run_as.describe())
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._stop_orphan(trace)
        base_dir = self._base_dir(trace)
        # Dovecot will not start over a master.pid whose number another process now has.
        (base_dir / "master.pid").unlink(missing_ok=True)
        write_private(self.directory / PASSWD_FILE,
                      passwd_file(self.accounts, self.store.root, run_as))
        trace.add(f"passwd-file with {len(self.accounts)} lab accounts, passwords as salted "
                  "SHA-512 ({SSHA512})")
        failure = ""
        for _attempt in range(_PORT_ATTEMPTS):
            port = free_port(self.host)
            config = DovecotConfig(host=self.host, port=port, directory=self.directory,
                                   base_dir=base_dir, mail_root=self.store.root,
                                   cert_file=self.ca.server_cert_file,
                                   key_file=self.ca.server_key_file, run_as=run_as,
                                   auth_failure_delay=self.auth_failure_delay)
            write_private(self.directory / CONFIG_FILE, config.text())
            greeting, failure = self._launch(dovecot, run_as, port)
            if greeting is not None:
                break
            if "Address already in use" not in failure:
                self._cleanup_base_dir()
                raise LabError(f"Dovecot did not start: {failure} (log: "
                               f"{self.directory / LOG_FILE}; Debian package "
                               f"{DEBIAN_PACKAGE})")
            trace.add(f"port {port} was taken before Dovecot could listen on it; "
                      "trying another", kind="warning")
        else:
            self._cleanup_base_dir()
            raise LabError(f"Dovecot found no free port in {_PORT_ATTEMPTS} tries: {failure}")
        trace.add(f"{CONFIG_FILE}: listens on {self.host} port {port} with implicit TLS only "
                  "(cleartext IMAP off, ssl = required), the lab certificate, the lab's "
                  "Maildirs", rfc="RFC 8314 section 3.2")
        trace.add("TLS handshake verified against the lab CA, then the greeting",
                  kind="ok", rfc="RFC 9051 section 7.1.1", detail=greeting)
        seconds = time.perf_counter() - began
        self.started = IMAPStart(
            verdict="running", trace=trace.freeze(), port=port, seconds=seconds,
            greeting=greeting,
            summary=f"Dovecot serves the lab's mailboxes on imaps://{self.host}:{port} "
                    f"(started in {seconds:.3f} s)")
        _RUNNING.add(self)
        return self.started

    def _launch(self, dovecot: str, run_as: RunAs, port: int) -> tuple[str | None, str]:
        """Start Dovecot on ``port``; (its greeting, "") once it answers, else (None, why)."""
        stderr_path = self.directory / _STDERR_FILE
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as stderr:
            process = subprocess.Popen(  # noqa: S603 - a fixed program, our own arguments
                [*run_as.prefix(), dovecot, "-F", "-c", str(self.directory / CONFIG_FILE)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                umask=0o077,  # what Dovecot makes in the state directory stays private
                start_new_session=True)  # its own process group: stopped all at once
        self._process, self._port = process, port
        write_private(self.directory / _PID_FILE, f"{process.pid}\n")
        context = self.ca.client_context()
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            greeting = self._greeting(context, port)
            if greeting is not None and process.poll() is None:
                return greeting, ""
            time.sleep(0.005)
        self._end_process()
        return None, self._why_not_started(stderr_path)

    def _greeting(self, context: ssl.SSLContext, port: int) -> str | None:
        """Dovecot's greeting over a verified TLS connection, or None if not ready yet."""
        try:
            with socket.create_connection((self.host, port), timeout=_PROBE_TIMEOUT) as raw, \
                    context.wrap_socket(raw, server_hostname=self.host) as tls:
                line = tls.recv(4096).decode("utf-8", errors="replace").strip()
                tls.sendall(b"a LOGOUT\r\n")
                tls.recv(4096)
        except (OSError, ssl.SSLError):
            return None
        return line if line.startswith("* OK") else None

    def _why_not_started(self, stderr_path: Path) -> str:
        lines = [line for line in self.log(last=5) if "Fatal" in line or "Error" in line]
        try:
            lines += stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            pass
        return "; ".join(line.strip() for line in lines if line.strip())[-800:] \
            or "it gave no greeting"

    def stop(self) -> None:
        """Stop Dovecot and every process it started (quick: one signal to its group)."""
        _RUNNING.discard(self)
        self._end_process()
        self._cleanup_base_dir()
        root = self.store.root
        make_private([*self.directory.rglob("*"), *root.glob("*/*/dovecot*"),
                      *root.glob("*/*/.*/dovecot*")])

    def _end_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_group(process.pid)
            try:
                process.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                stop_group(process.pid, signal.SIGKILL)
                process.wait()
            wait_group_gone(process.pid)
        (self.directory / _PID_FILE).unlink(missing_ok=True)

    def _stop_orphan(self, trace: TraceBuilder) -> None:
        """Stop a Dovecot a crashed lab left running on this state directory (the lab's
        lock on the state directory says no running lab owns it)."""
        try:
            pid = int((self.directory / _PID_FILE).read_text(encoding="ascii").strip())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"dovecot" in command and str(self.directory / CONFIG_FILE).encode() in command:
            stop_group(pid)
            wait_group_gone(pid)
            (self.directory / _PID_FILE).unlink(missing_ok=True)
            trace.add(f"stopped Dovecot (pid {pid}) that an earlier lab left running",
                      kind="warning")

    def _base_dir(self, trace: TraceBuilder) -> Path:
        """Dovecot's sockets: ``imap/run`` in the state directory (made afresh at each
        start, removed at stop), or ``run`` in a private temporary folder when that path
        is too long for a Unix socket's name. Dovecot makes its base_dir 0755 and some
        sockets 0666, so the folder above it must be private (0700) either way."""
        (self.directory / "state").mkdir(mode=0o700, exist_ok=True)
        base_dir = self.directory / "run"
        if len(str(base_dir)) + len(_LONGEST_SOCKET) > _SOCKET_PATH_MAX:
            self._temporary_base_dir = Path(tempfile.mkdtemp(prefix="mail-labs-imap-"))
            base_dir = self._temporary_base_dir / "run"  # mkdtemp made its parent 0700
            trace.add(f"sockets in {base_dir}: {self.directory / 'run'} is too long for "
                      "a Unix socket's name", kind="warning")
        base_dir.mkdir(mode=0o700, exist_ok=True)
        self._sockets = base_dir
        return base_dir

    def _cleanup_base_dir(self) -> None:
        """Remove Dovecot's sockets once it has stopped (some are mode 0666 inside the
        private folder; left behind, they would look open to other users)."""
        if self._sockets is not None and self._process is None:
            shutil.rmtree(self._temporary_base_dir or self._sockets, ignore_errors=True)
            self._sockets = self._temporary_base_dir = None

    def __enter__(self) -> IMAPServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- where it is --------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The implicit-TLS port (the role of 993), ephemeral."""
        if not self.running or self._port is None:
            raise LabError("the IMAP server is not running; start it with imap.start()")
        return self._port

    @property
    def ca_file(self) -> Path:
        return self.ca.ca_file

    @property
    def log_file(self) -> Path:
        return self.directory / LOG_FILE

    def log(self, last: int = 20) -> list[str]:
        """The last lines of Dovecot's log (logins, failures with their reason)."""
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return lines[-last:] if last else lines

    def clear_log(self) -> None:
        """Empty Dovecot's log (``lab.reset()``); Dovecot appends, so it keeps writing."""
        if self.log_file.exists():
            self.log_file.write_bytes(b"")

    def _login(self, address: str | None, password: str | None) -> tuple[str, str]:
        if address is None:
            first = self.accounts.all()[0]
            return first.address, first.password if password is None else password
        account = self.accounts.get(address)
        if password is None:
            password = account.password if account is not None else "PASSWORD"
        return address, password

    def curl_command(self, address: str | None = None, password: str | None = None,
                     mailbox: str = "INBOX", query: str = "") -> str:
        """The ``curl`` command that logs in and lists ``mailbox`` (``query="?ALL"``:
        the messages' numbers; ``query="/;UID=1"``: the first message)."""
        user, secret = self._login(address, password)
        return (f"curl --cacert {self.ca_file} imaps://{self.host}:{self.port}/{mailbox}"
                f"{query} -u '{user}:{secret}'")

    def openssl_command(self) -> str:
        """The ``openssl s_client`` command that shows the handshake and certificate."""
        return (f"openssl s_client -connect {self.host}:{self.port} -CAfile {self.ca_file} "
                "-crlf -nocommands")

    def commands(self, address: str | None = None, password: str | None = None
                 ) -> list[tuple[str, str]]:
        """Terminal commands that read a lab mailbox, as (what it shows, command)."""
        return [
            ("IMAP on implicit TLS: list the mailbox",
             self.curl_command(address, password)),
            ("the messages in INBOX (SEARCH ALL)", self.curl_command(address, password,
                                                                      query="?ALL")),
            ("the first message", self.curl_command(address, password, query="/;UID=1")),
            ("the implicit-TLS handshake and the IMAP greeting", self.openssl_command()),
        ]

    def info(self) -> dict[str, Any]:
        """Where the server is, for ``lab.info()`` and ``serve --json``."""
        return {"host": self.host, "port": self.port, "tls": "implicit",
                "ca_file": str(self.ca_file), "log": str(self.log_file),
                "server": f"Dovecot {dovecot_version()}"}

    def _rows(self) -> list[list[object]]:
        if not self.running:
            return [["state", "stopped"]]
        user, secret = self._login(None, None)
        rows: list[list[object]] = [
            ["IMAP server", f"Dovecot {dovecot_version()}, implicit TLS (the role of port "
                            f"{IMAPS_PORT})"],
            ["host", self.host],
            ["port", self.port],
            ["CA file", str(self.ca_file)],
            ["login", f"{user} / {secret} (any lab account, the address is the login)"],
        ]
        rows += [[what, command] for what, command in self.commands()]
        return [*rows, ["log", str(self.log_file)]]

    def __repr__(self) -> str:
        where = f"imaps://{self.host}:{self._port}" if self.running else "stopped"
        return f"<IMAPServer (Dovecot) {where}, mail in {self.store.root}>"

    def __str__(self) -> str:
        return text_table(["IMAP", "where"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["IMAP", "where"], self._rows(),
                          caption="Reading the lab's mailboxes over IMAP (Dovecot)")


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


__all__ = ["DEBIAN_PACKAGE", "GREETING", "IMAPS_PORT", "IMAPServer", "IMAPStart",
           "dovecot_available", "find_dovecot"]
