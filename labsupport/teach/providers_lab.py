"""Trying a port and a TLS mode for real against the running lab's own listeners.

Holds :data:`LAB_ROLES` (the lab's mail roles and the Internet port whose job each does),
:func:`try_pairing`, which connects with the lab's transcript client, and its result
:class:`LabPairing`. Part of :mod:`labsupport.teach.providers`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder
from .providers_rules import IMPLICIT_TLS, STARTTLS, WELL_KNOWN, tls_mode

if TYPE_CHECKING:
    from ..lab.lab import Lab


# -- trying a pair against the running lab ------------------------------------------------

#: The lab's mail roles, the port whose job each does on the Internet, and its TLS mode.
LAB_ROLES = {"submission": 587, "submissions": 465, "mx": 25}
_LAB_HOST = "127.0.0.1"
_EHLO_NAME = "client.lab.test"


@dataclass(frozen=True, kw_only=True)
class LabPairing(Result):
    """What a client saw when it tried ``tls`` on one of the lab's listeners.

    ``verdict`` is ``"works"``, ``"timeout"``, ``"tls error"``, ``"refused"``,
    ``"closed"`` or ``"no starttls"``; ``worked`` is True only for ``"works"``. The trace
    holds every line that crossed (``C:`` from the client, ``S:`` from the server).
    """

    role: str
    port: int
    acts_as: int
    tls: str
    worked: bool
    seen: tuple[str, ...] = ()

    def title(self) -> str:
        return (f"127.0.0.1:{self.port} (the lab's {self.role} role, port {self.acts_as}'s "
                f"job) with {self.tls}: {self.verdict}")


def _seen_lines(transcript: Any, implicit: bool, version: str | None) -> list[str]:
    """The lines of ``transcript`` that crossed the wire, ``C:`` and ``S:``, with a marker
    where TLS began (the ClientHello first, for implicit TLS)."""
    seen = ["C: TLS ClientHello"] if implicit else []
    in_tls = False
    for line in transcript.lines:
        if line.kind == "note":
            continue
        if line.tls and not in_tls:
            seen.append(f"TLS started: {version or 'TLS'}")
            in_tls = True
        seen.append(("C: " if line.from_client else "S: ") + line.text)
    return seen


def _peek_greeting(port: int, timeout: float) -> str | None:
    """The first line a plain connection to ``port`` receives, or None."""
    try:
        with socket.create_connection((_LAB_HOST, port), timeout=timeout) as plain:
            data = plain.recv(512)
    except OSError:
        return None
    return data.split(b"\r\n", 1)[0].decode("utf-8", errors="replace") or None


def _resolve_role(lab: Lab, port_role: str | int) -> tuple[str, int]:
    roles = {str(conventional): role for role, conventional in LAB_ROLES.items()}
    role = roles.get(str(port_role).strip(), str(port_role).strip().lower())
    if role not in LAB_ROLES:
        raise LabError(f"{port_role!r} is not one of the lab's mail roles here: use "
                       f"{', '.join(repr(r) for r in LAB_ROLES)} (or 587, 465, 25)")
    return role, lab.smtp.port(role)


def try_pairing(lab: Lab, port_role: str | int, tls: str, timeout: float = 1.0) -> LabPairing:
    """Connect to the running lab's ``port_role`` listener with TLS mode ``tls``; report
    what the client saw.

    ``port_role`` is ``"submission"`` (STARTTLS, port 587's job), ``"submissions"``
    (implicit TLS, port 465's job) or ``"mx"`` (port 25's job); the conventional numbers
    587, 465 and 25 name the same roles. The client is the lab's transcript client
    (:class:`~labsupport.mail.smtp.SMTPSession`): it checks the server's certificate against
    the lab CA, waits at most ``timeout`` seconds for each answer, closes its socket, and
    sends QUIT when the dialogue works.
    """
    from ..mail.server import ROLES
    from ..mail.smtp import SMTPConnectError, SMTPSession, SMTPTimeout, SMTPTLSError

    role, port = _resolve_role(lab, port_role)
    mode = tls_mode(tls)
    implicit = mode == IMPLICIT_TLS
    acts_as = LAB_ROLES[role]
    server_name = ROLES[role].hostname
    rule = WELL_KNOWN[acts_as]
    t = TraceBuilder()
    t.add(f"The lab's {role} role does port {acts_as}'s job: {rule.tls}.", kind="info",
          rfc=rule.rfc)
    session = SMTPSession(_LAB_HOST, port, implicit_tls=implicit, ca_file=lab.ca.ca_file,
                          verify=True, server_hostname=server_name, timeout=timeout)

    def done(verdict: str, summary: str) -> LabPairing:
        seen = _seen_lines(session.transcript, implicit, session.tls_version)
        for line in seen:
            t.add(line, kind="query" if line.startswith("C:") else
                  "ok" if line.startswith("TLS") else "answer")
        return LabPairing(verdict=verdict, summary=summary, trace=t.freeze(), role=role,
                          port=port, acts_as=acts_as, tls=mode, worked=verdict == "works",
                          seen=tuple(seen))

    try:
        session.connect()
        session.ehlo(_EHLO_NAME)
        if mode == STARTTLS:
            if not session.has_extension("STARTTLS"):
                return done("no starttls", "the server did not offer STARTTLS; a careful "
                            "client stops here instead of going on in clear")
            answer = session.starttls()
            if answer.code != 220:
                return done("no starttls", f"STARTTLS was refused: {answer.first_line}")
            session.ehlo(_EHLO_NAME)
        session.quit()
    except SMTPConnectError as exc:
        return done("refused", str(exc))
    except SMTPTLSError as exc:
        reason = str(exc).rpartition("failed: ")[2].replace("_", " ").lower()
        if not implicit or session.transcript.replies:
            return done("tls error", f"the TLS handshake after STARTTLS failed: {reason}")
        first = _peek_greeting(port, timeout)
        if first is not None:
            t.add(f"A plain connection to the same port receives: {first!r}", kind="info")
        shown = f"'{first}'" if first else "plaintext"
        return done("tls error",
                    f"the TLS handshake failed ({reason}): the server spoke first, in clear "
                    f"({shown}), and those bytes are no TLS record. This port starts in "
                    "clear and upgrades with STARTTLS")
    except SMTPTimeout:
        if session.transcript.replies:
            return done("timeout", f"the server stopped answering within {timeout:g} s")
        if implicit:
            return done("timeout", f"the server sent no TLS answer within {timeout:g} s")
        return done("timeout",
                    f"no greeting within {timeout:g} s: the client waited for the "
                    "server's '220', while the server waited for the client's TLS "
                    "ClientHello. This port is implicit TLS: start TLS first")
    except LabError as exc:
        return done("closed", f"the server closed the connection ({exc})")
    finally:
        session.close()
    how = ("greeting in clear, STARTTLS, then TLS" if mode == STARTTLS
           else "TLS first, then the greeting inside it")
    return done("works", f"{how}; the server answered EHLO ({mode} is the right mode for "
                f"port {acts_as}'s job)")
