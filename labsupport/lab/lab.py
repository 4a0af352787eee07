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

import dns.exception
import dns.resolver
import dns.reversename

from ..core.clock import LabClock
from ..core.errors import LabError, StateDirBusy, ZoneEditError
from ..core.paths import DATA_DIR
from ..core.results import html_table, text_table
from ..dns.mx import MXResult, mx_hosts
from ..dns.nameserver import DNSServer
from ..dns.query import DNSExchange, ask, dig
from ..dns.zone import ZoneSet
from ..mail.accounts import Accounts
from ..mail.faults import Faults
from ..mail.mailstore import MailStore
from . import control
from .statedir import RUNTIME_FILE, StateLock, labs_home, read_runtime, running_labs

if TYPE_CHECKING:  # imported when the lab starts: aiosmtpd and TLS cost import time
    from ..mail.server import MailServer
    from ..wire.tls import LabCA

#: Where the course's data lives (zones, keys, captures).
_EDITS_FILE = "dns-edits.jsonl"


class Lab:
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
            None when that module is not available.
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
        self.dns = DNSServer(self.zones, port=dns_port, clock=self.clock)
        self.resolver = dns.resolver.Resolver(configure=False)
        self.faults = Faults()
        # Made in _setup_mail() once the state directory is locked.
        self.accounts: Accounts
        self.ca: LabCA
        self.mail: MailStore
        self.smtp: MailServer
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
            self._setup_mail()
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

    def _setup_mail(self) -> None:
        """Accounts, CA, mailboxes, mail server and queue, from the state directory
        (made the first time, reloaded afterwards)."""
        from ..mail.server import MailServer, lab_hostnames
        from ..wire.tls import LabCA

        domains = self.zones.mail_domains()
        self.accounts = Accounts.load_or_create(self.state_dir / "accounts.json",
                                                domains=domains)
        self.ca = LabCA.load_or_create(self.state_dir / "tls", lab_hostnames(domains))
        self.mail = MailStore(self.state_dir / "mail")
        self.smtp = MailServer(accounts=self.accounts, store=self.mail, faults=self.faults,
                               ca=self.ca, domains=domains, clock=self.clock,
                               queue=lambda: self.queue, reverse_name=self._reverse_name,
                               # in memory: the DNS server shares the mail server's loop
                               auth_resolver=self.zones,
                               signing_keys=self.data_dir / "keys")
        self._services.append(("smtp", self.smtp.start, self.smtp.stop))
        self.queue = self._make_queue()
        self.on_reset(self._reset_mail)

    def _make_queue(self) -> Any:
        """The delivering MTA's queue, when labsupport.mail.delivery is there (else None: the
        submission roles then deliver lab mail straight into the mailboxes)."""
        try:
            from ..mail.delivery import Queue
        except ImportError:
            return None
        return Queue(self.state_dir / "queue", resolver=self.resolver, clock=self.clock,
                     store=self.mail, faults=self.faults, mx_port=lambda: self.smtp.port("mx"),
                     local_domains=lambda: set(self.zones.mail_domains()),
                     serving_loop=lambda: self._loop)

    def _reverse_name(self, address: str) -> str | None:
        """The PTR name of ``address`` in the lab's zones (in memory, no query)."""
        try:
            answer = self.zones.resolve(dns.reversename.from_address(address), "PTR")
        except dns.exception.DNSException:
            return None
        return str(next(iter(answer))).rstrip(".") if len(answer) else None

    def _reset_mail(self) -> None:
        self.mail.clear()
        self.smtp.reset_signing()
        self.faults.clear()
        self.smtp.greylist.disable()
        self.smtp.log.clear()
        self.smtp.evaluations.clear()
        if self.queue is not None and hasattr(self.queue, "clear"):
            self.queue.clear()
        if "legacy" in self.smtp.ports():
            self.smtp.disable_legacy()

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
        evaluations empty, no faults, no greylisting, the legacy mail role off. Accounts,
        passwords and the CA stay."""
        self.zones.reset()
        self.zones.clear_failures()
        (self.state_dir / _EDITS_FILE).unlink(missing_ok=True)
        self.clock.reset()
        self.dns.log.clear()
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

    # -- state on disk ------------------------------------------------------------------

    def _write_runtime_file(self) -> None:
        assert self._control is not None
        payload = {**self.info(), "control": {"port": self._control.port,
                                              "token": self._control.token}}
        path = self.state_dir / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        os.replace(tmp, path)

    def _journal_edit(self, op: dict[str, Any]) -> None:
        path = self.state_dir / _EDITS_FILE
        if op.get("op") == "reset" and op.get("zone") is None:
            path.unlink(missing_ok=True)
            return
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(op) + "\n")

    def _replay_edits(self) -> None:
        path = self.state_dir / _EDITS_FILE
        if not path.exists():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                self.zones.apply(json.loads(line))
            except (LabError, ValueError, KeyError):
                continue  # an edit that no longer fits the course's zones is dropped

    # -- commands for ``python -m labsupport`` ------------------------------------------

    def _reset_command(self) -> str:
        self.reset()
        return "the lab is back to its known state"

    def _dns_command(self, action: str, name: str = "", type: str = "",
                     values: list[str] | None = None,
                     zone: str | None = None) -> str:
        values = values or []
        if action in ("add", "set") and not values:
            raise ZoneEditError(f"dns {action} needs a name, a type and at least one value, "
                                "e.g. dns add careless.test MX '20 server.careless.test.'")
        if action == "add":
            for value in values:
                self.zones.add(name, type, value)
        elif action == "set":
            self.zones.set(name, type, *values)
        elif action == "remove":
            self.zones.remove(name, type or None, values[0] if values else None)
        elif action == "reset":
            self.zones.reset(zone)
        elif action == "show":
            if not (zone or name):
                raise LabError(f"show which zone? one of: {', '.join(self.zones.origins)}")
            return self.zones.zone_text(zone or name)
        else:
            raise LabError(f"unknown dns action {action!r}: use add, set, remove, reset or show")
        return "done"

    def _queue_command(self, action: str = "show") -> str:
        """``python -m labsupport queue [show|flush]``: the outbound queue, or try it now."""
        if self.queue is None:
            raise LabError("this lab has no delivery queue")
        if action == "flush":
            attempts = self.queue.flush()
            return "\n\n".join(a.text() for a in attempts) or "the queue is empty"
        if action != "show":
            raise LabError(f"unknown queue action {action!r}: use show or flush")
        return str(self.queue.describe()) if self.queue.items() else "the queue is empty"

    def _faults_command(self, action: str = "list", stage: str = "", reply: str = "",
                        match: str | None = None, times: int | None = 1, role: str = "mx",
                        delay: float = 0.0, host: str = "", rule_id: int | None = None
                        ) -> dict[str, Any]:
        """``python -m labsupport faults add|list|clear|remove|down|up`` on a running lab."""
        if action == "add":
            rule = self.faults.add(stage, reply, match=match, times=times, role=role,
                                   delay=delay)
            done = f"added {rule.describe()}"
        elif action == "clear":
            self.faults.clear()
            done = "every fault rule removed and every host up"
        elif action == "remove":
            if rule_id is None:
                raise LabError("remove which rule? give its number, e.g. faults remove 2")
            self.faults.remove(rule_id)
            done = f"rule #{rule_id} removed"
        elif action == "down":
            self.faults.host_down(host)
            done = f"{host} is down: the delivering MTA gets no connection to it"
        elif action == "up":
            self.faults.host_up(host)
            done = f"{host} is up again"
        elif action == "list":
            done = ""
        else:
            raise LabError(f"unknown faults action {action!r}: use add, list, clear, remove, "
                           "down or up")
        return {"done": done, "rules": [r.as_dict() for r in self.faults.rules()],
                "down": self.faults.down_hosts(), "text": str(self.faults)}

    def _greylist_command(self, action: str = "show", domains: list[str] | None = None,
                          delay: float | None = None) -> str:
        """``python -m labsupport greylist on|off|show`` on a running lab."""
        from ..mail.greylist import DEFAULT_DELAY

        greylist = self.smtp.greylist
        if action == "on":
            greylist.enable(domains or [], delay=DEFAULT_DELAY if delay is None else delay)
            done = f"greylisting mail to {', '.join(greylist.domains)}"
        elif action == "off":
            greylist.disable()
            done = "greylisting is off"
        elif action == "show":
            return str(greylist)
        else:
            raise LabError(f"unknown greylist action {action!r}: use on, off or show")
        return f"{done}\n{greylist}"

    def _clock_command(self, advance: float | None = None, set: str | None = None,
                       freeze: bool = False, real: bool = False) -> str:
        from datetime import datetime

        if real:
            self.clock.reset()
        if set:
            when = datetime.fromisoformat(set)
            if when.tzinfo is None:  # a time without an offset is taken as UTC
                when = when.replace(tzinfo=UTC)
            self.clock.set(when)
        if advance:
            self.clock.advance(advance)
        if freeze:
            self.clock.freeze()
        return self.clock.now().isoformat(timespec="seconds")


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
            candidate.mkdir(mode=0o700, parents=True, exist_ok=True)
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
