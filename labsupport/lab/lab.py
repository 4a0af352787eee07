"""Starting and stopping the whole lab: one call, a background thread, a state directory.

``labsupport.start()`` starts every lab service on one asyncio event loop in a
background thread (Jupyter owns the main loop) and returns a :class:`Lab` that names
its parts. Within one kernel it is idempotent; at kernel exit the lab stops cleanly.
Each lab has its own ports (ephemeral unless asked) and its own state directory, which
it locks, so two students on one host, or two kernels of one student, never share
anything by accident. A lab started again on the same state directory keeps its data:
live zone edits, the mail accounts and their passwords, the certificate authority and
every stored message.

The mail side (``lab.smtp``, ``lab.mail``, ``lab.accounts``, ``lab.ca``, ``lab.faults``,
``lab.queue``) is introduced in ``notebooks/02-smtp-dialogue.ipynb``.

Introduced in ``notebooks/00-start-here.ipynb``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.resolver

from ..core.clock import LabClock
from ..core.errors import LabError, StateDirBusy
from ..core.paths import DATA_DIR
from ..core.results import html_table, text_table
from ..dns.mx import MXResult, mx_hosts
from ..dns.nameserver import DNSServer
from ..dns.query import DNSExchange, ask, dig
from ..dns.zone import ZoneSet
from ..mail.accounts import Accounts
from ..mail.faults import Faults
from ..mail.mailstore import MailStore
from . import control, statedir
from .lab_commands import LabCommands
from .lab_mail import LabMail
from .lab_state import _EDITS_FILE, LabState
from .statedir import RUNTIME_FILE, StateLock, labs_home, read_runtime, running_labs

if TYPE_CHECKING:  # imported when the lab starts: aiosmtpd and TLS cost import time
    from ..mail.mtasts_fetch import PolicyFetcher
    from ..mail.mtasts_server import PolicyServer
    from ..mail.server import MailServer
    from ..wire.tls import LabCA

#: The folder of the state directory that keeps the zones' DNSSEC signing keys.
DNSSEC_KEYS = "dnssec"


class Lab(LabMail, LabCommands, LabState):
    """A running lab: its services, ports, resolver, clock and state directory.

    Do not build one directly; call :func:`labsupport.start`.

    Attributes:
        state_dir: this lab's own folder (zone edits, later mailboxes and keys).
        clock: the :class:`~labsupport.core.clock.LabClock` every service asks for the time.
        zones: the live :class:`~labsupport.dns.zone.ZoneSet`; edit it and the next query
            sees the change. It is also an in-memory resolver (``lab.zones.resolve``).
        dns: the :class:`~labsupport.dns.nameserver.DNSServer` (``lab.dns.port``,
            ``lab.dns.log``).
        resolver: a dnspython ``Resolver`` that asks the lab's DNS server, over UDP.
        smtp: the :class:`~labsupport.mail.server.MailServer` (``lab.smtp.port("mx")``;
            ``lab.smtp.evaluations``: the MX role's SPF, DKIM and DMARC checks of the
            latest messages, which ``lab.dmarc_reports()`` reports on;
            ``lab.smtp.aliases()``: the forwarder and the mailing list).
        mail: the lab's mailboxes, a :class:`~labsupport.mail.mailstore.MailStore`.
        accounts: the lab's :class:`~labsupport.mail.accounts.Accounts` (logins, passwords).
        ca: the lab's certificate authority (``lab.ca.ca_file`` for clients that verify).
        faults: the lesson faults the mail server applies
            (:class:`~labsupport.mail.faults.Faults`).
        queue: the delivering MTA's outbound queue (``labsupport.mail.delivery.Queue``), or
            None when that module is not available. It applies MTA-STS (RFC 8461) with
            ``mta_sts_fetcher``.
        mta_sts: the HTTPS server of every ``mta-sts.<domain>`` policy host
            (:class:`~labsupport.mail.mtasts_server.PolicyServer`, ``lab.mta_sts.port``,
            ``lab.mta_sts.curl_command("northwind.test")``).
        mta_sts_fetcher: the delivering MTA's MTA-STS policy discovery and cache
            (:class:`~labsupport.mail.mtasts_fetch.PolicyFetcher`), or None without a queue.

    The parts live in their own modules: the mail services in
    :mod:`labsupport.lab.lab_mail`, the control channel's commands in
    :mod:`labsupport.lab.lab_commands`, the runtime file and the zone-edit journal in
    :mod:`labsupport.lab.lab_state`.
    """

    def __init__(self, state_dir: Path, *, dns_port: int = 0, data_dir: Path = DATA_DIR) -> None:
        self.state_dir = state_dir
        self.data_dir = data_dir
        self.clock = LabClock()
        try:
            self.zones = ZoneSet.from_directory(data_dir / "zones")
        except FileNotFoundError as exc:
            raise LabError(
                f"the lab's zone files are not in {data_dir / 'zones'}; set MAIL_LABS_DATA "
                "to the course's data/ folder"
            ) from exc
        # The zones are signed when a DNSSEC question first needs it; the keys are kept
        # in the state directory, so a lab started again publishes the same DNSKEYs.
        self.dns = DNSServer(self.zones, port=dns_port, clock=self.clock,
                             dnssec_keys=state_dir / DNSSEC_KEYS)
        self.resolver = dns.resolver.Resolver(configure=False)
        self.faults = Faults()
        # Made in _setup_mail() once the state directory is locked.
        self.accounts: Accounts
        self.ca: LabCA
        self.mail: MailStore
        self.smtp: MailServer
        self.mta_sts: PolicyServer
        self.mta_sts_fetcher: PolicyFetcher | None = None
        self.queue: Any = None
        self.started_at = 0.0
        self._lock = StateLock(state_dir)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._control: control.ControlServer | None = None
        # dnspython's default resolver before use_as_default_resolver() (None: not made yet).
        self._previous_default_resolver: dns.resolver.Resolver | None = None
        self._replaced_default_resolver = False
        self._services: list[tuple[str, Callable[[], Awaitable[None]],
                                   Callable[[], Awaitable[None]]]] = []
        self._resetters: list[Callable[[], None]] = []
        self.commands: dict[str, Callable[..., Any]] = {}
        self.add_command("status", self.info)
        self.add_command("reset", self._reset_command)
        self.add_command("dns", self._dns_command)
        self.add_command("clock", self._clock_command)
        self.add_command("log", lambda last=20: [str(e) for e in self.dns.log.entries(last)])
        self.add_command("faults", self._faults_command)
        self.add_command("queue", self._queue_command)
        self.add_command("greylist", self._greylist_command)
        self.add_command("mail-log",
                         lambda last=20: [str(e) for e in self.smtp.log.entries(last)])

    # -- life cycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        if not self._lock.acquire():
            raise StateDirBusy(f"another lab is running on {self.state_dir}")
        try:
            self._replay_edits()
            self.zones.on_edit(self._journal_edit)
            # Made here, 0700, before a signer writes its keys (0600) into it.
            (self.state_dir / DNSSEC_KEYS).mkdir(mode=statedir.PRIVATE_DIR_MODE,
                                                 exist_ok=True)
            self._setup_mail()
            statedir.tighten(self.ca.directory)  # the CA writes its certificates 0644
            ready = threading.Event()
            failure: list[BaseException] = []
            self._thread = threading.Thread(
                target=self._run, args=(ready, failure), name="mail-labs", daemon=True
            )
            self._thread.start()
            ready.wait()
            if failure:
                raise LabError(f"the lab could not start: {failure[0]}") from failure[0]
            self.resolver.nameservers = ["127.0.0.1"]
            self.resolver.port = self.dns.port
            self.resolver.timeout = 2.0
            self.resolver.lifetime = 4.0
            self.resolver.cache = None
            if self.queue is not None:
                self.queue.start()
            self._write_runtime_file()
            self.started_at = time.time()
        except BaseException:
            if self.queue is not None:
                self.queue.stop()
            if self.running and self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                assert self._thread is not None
                self._thread.join(timeout=10)
            self._lock.release()
            raise

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_services())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._stop_services())
            # Deliveries in worker threads finish before the loop goes away.
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _start_services(self) -> None:
        await self.dns.start()
        for _name, start, _stop in self._services:
            await start()
        self._control = control.ControlServer(self.commands)
        await self._control.start()

    async def _stop_services(self) -> None:
        if self._control is not None:
            await self._control.stop()
        for _name, _start, stop in reversed(self._services):
            try:
                await stop()
            except Exception:  # noqa: BLE001, S110 - stopping the rest matters more
                pass
        await self.dns.stop()

    def stop(self) -> None:
        """Stop every service, release the state directory, forget the default resolver."""
        if self.queue is not None:
            self.queue.stop()
        if self._loop is not None and self.running:
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._thread is not None
            self._thread.join(timeout=10)
        if self._replaced_default_resolver:
            dns.resolver.default_resolver = self._previous_default_resolver
            self._previous_default_resolver = None
            self._replaced_default_resolver = False
        runtime = self.state_dir / RUNTIME_FILE
        try:
            if json.loads(runtime.read_text()).get("pid") == os.getpid():
                runtime.unlink()
        except (OSError, ValueError):
            pass
        self._lock.release()
        _RUNNING.pop(self.state_dir, None)

    def run_coroutine(self, coro: Awaitable[Any], timeout: float | None = 30) -> Any:
        """Run a coroutine on the lab's loop from another thread and wait for it."""
        if self._loop is None or not self.running:
            raise LabError("the lab is not running; start it with labsupport.start()")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    # -- extension points for later lessons ---------------------------------------------

    def add_command(self, name: str, handler: Callable[..., Any]) -> None:
        """Make ``handler(**args)`` callable as ``python -m labsupport NAME`` on a running lab."""
        self.commands[name] = handler

    def on_reset(self, resetter: Callable[[], None]) -> None:
        """Call ``resetter()`` when the lab is reset to its known state."""
        self._resetters.append(resetter)

    # -- what students use --------------------------------------------------------------

    def use_as_default_resolver(self) -> dns.resolver.Resolver:
        """Make the lab's resolver dnspython's default for this kernel, so third-party
        libraries (``dns.resolver.resolve``) ask the lab too; undone when the lab stops."""
        if not self._replaced_default_resolver:
            # Not get_default_resolver(): that reads /etc/resolv.conf, which an offline
            # machine may not have. None is restored as None (made again when needed).
            self._previous_default_resolver = dns.resolver.default_resolver
            self._replaced_default_resolver = True
        dns.resolver.default_resolver = self.resolver
        return self.resolver

    def reset(self) -> None:
        """Put the lab back to its known state: zones as their files have them, the
        clock on real time, the query log empty, mailboxes, the queue and the MX role's
        evaluations empty, no faults, no greylisting, the legacy mail role off, the
        MTA-STS policies as published and the sender's policy cache empty, every zone
        signed afresh (a damaged or held DNSSEC signature repaired). Accounts, passwords,
        the CA and the DNSSEC keys stay."""
        self.zones.reset()
        self.zones.clear_failures()
        (self.state_dir / _EDITS_FILE).unlink(missing_ok=True)
        self.clock.reset()
        self.dns.log.clear()
        if self.dns.dnssec is not None:
            self.dns.dnssec.repair()
        for resetter in self._resetters:
            resetter()

    def dig_command(self, name: str, rdtype: str = "A", *, tcp: bool = False) -> str:
        """The ``dig`` command line that asks the lab's DNS server the same question."""
        tcp_flag = " +tcp" if tcp else ""
        return f"dig @127.0.0.1 -p {self.dns.port} {name} {rdtype}{tcp_flag}"

    def query(self, name: str, rdtype: str = "A", *, tcp: bool = False,
              edns: bool = True) -> DNSExchange:
        """Ask the lab's DNS server one question over the wire; see :func:`query.ask`."""
        return ask(name, rdtype, server=self.dns.host, port=self.dns.port, tcp=tcp, edns=edns)

    def dig(self, name: str, rdtype: str = "A", *, tcp: bool = False) -> str:
        """Run the real ``dig`` against the lab (when installed) and return its output."""
        return dig(self.dig_command(name, rdtype, tcp=tcp))

    def dmarc_reports(self, begin: Any = None, end: Any = None, **options: Any
                      ) -> dict[str, bytes]:
        """DMARC aggregate reports (RFC 9990 XML) for the period ``[begin, end]`` of the
        lab clock, one per policy domain that mail claimed to come from, built from the
        MX role's evaluations (``lab.smtp.evaluations``). ``begin``/``end`` are
        datetimes or seconds since the epoch; by default the whole of what the MX role
        remembers, up to now. ``options`` go to
        :func:`labsupport.auth.dmarc_reports.aggregate_report` (``org_name``...).
        Read one with :func:`labsupport.auth.dmarc_reports.parse_report`.
        Introduced in ``notebooks/06-dmarc.ipynb``."""
        from datetime import datetime

        from ..auth.dmarc_reports import reports_by_domain

        def seconds(value: Any, default: float) -> float:
            if value is None:
                return default
            if isinstance(value, datetime):
                return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
            return float(value)

        evaluations = self.smtp.evaluations.all()
        first = min((e.time for e in evaluations), default=self.clock.time())
        return reports_by_domain(evaluations, begin=seconds(begin, first),
                                 end=seconds(end, self.clock.time()), **options)

    def mx(self, domain: str, rng: random.Random | None = None) -> MXResult:
        """MX selection for ``domain`` against the lab's DNS; see :func:`mx.mx_hosts`."""
        return mx_hosts(domain, self.resolver, rng=rng)

    def info(self) -> dict[str, Any]:
        """What is running and how to reach it (``serve --json`` prints this)."""
        return {
            "dns": {"host": self.dns.host, "port": self.dns.port},
            "smtp": self.smtp.info(),
            "mta_sts": {"host": "127.0.0.1",
                        "port": self.mta_sts.port if self.mta_sts.running else 0,
                        "domains": self.mta_sts.domains()},
            "imap": imap.info() if (imap := self.imap_if_running()) else {"port": 0},
            "ca_file": str(self.ca.ca_file),
            "accounts": [{"address": a.address, "password": a.password}
                         for a in self.accounts.all()],
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
            "zones": self.zones.origins,
            "clock": self.clock.now().isoformat(timespec="seconds"),
        }

    def _rows(self) -> list[list[object]]:
        rows: list[list[object]] = [
            ["DNS server", f"127.0.0.1 port {self.dns.port} (UDP and TCP)"],
            ["try it", self.dig_command("northwind.test", "MX")],
        ]
        for role, port in self.smtp.ports().items():
            rows.append([f"SMTP {role} role", f"127.0.0.1 port {port}"])
        if self.mta_sts.running and self.mta_sts.domains():
            rows.append(["MTA-STS policy host", f"127.0.0.1 port {self.mta_sts.port} (HTTPS, "
                         f"for mta-sts.{', mta-sts.'.join(self.mta_sts.domains())})"])
        if (imap := self.imap_if_running()) is not None:
            rows.append(["IMAP (Dovecot)", f"127.0.0.1 port {imap.port} (implicit TLS, the "
                         "role of port 993; lab.imap.curl_command())"])
        first = self.accounts.all()[0]
        rows += [
            ["CA certificate", str(self.ca.ca_file)],
            ["accounts", f"{len(self.accounts)}, e.g. {first.address} / {first.password} "
                         "(lab.accounts lists them all)"],
            ["zones", ", ".join(self.zones.mail_domains())],
            ["state directory", str(self.state_dir)],
            ["lab clock", self.clock.now().isoformat(timespec="seconds")],
        ]
        return rows

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        smtp = f", SMTP MX on 127.0.0.1:{self.smtp.ports()['mx']}" \
            if self.running and "mx" in self.smtp.ports() else ""
        return (f"<Lab {state}, DNS on 127.0.0.1:{self.dns.port}{smtp}, "
                f"state in {self.state_dir}>")

    def __str__(self) -> str:
        return text_table(["part", "where"], self._rows())

    def _repr_html_(self) -> str:
        state = "running" if self.running else "stopped"
        return html_table(["part", "where"], self._rows(), caption=f"The lab ({state})")


#: Labs running in this process, by state directory.
_RUNNING: dict[Path, Lab] = {}
_START_LOCK = threading.Lock()


def start(state_dir: str | Path | None = None, *, dns_port: int = 0) -> Lab:
    """Start the lab (or return the one this kernel already runs) and return it.

    With no ``state_dir`` the lab uses ``<labs_home()>/lab``, or ``lab-2``, ``lab-3``...
    when another process (another kernel of the same user) holds that one. ``dns_port``
    0 means an ephemeral port.
    """
    with _START_LOCK:
        if state_dir is None and _RUNNING:
            return next(iter(_RUNNING.values()))
        if state_dir is not None:
            path = Path(state_dir).expanduser().resolve()
            if path in _RUNNING:
                return _RUNNING[path]
            candidates = [path]
        else:
            home = labs_home()
            candidates = [home / "lab"] + [home / f"lab-{n}" for n in range(2, 100)]
        for candidate in candidates:
            statedir.prepare_state_dir(candidate)  # 0700; tightened, and said so, if not
            lab = Lab(candidate, dns_port=dns_port)
            try:
                lab._start()
            except StateDirBusy:
                if state_dir is not None:
                    raise
                continue
            _RUNNING[candidate] = lab
            return lab
        raise LabError(f"every lab state directory under {labs_home()} is in use")


def current() -> Lab | None:
    """The lab this kernel runs, if any."""
    return next(iter(_RUNNING.values()), None)


def stop_all() -> None:
    for lab in list(_RUNNING.values()):
        lab.stop()


atexit.register(stop_all)


__all__ = ["Lab", "start", "current", "stop_all", "labs_home", "read_runtime", "running_labs"]
