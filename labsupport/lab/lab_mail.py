"""The mail side of the lab: accounts, CA, mailboxes, the mail server, the MTA-STS policy
host and the delivering MTA's queue, made from the state directory, and their reset.

:class:`LabMail` is a part of :class:`labsupport.lab.lab.Lab` (which it is mixed into);
``lab.smtp``, ``lab.mail``, ``lab.accounts``, ``lab.ca``, ``lab.faults`` and ``lab.queue``
are introduced in ``notebooks/02-smtp-dialogue.ipynb``. ``lab.mta_sts`` is the HTTPS
server of every ``mta-sts.<domain>`` host (:mod:`labsupport.mail.mtasts_server`), and
``lab.mta_sts_fetcher`` the delivering MTA's policy discovery and cache
(:mod:`labsupport.mail.mtasts_fetch`, RFC 8461). The MX hosts of the DANE domains
(:data:`labsupport.mail.dane.DANE_DOMAINS`) publish TLSA records made from the lab
certificate, and the queue validates them (RFC 7672). ``lab.imap`` is Dovecot serving the
mailboxes over IMAP on implicit TLS (:mod:`labsupport.mail.imap`), started the first time
it is asked for, since not every lesson reads mail over IMAP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.resolver
import dns.reversename

from ..core.clock import LabClock
from ..dns.zone import ZoneSet
from ..mail.accounts import Accounts
from ..mail.faults import Faults
from ..mail.mailstore import MailStore

if TYPE_CHECKING:  # imported when the lab starts: aiosmtpd and TLS cost import time
    from ..mail.imap import IMAPServer
    from ..mail.mtasts_fetch import PolicyFetcher
    from ..mail.mtasts_server import PolicyServer
    from ..mail.server import MailServer
    from ..wire.tls import LabCA


class LabMail:
    """The lab's mail services (a part of :class:`~labsupport.lab.lab.Lab`)."""

    # What the lab object holds (made in Lab.__init__ and _setup_mail).
    state_dir: Path
    data_dir: Path
    clock: LabClock
    zones: ZoneSet
    resolver: dns.resolver.Resolver
    faults: Faults
    accounts: Accounts
    ca: LabCA
    mail: MailStore
    smtp: MailServer
    mta_sts: PolicyServer
    mta_sts_fetcher: PolicyFetcher | None
    queue: Any
    dns: Any
    _imap: IMAPServer | None
    _loop: asyncio.AbstractEventLoop | None
    _services: list[tuple[str, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]]
    on_reset: Callable[[Callable[[], None]], None]

    @property
    def running(self) -> bool:
        raise NotImplementedError  # Lab.running: the lab's thread is alive

    def _setup_mail(self) -> None:
        """Accounts, CA, mailboxes, mail server and queue, from the state directory
        (made the first time, reloaded afterwards)."""
        from ..mail.dane import DANE_DOMAINS, publish_tlsa
        from ..mail.mtasts_server import PolicyServer
        from ..mail.server import MailServer, lab_hostnames
        from ..wire.tls import LabCA

        domains = self.zones.mail_domains()
        self.accounts = Accounts.load_or_create(self.state_dir / "accounts.json",
                                                domains=domains)
        self.ca = LabCA.load_or_create(self.state_dir / "tls", lab_hostnames(domains))
        # _25._tcp.<MX host> TLSA 3 1 1, kept by a reset like the zone files' records
        publish_tlsa(self.zones, self.ca, DANE_DOMAINS)
        self._imap = None
        self.mta_sts = PolicyServer(self.ca)
        self.mail = MailStore(self.state_dir / "mail")
        self.smtp = MailServer(accounts=self.accounts, store=self.mail, faults=self.faults,
                               ca=self.ca, domains=domains, clock=self.clock,
                               queue=lambda: self.queue, reverse_name=self._reverse_name,
                               # in memory: the DNS server shares the mail server's loop
                               auth_resolver=self.zones,
                               signing_keys=self.data_dir / "keys")
        self._services.append(("smtp", self.smtp.start, self.smtp.stop))
        self._services.append(("mta-sts", self._start_mta_sts, self._stop_mta_sts))
        self._services.append(("imap", self._start_imap, self._stop_imap))
        self.queue = self._make_queue()
        self.on_reset(self._reset_mail)

    @property
    def imap(self) -> IMAPServer:
        """Dovecot serving the lab's mailboxes over IMAP on implicit TLS
        (:class:`~labsupport.mail.imap.IMAPServer`): ``lab.imap.port``,
        ``lab.imap.curl_command()``. Started the first time it is asked for while the lab
        runs (about 50 ms), stopped with the lab; a :class:`LabError` says what to install
        when Dovecot is missing."""
        return self.start_imap()

    def start_imap(self) -> IMAPServer:
        """Start Dovecot over the lab's mailboxes unless it runs; returns the server."""
        from ..core.errors import LabError
        from ..mail.imap import IMAPServer

        if self._imap is None:
            self._imap = IMAPServer(self.state_dir / "imap", store=self.mail,
                                    accounts=self.accounts, ca=self.ca)
        if self.running and not self._imap.running:
            self._imap.start()
        elif not self.running:
            raise LabError("the lab is not running; start it with labsupport.start()")
        return self._imap

    def imap_if_running(self) -> IMAPServer | None:
        """The IMAP server when it has been started, else None (nothing is started)."""
        return self._imap if self._imap is not None and self._imap.running else None

    async def _start_imap(self) -> None:
        pass  # started on first use (the imap property), not with every lab

    async def _stop_imap(self) -> None:
        if self._imap is not None and self._imap.running:
            await asyncio.to_thread(self._imap.stop)

    async def _start_mta_sts(self) -> None:
        self.mta_sts.start()  # its own thread: binds 127.0.0.1 on an ephemeral port

    async def _stop_mta_sts(self) -> None:
        self.mta_sts.stop()

    def _make_queue(self) -> Any:
        """The delivering MTA's queue, when labsupport.mail.delivery is there (else None: the
        submission roles then deliver lab mail straight into the mailboxes)."""
        self.mta_sts_fetcher = None
        try:
            from ..mail.delivery import Queue
            from ..mail.mtasts_fetch import PolicyFetcher
        except ImportError:
            return None
        self.mta_sts_fetcher = PolicyFetcher(self.resolver, ca_file=self.ca.ca_file,
                                             https_port=lambda: self.mta_sts.port,
                                             clock=self.clock)
        return Queue(self.state_dir / "queue", resolver=self.resolver, clock=self.clock,
                     store=self.mail, faults=self.faults, mx_port=lambda: self.smtp.port("mx"),
                     local_domains=lambda: set(self.zones.mail_domains()),
                     serving_loop=lambda: self._loop, mtasts=self.mta_sts_fetcher,
                     dane=self.dns)

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
        self.mta_sts.reset()
        if self._imap is not None:
            self._imap.clear_log()
        if self.mta_sts_fetcher is not None:
            self.mta_sts_fetcher.clear()
        if self.queue is not None and hasattr(self.queue, "clear"):
            self.queue.clear()
        if "legacy" in self.smtp.ports():
            self.smtp.disable_legacy()


__all__ = ["LabMail"]
