"""Dovecot as the lab runs it: finding it, who it runs as, and what it is given.

:mod:`labsupport.mail.imap` starts Dovecot with what this module writes: a passwd-file
made from the lab accounts (passwords as salted SHA-512, Dovecot's ``{SSHA512}`` scheme)
and a ``dovecot.conf`` for a rootless Dovecot (Dovecot's own HowTo/Rootless: one user for
every process, no chroot, its sockets, state and log in the lab's state directory, no
syslog) that listens only with implicit TLS on one port of 127.0.0.1 and reads the lab's
Maildirs. The process-group helpers stop Dovecot and all its children with one signal.

Introduced in ``notebooks/03-starttls-vs-implicit-tls.ipynb``.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import LabError
from .accounts import Accounts

#: The Debian (and Ubuntu) package that brings Dovecot's IMAP server.
DEBIAN_PACKAGE = "dovecot-imapd"
#: What the server says when a client connects (RFC 9051 section 7.1.1, the OK greeting).
GREETING = "Mail Labs IMAP server (Dovecot) ready."

#: The files Dovecot's folder (``imap/`` in the state directory) holds.
CONFIG_FILE = "dovecot.conf"
PASSWD_FILE = "passwd"
LOG_FILE = "dovecot.log"

#: Where Dovecot lives when ``sbin`` is not on a user's PATH (Debian: /usr/sbin).
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
#: The user Dovecot is inside a user namespace when the lab runs as root.
_NOBODY = 65534
#: Characters a path may not hold in Dovecot's configuration: quotes and escapes, ``%``
#: (variable expansion), ``$`` (setting references), ``#`` (comments), spaces.
_UNSAFE_PATH = re.compile(r"[\s\"'\\%$#]")


# -- finding Dovecot and who it runs as ---------------------------------------------------


def find_dovecot() -> str:
    """The path of the ``dovecot`` program, or a :class:`LabError` saying how to install it."""
    path = os.environ.get("PATH", os.defpath) + os.pathsep + os.pathsep.join(_SBIN_DIRS)
    found = shutil.which("dovecot", path=path)
    if found is None:
        raise LabError(
            "Dovecot is not installed, and the lab's IMAP server runs it (the lab does not "
            "write its own IMAP server). On Debian or Ubuntu: sudo apt-get install "
            f"{DEBIAN_PACKAGE}. The lab runs it as you, with its own configuration; the "
            "system service the package enables is not needed "
            "(sudo systemctl disable --now dovecot)")
    return found


def dovecot_available() -> bool:
    """True when Dovecot is installed (the lab then offers its IMAP role)."""
    try:
        find_dovecot()
    except LabError:
        return False
    return True


_VERSIONS: dict[str, str] = {}


def dovecot_version(dovecot: str | None = None) -> str:
    """Dovecot's version (``dovecot --version``), e.g. ``2.3.19.1 (9b53102964)``."""
    program = dovecot or find_dovecot()
    if program not in _VERSIONS:
        try:
            done = subprocess.run([program, "--version"], capture_output=True, text=True,
                                  timeout=10, check=False)
            _VERSIONS[program] = done.stdout.strip() or "unknown version"
        except (OSError, subprocess.TimeoutExpired):
            _VERSIONS[program] = "unknown version"
    return _VERSIONS[program]


@dataclass(frozen=True)
class RunAs:
    """Who Dovecot runs as: its user and group (names and numbers), and whether it is
    started in a user namespace (the lab runs as root, which Dovecot refuses for mail)."""

    user: str
    group: str
    uid: int
    gid: int
    namespace: bool = False

    @classmethod
    def current(cls) -> RunAs:
        """The current user; ``nobody`` in a user namespace when that user is root."""
        if os.geteuid() == 0:
            if shutil.which("unshare") is None:
                raise LabError("the lab runs as root, and Dovecot refuses to serve mail as "
                               "root; install util-linux's unshare, or run the lab as an "
                               "ordinary user")
            return cls(_user_name(_NOBODY), _group_name(_NOBODY), _NOBODY, _NOBODY, True)
        uid, gid = os.getuid(), os.getgid()
        return cls(_user_name(uid), _group_name(gid), uid, gid, False)

    def prefix(self) -> list[str]:
        """The command that goes before ``dovecot`` (empty unless in a user namespace)."""
        if not self.namespace:
            return []
        return ["unshare", "--user", f"--map-user={self.uid}", f"--map-group={self.gid}"]

    def describe(self) -> str:
        if self.namespace:
            return (f"runs as {self.user} (uid {self.uid}) in a user namespace: Dovecot "
                    "refuses to read mail as root, and the kernel maps that user back to "
                    "root, the owner of the lab's files")
        return (f"runs as {self.user} (uid {self.uid}), the lab's own user: no root, no "
                "chroot, no privileged port (Dovecot's rootless set-up)")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError as exc:
        raise LabError(f"user id {uid} has no name in the password database, and Dovecot "
                       "needs one to run as") from exc


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError as exc:
        raise LabError(f"group id {gid} has no name in the group database, and Dovecot "
                       "needs one to run as") from exc


# -- what Dovecot is given ----------------------------------------------------------------


def password_hash(password: str, salt: bytes | None = None) -> str:
    """``password`` in Dovecot's ``{SSHA512}`` scheme: base64 of SHA-512(password + salt)
    followed by the salt, so the passwd-file never holds the password itself."""
    salt = secrets.token_bytes(8) if salt is None else salt
    digest = hashlib.sha512(password.encode("utf-8") + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode("ascii")


def passwd_file(accounts: Accounts, mail_root: Path, run_as: RunAs) -> str:
    """The passwd-file Dovecot checks logins against (its passdb) and finds each user's
    Maildir and user id in (its userdb): one ``user:password:uid:gid::home::`` line per
    lab account, the address as the login name."""
    lines = ["# Written by labsupport.mail.imap from the lab accounts; rewritten at each start."]
    for account in accounts.all():
        address = account.address.lower()
        local, _, domain = address.rpartition("@")
        if not local or ":" in address or "\n" in address:
            raise LabError(f"{account.address!r} cannot be an IMAP login name")
        home = mail_root / domain / local
        lines.append(f"{address}:{password_hash(account.password)}:{run_as.uid}:{run_as.gid}"
                     f"::{home}::")
    return "\n".join(lines) + "\n"


def _safe(path: Path) -> str:
    text = str(path)
    if _UNSAFE_PATH.search(text):
        raise LabError(f"Dovecot's configuration cannot name the path {text!r} (it holds a "
                       "space, quote, %, $ or #); use a state directory without them")
    return text


@dataclass(frozen=True)
class DovecotConfig:
    """The places and choices one Dovecot configuration names."""

    host: str
    port: int
    directory: Path
    base_dir: Path
    mail_root: Path
    cert_file: Path
    key_file: Path
    run_as: RunAs
    auth_failure_delay: float = 2.0

    def text(self) -> str:
        """``dovecot.conf``: rootless, implicit TLS only, the lab's Maildirs and accounts."""
        d, who = self.directory, self.run_as
        passwd = _safe(d / PASSWD_FILE)
        return "\n".join([
            "# Written by labsupport.mail.imap; rewritten at each start.",
            "protocols = imap",
            f"listen = {self.host}",
            f'base_dir = "{_safe(self.base_dir)}"',
            f'state_dir = "{_safe(d / "state")}"',
            "instance_name = mail-labs",
            f'log_path = "{_safe(d / LOG_FILE)}"',
            'log_timestamp = "%Y-%m-%d %H:%M:%S "',
            "# One user for everything: the rootless set-up (Dovecot's HowTo/Rootless).",
            f"default_internal_user = {who.user}",
            f"default_internal_group = {who.group}",
            f"default_login_user = {who.user}",
            f"first_valid_uid = {who.uid}",
            f"last_valid_uid = {who.uid}",
            f"first_valid_gid = {who.gid}",
            f"last_valid_gid = {who.gid}",
            "# TLS always (RFC 8314): no login before the handshake.",
            "ssl = required",
            f"ssl_cert = <{_safe(self.cert_file)}",
            f"ssl_key = <{_safe(self.key_file)}",
            "ssl_min_protocol = TLSv1.2",
            "disable_plaintext_auth = yes",
            "auth_mechanisms = plain login",
            "auth_username_format = %Lu",
            "auth_verbose = yes",
            f"auth_failure_delay = {self.auth_failure_delay:g} secs",
            f"login_greeting = {GREETING}",
            "# The lab's Maildirs: mail/<domain>/<local part>, Junk as Maildir++ .Junk",
            f'mail_location = "maildir:{_safe(self.mail_root)}/%Ld/%Ln"',
            "passdb {",
            "  driver = passwd-file",
            f"  args = {passwd}",
            "}",
            "userdb {",
            "  driver = passwd-file",
            f"  args = {passwd}",
            "}",
            "service anvil {",
            "  chroot =",
            "}",
            "service imap-login {",
            "  chroot =",
            "  inet_listener imap {",
            "    port = 0",
            "  }",
            "  inet_listener imaps {",
            f"    port = {self.port}",
            "    ssl = yes",
            "  }",
            "}",
            "",
        ])


def free_port(host: str) -> int:
    """A port nothing listens on right now (bind to port 0, read the port, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def make_private(paths: Iterable[Path]) -> None:
    """Take group and other permissions off ``paths``: Dovecot gives a few of its files
    explicit modes (``state/instances`` 0644, the empty ``dovecot-uidvalidity.*`` marker
    0444). They sit in folders only their owner can open, but the lab's state directory
    is kept private file by file."""
    for path in paths:
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode):
            continue
        limit = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if stat.S_IMODE(info.st_mode) & ~limit:
            os.chmod(path, stat.S_IMODE(info.st_mode) & limit)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path``, created (and kept) with ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)


def stop_group(pid: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig`` to the process group led by ``pid`` (Dovecot and its children)."""
    try:
        os.killpg(pid, sig)  # Dovecot was started as the leader of its own group
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` still runs (zombies waiting for their
    parent to collect them do not count: they hold no socket or file)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for status in proc.glob("[0-9]*/stat"):
        try:
            # "pid (name) state ppid pgrp ...": the name may hold spaces, so split after ")"
            fields = status.read_text(encoding="ascii", errors="replace").rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def wait_group_gone(pgid: int, timeout: float = 1.0) -> None:
    """Wait until no process of Dovecot's group is left (its children end after it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.005)
    stop_group(pgid, signal.SIGKILL)


__all__ = ["CONFIG_FILE", "DEBIAN_PACKAGE", "GREETING", "LOG_FILE", "PASSWD_FILE",
           "DovecotConfig", "RunAs", "dovecot_available", "dovecot_version", "find_dovecot",
           "free_port", "make_private", "passwd_file", "password_hash", "stop_group",
           "wait_group_gone", "write_private"]
