"""The lab's mail server: the roles a real mail system has, on aiosmtpd.

One :class:`MailServer` runs every role on the lab's own event loop, each on its own
ephemeral port on 127.0.0.1 (``lab.smtp.port("mx")``):

``mx``
    What port 25 is on the Internet (RFC 5321): receives mail for the lab's domains and
    their existing mailboxes only (unknown user: 550 5.1.1; any other domain: 550 5.7.1,
    it is never an open relay). No AUTH. STARTTLS offered but optional. XCLIENT (as
    Postfix has it for testing) lets the lab's delivering MTA, or ``swaks --xclient-addr``,
    say which Internet address the connection stands for; the stored message's Received
    header and the server's log show that address.
``submission``
    Port 587 semantics (RFC 6409, RFC 3207): STARTTLS before anything else, AUTH offered
    only inside TLS (PLAIN and LOGIN, RFC 4954, against the lab accounts); an authenticated
    user may send to any lab address; everyone else gets 550 5.7.1.
``submissions``
    Port 465 semantics (RFC 8314): TLS from the first byte, AUTH advertised and working.
``legacy``
    Off unless a lesson turns it on (``lab.smtp.enable_legacy()``): AUTH without any TLS,
    the insecure configuration the TLS lesson captures a password from.

On every message the MX role checks SPF (RFC 7208: the client's address, XCLIENT's when
given, against the MAIL FROM domain, or postmaster@HELO for ``<>``), every DKIM
signature (RFC 6376) and then DMARC (RFC 9989, :mod:`labsupport.auth.dmarc`), with the lab's
zones in memory as resolver, removes any Authentication-Results field that claims to be
its own (RFC 8601 section 5) and adds one Authentication-Results field (authserv-id
``mx.lab.test``, with ``spf=``, ``dkim=`` and ``dmarc=``) below its Received field. It
then applies the disposition the From domain's DMARC policy asks for: ``reject``: the
DATA command gets 550 5.7.1 with the reason and nothing is stored or re-sent;
``quarantine``: each copy goes to the recipient's Junk folder; ``none``: INBOX. Every
evaluation is kept in ``lab.smtp.evaluations`` (:mod:`labsupport.auth.authres`), which
``lab.dmarc_reports()`` turns into aggregate reports (:mod:`labsupport.auth.dmarc_reports`).
The submission roles DKIM-sign the mail of an authenticated user whose domain has a lab
key in ``data/keys`` (selector ``lab2026-rsa``, relaxed/relaxed) before queueing it;
``lab.smtp.set_signing_key(domain, key, selector)`` makes them sign another domain's mail
with a key made at run time (the capstone, ``notebooks/07-capstone-secure-a-domain.ipynb``).

Two lab addresses re-send what they receive through the delivering MTA
(``lab.smtp.aliases()``, described in :mod:`labsupport.mail.aliases`): the forwarder
``carol@alumni.example`` (original MAIL FROM kept: SPF then fails) and the mailing list
``course@lists.campus.test`` (its own envelope sender, a subject tag and a footer: the
author's DKIM body hash then fails; From rewritten for authors whose domain publishes
``p=reject`` or ``p=quarantine``). The MX role accepts mail for both (and stores what
comes to the list's bounce address), queues each copy to be sent from the address's own
outbound host, and signs the list's copies with campus.test's lab key, so they pass DMARC
as lists.campus.test.

Every reply carries an enhanced status code (RFC 3463, RFC 2034) and a sentence a learner
can read; SIZE (RFC 1870), 8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531) are advertised and
honoured. Misbehaving clients (over-long lines, commands out of sequence, garbage bytes,
too many errors or recipients, oversize messages) get their reply, and the server keeps
serving everyone else. Accepted mail is stored durably (see :mod:`labsupport.mail.mailstore`)
with a Received header (RFC 5321 section 4.4) before the server says 250; mail submitted
for delivery goes to the lab's queue (``lab.queue``) when there is one. Lesson faults
(:mod:`labsupport.mail.faults`) are applied at each stage.

aiosmtpd speaks the protocol; :class:`LabSMTP` adds what a lab needs and mends two
aiosmtpd gaps: AUTH in implicit-TLS mode (aiosmtpd only counts TLS it started itself with
STARTTLS) and the MAIL command-length allowance that grows with every EHLO.

The server is split by concept, and this module stays its entry point (every name it
offered before is still importable from here): :mod:`labsupport.mail.server_roles` holds
the roles, the limits of a session, the reply texts and the log;
:mod:`labsupport.mail.server_session` one client connection (:class:`LabSMTP`);
:mod:`labsupport.mail.server_handler` what each role does with mail; this module the
:class:`MailServer` that runs them, with :func:`example_commands` and
:func:`lab_hostnames`.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import Session

from ..auth.authres import EvaluationLog
from ..core.clock import LabClock
from ..core.errors import LabError
from ..core.results import html_table, text_table
from ..wire.tls import LabCA, server_names
from .accounts import Accounts, normalise_address
from .aliases import LAB_ALIASES as LAB_ALIASES
from .aliases import Alias as Alias
from .aliases import Forwarder as Forwarder
from .aliases import MailingList as MailingList
from .faults import Faults
from .greylist import Greylist
from .mailstore import MailStore
from .server_handler import LOOPBACK_OVERRIDE as LOOPBACK_OVERRIDE
from .server_roles import COMMAND_LINE_LIMIT as COMMAND_LINE_LIMIT
from .server_roles import DEFAULT_ROLES as DEFAULT_ROLES
from .server_roles import DEFAULT_SIZE_LIMIT as DEFAULT_SIZE_LIMIT
from .server_roles import IDLE_TIMEOUT as IDLE_TIMEOUT
from .server_roles import MAX_ERRORS as MAX_ERRORS
from .server_roles import MAX_RECIPIENTS as MAX_RECIPIENTS
from .server_roles import MX_HOSTNAME as MX_HOSTNAME
from .server_roles import ROLES as ROLES
from .server_roles import SUBMISSION_HOSTNAME as SUBMISSION_HOSTNAME
from .server_roles import TEXT_LINE_LIMIT as TEXT_LINE_LIMIT
from .server_roles import XCLIENT_ATTRIBUTES as XCLIENT_ATTRIBUTES
from .server_roles import ClientIdentity as ClientIdentity
from .server_roles import Connection, _shown
from .server_roles import MailLog as MailLog
from .server_roles import MailLogEntry as MailLogEntry
from .server_roles import Role as Role
from .server_roles import SubmissionQueue as SubmissionQueue
from .server_session import LabSMTP as LabSMTP

if TYPE_CHECKING:
    from ..auth.dkim_keys import LabKey

#: The selector of the lab keys the submission roles sign with (data/keys, RSA).
SIGNING_SELECTOR = "lab2026-rsa"


# -- the server --------------------------------------------------------------------------


class MailServer:
    """The lab's mail roles on one asyncio loop (see the module docstring).

    Build it with the lab's parts (``labsupport.start()`` does); :meth:`start` runs on
    the loop. ``queue`` is called for each submitted message and returns the delivering
    MTA's queue, or None to deliver lab mail straight into the mailboxes.
    """

    def __init__(self, *, accounts: Accounts, store: MailStore, faults: Faults, ca: LabCA,
                 domains: Iterable[str], clock: LabClock | None = None,
                 queue: Callable[[], SubmissionQueue | None] | None = None,
                 reverse_name: Callable[[str], str | None] | None = None,
                 size_limit: int = DEFAULT_SIZE_LIMIT, max_recipients: int = MAX_RECIPIENTS,
                 idle_timeout: float = IDLE_TIMEOUT, ports: dict[str, int] | None = None,
                 roles: Iterable[str] = DEFAULT_ROLES, auth_resolver: Any = None,
                 signing_keys: Path | None = None,
                 aliases: Iterable[Alias] = LAB_ALIASES) -> None:
        self.accounts = accounts
        self.store = store
        self.faults = faults
        self.ca = ca
        self.domains = tuple(sorted({d.lower().rstrip(".") for d in domains}))
        self.clock = clock or LabClock()
        #: The MX role's greylisting (off until a lesson turns it on), on the lab clock.
        self.greylist = Greylist(self.clock)
        self.queue: Callable[[], SubmissionQueue | None] = queue or (lambda: None)
        self._reverse_name = reverse_name
        self.size_limit = size_limit
        self.max_recipients = max_recipients
        self.idle_timeout = idle_timeout
        self.log = MailLog()
        #: Resolver for the MX role's SPF and DKIM checks (the lab's zones, in memory);
        #: None: no checks and no Authentication-Results field.
        self.auth_resolver = auth_resolver
        self.authserv_id = MX_HOSTNAME
        #: The MX role's latest SPF and DKIM evaluations, newest last.
        self.evaluations = EvaluationLog()
        self._signing_keys_dir = signing_keys
        self._signing_keys: dict[str, LabKey | None] = {}
        self._keys_lock = threading.Lock()
        #: Selectors set with set_signing_key (the lab keys use SIGNING_SELECTOR).
        self._signing_selectors: dict[str, str] = {}
        self._aliases = {normalise_address(a.address): a for a in aliases}
        self._wanted_ports = dict(ports or {})
        self._start_roles = tuple(roles)
        for name in (*self._start_roles, *self._wanted_ports):
            if name not in ROLES:
                raise LabError(f"unknown role {name!r}: use one of {', '.join(ROLES)}")
        self._servers: dict[str, asyncio.base_events.Server] = {}
        self._ports: dict[str, int] = {}
        self._connections: set[LabSMTP] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- policy --------------------------------------------------------------------------

    def is_lab_domain(self, domain: str) -> bool:
        """True for a lab receiving domain or a name under one (lists.campus.test)."""
        domain = domain.lower().rstrip(".")
        return any(domain == d or domain.endswith("." + d) for d in self.domains)

    def aliases(self) -> dict[str, Alias]:
        """The forwarder and mailing-list addresses the MX role accepts, each with what
        it does (``describe()``)."""
        return dict(self._aliases)

    def _bounce_addresses(self) -> set[str]:
        return {normalise_address(a.bounce_address) for a in self._aliases.values()
                if isinstance(a, MailingList)}

    @property
    def signing_keys_dir(self) -> Path | None:
        """The folder of the lab's own signing keys (``data/keys/``, one folder per
        domain), which the submission roles DKIM-sign with and the forwarder and list
        ARC-seal with; None: this server signs nothing."""
        return self._signing_keys_dir

    def signing_key(self, domain: str) -> LabKey | None:
        """The lab's RSA key the submission roles sign ``domain``'s mail with, or None
        (no key directory, or no key for that domain)."""
        domain = domain.lower().rstrip(".")
        if self._signing_keys_dir is None or not domain:
            return None
        with self._keys_lock:
            if domain not in self._signing_keys:
                from ..auth.dkim_keys import DKIMError, lab_key

                try:
                    key: LabKey | None = lab_key(domain, "rsa", self._signing_keys_dir)
                except (DKIMError, OSError):
                    key = None
                self._signing_keys[domain] = key
            return self._signing_keys[domain]

    def set_signing_key(self, domain: str, key: LabKey | None,
                        selector: str | None = None) -> None:
        """Sign the mail the submission roles send for ``domain`` with ``key`` under
        ``selector`` from now on (RFC 6376: the receiver finds the public key at
        ``<selector>._domainkey.<domain>``, so publish it there, e.g. with
        :func:`labsupport.auth.dkim_keys.publish`). ``key=None`` stops signing for the domain
        (a lab key in ``data/keys`` is used again if it has one). ``selector`` defaults to
        the key's own (``key.selector``). Introduced in
        ``notebooks/07-capstone-secure-a-domain.ipynb``."""
        domain = domain.lower().rstrip(".")
        if not domain:
            raise LabError("set_signing_key needs a domain, e.g. 'newco.test'")
        with self._keys_lock:
            if key is None:
                self._signing_keys.pop(domain, None)
                self._signing_selectors.pop(domain, None)
                return
            chosen = selector or getattr(key, "selector", None)
            if not chosen:
                raise LabError(f"which selector does {domain} sign with? give selector=..., "
                               "the name its key is published under")
            self._signing_keys[domain] = key
            self._signing_selectors[domain] = str(chosen)

    def reset_signing(self) -> None:
        """Forget keys set with :meth:`set_signing_key`; the lab keys in ``data/keys`` are
        read again when next needed (``lab.reset()`` calls this)."""
        with self._keys_lock:
            self._signing_keys.clear()
            self._signing_selectors.clear()

    def signing_selector(self, domain: str) -> str:
        """The selector the submission roles put in ``s=`` for ``domain``'s mail."""
        return self._signing_selectors.get(domain.lower().rstrip("."), SIGNING_SELECTOR)

    def reverse_name(self, address: str) -> str | None:
        """The lab's reverse DNS name for ``address`` (PTR), if any."""
        if self._reverse_name is None:
            return None
        try:
            return self._reverse_name(address)
        except Exception:  # noqa: BLE001 - a name is a nicety; the address stays
            return None

    def recipient_refusal(self, role: Role, session: Session, address: str) -> str | None:
        """The reply refusing ``address`` on ``role``, or None to accept it."""
        local, at, domain = address.rpartition("@")
        shown = _shown(address, 200)
        if not at or not local or not domain:
            return f"553 5.1.3 <{shown}>: a recipient is local-part@domain"
        lab_domain = self.is_lab_domain(domain)
        if role.submission:
            if not session.authenticated:
                return (f"550 5.7.1 <{shown}>: Relay access denied: log in (AUTH) to send "
                        f"through the {role.name} role")
            if not lab_domain:
                return (f"550 5.7.1 <{shown}>: Relay access denied: the lab delivers only to "
                        "its own domains and never to the Internet")
            if self.queue() is None and not self.accounts.exists(address):
                return f"550 5.1.1 <{shown}>: Recipient address rejected: no such mailbox " \
                       "in the lab"
            return None
        if not lab_domain:
            return (f"550 5.7.1 <{shown}>: Relay access denied: this MX accepts mail only for "
                    "the lab's domains (it is not an open relay)")
        wanted = normalise_address(address)
        if wanted in self._aliases or wanted in self._bounce_addresses():
            return None  # a forwarder, a list, or a list's bounce mailbox
        if not self.accounts.exists(address):
            return f"550 5.1.1 <{shown}>: Recipient address rejected: no such mailbox in the lab"
        return None

    def _record(self, smtp: Connection, event: str, detail: str = "") -> None:
        self.log.record(MailLogEntry(self.clock.time(), smtp.role.name, smtp.client_label,
                                     event, detail))

    # -- life cycle (on the loop) --------------------------------------------------------

    async def start(self) -> None:
        """Start the roles this server was built with."""
        self._loop = asyncio.get_running_loop()
        for name in self._start_roles:
            await self.start_role(name)

    async def start_role(self, name: str) -> int:
        """Start one role (if it is not running) and return its port."""
        if name not in ROLES:
            raise LabError(f"unknown role {name!r}: use one of {', '.join(ROLES)}")
        if name in self._servers:
            return self._ports[name]
        role = ROLES[name]
        loop = asyncio.get_running_loop()
        self._loop = loop
        context = self.ca.server_context() if role.implicit_tls else None
        server = await loop.create_server(lambda: LabSMTP(self, role, loop), "127.0.0.1",
                                          self._wanted_ports.get(name, 0), ssl=context)
        self._servers[name] = server
        self._ports[name] = int(server.sockets[0].getsockname()[1])
        return self._ports[name]

    async def stop_role(self, name: str) -> None:
        """Stop one role: no new connections, and its open ones closed."""
        server = self._servers.pop(name, None)
        self._ports.pop(name, None)
        if server is None:
            return
        server.close()
        await self._close_connections([c for c in self._connections if c.role.name == name])
        try:
            await asyncio.wait_for(server.wait_closed(), 5)
        except TimeoutError:
            pass

    async def stop(self) -> None:
        """Stop every role."""
        for name in list(self._servers):
            await self.stop_role(name)
        await self._close_connections(list(self._connections))

    @staticmethod
    async def _close_connections(connections: list[LabSMTP]) -> None:
        tasks = []
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
            if connection._handler_coroutine is not None:
                connection._handler_coroutine.cancel()
                tasks.append(connection._handler_coroutine)
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # -- from any thread -----------------------------------------------------------------

    def port(self, role: str) -> int:
        """The port ``role`` listens on (127.0.0.1)."""
        if role not in ROLES:
            raise LabError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        try:
            return self._ports[role]
        except KeyError:
            hint = " (turn it on with lab.smtp.enable_legacy())" if role == "legacy" else ""
            raise LabError(f"the {role} role is not running{hint}") from None

    def ports(self) -> dict[str, int]:
        """Every running role and its port."""
        return dict(self._ports)

    def info(self) -> dict[str, dict[str, Any]]:
        """``{"mx": {"host": "127.0.0.1", "port": N}, ...}`` for every running role."""
        return {name: {"host": "127.0.0.1", "port": port} for name, port in self._ports.items()}

    def _run(self, coro: Awaitable[Any]) -> Any:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise LabError("the mail server is not running; start the lab first")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise LabError("call this from outside the lab's event loop "
                           "(or await start_role/stop_role there)")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)  # type: ignore[arg-type]

    def enable_legacy(self) -> int:
        """Turn on the insecure legacy role (AUTH without TLS) and return its port."""
        return int(self._run(self.start_role("legacy")))

    def disable_legacy(self) -> None:
        """Turn the legacy role off again."""
        if "legacy" in self._servers:
            self._run(self.stop_role("legacy"))

    # -- renderings ----------------------------------------------------------------------

    def _rows(self) -> list[list[object]]:
        return [[name, f"127.0.0.1 port {port}", ROLES[name].summary]
                for name, port in self._ports.items()]

    def __repr__(self) -> str:
        ports = ", ".join(f"{name} {port}" for name, port in self._ports.items())
        return f"<MailServer {ports or 'stopped'}>"

    def __str__(self) -> str:
        return text_table(["role", "where", "what"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["role", "where", "what"], self._rows(), caption="Lab mail server")


def example_commands(ports: dict[str, int], ca_file: str, address: str, password: str,
                     rcpt: str = "carol@campus.test") -> list[tuple[str, str]]:
    """Terminal commands that talk to the running roles, as (what it shows, command).

    Only roles in ``ports`` get commands; ``address``/``password`` is the account used
    for AUTH. ``serve`` prints them; the tests run them.
    """
    commands: list[tuple[str, str]] = []
    mx, sub, subs = ports.get("mx"), ports.get("submission"), ports.get("submissions")
    login = f"--auth PLAIN --auth-user {address} --auth-password {password}"
    if mx:
        commands += [
            ("plain SMTP to the MX role",
             f"swaks --server 127.0.0.1:{mx} --from bob@northwind.test --to {rcpt}"),
            ("the attacker's forgery (XCLIENT): refused by Northwind's DMARC p=reject",
             f"swaks --server 127.0.0.1:{mx} --xclient-addr 203.0.113.66 "
             f"--xclient-helo out.phisher.example --from ceo@northwind.test --to {rcpt}"),
        ]
    if sub:
        commands += [
            ("submission: STARTTLS, then AUTH",
             f"swaks --server 127.0.0.1:{sub} --tls --tls-verify --tls-ca-path {ca_file} "
             f"{login} --from {address} --to {rcpt}"),
            ("the TLS handshake and certificate, after STARTTLS",
             f"openssl s_client -starttls smtp -connect 127.0.0.1:{sub} -CAfile {ca_file} "
             "-crlf -nocommands"),
            ("curl, TLS required (write the message in message.txt first)",
             f"curl --ssl-reqd --url smtp://127.0.0.1:{sub} --cacert {ca_file} "
             f"--user '{address}:{password}' --mail-from {address} --mail-rcpt {rcpt} "
             "--upload-file message.txt"),
        ]
    if subs:
        commands += [
            ("submissions: TLS from the first byte, then AUTH",
             f"swaks --server 127.0.0.1:{subs} --tls-on-connect --tls-verify --tls-ca-path "
             f"{ca_file} {login} --from {address} --to {rcpt}"),
            ("the implicit-TLS handshake",
             f"openssl s_client -connect 127.0.0.1:{subs} -CAfile {ca_file} -crlf -nocommands"),
        ]
    if ports.get("legacy"):
        commands.append(("INSECURE legacy role: AUTH in clear text",
                         f"swaks --server 127.0.0.1:{ports['legacy']} {login} "
                         f"--from {address} --to {rcpt}"))
    return commands


def lab_hostnames(domains: Iterable[str]) -> list[str]:
    """The names the lab's server certificate carries: the roles' host names, each lab
    domain and a wildcard under it (``*.northwind.test`` covers ``mx1.northwind.test``)."""
    return [MX_HOSTNAME, SUBMISSION_HOSTNAME, *server_names(domains)]


__all__ = ["DEFAULT_ROLES", "LAB_ALIASES", "ROLES", "SIGNING_SELECTOR", "Alias", "Forwarder",
           "LabSMTP", "MailLog", "MailLogEntry", "MailServer", "MailingList", "Role",
           "SubmissionQueue", "example_commands", "lab_hostnames"]
