"""Finding a domain's MTA-STS policy as a sender does: DNS, then HTTPS, then the cache
(RFC 8461 section 3.3).

:class:`PolicyFetcher` asks the lab's resolver for the ``_mta-sts.<domain>`` TXT record;
when it announces a policy whose id differs from the cached copy's (or nothing is
cached), it fetches ``https://mta-sts.<domain>/.well-known/mta-sts.txt``, verifying the
lab CA and the name ``mta-sts.<domain>``, follows no redirect, insists on ``200`` and
``text/plain``, and caches the policy for its ``max_age`` on the lab clock. When DNS or
HTTPS fails, an unexpired cached policy still applies; without one the domain is treated
as having no policy (section 3.3). Each look-up returns a :class:`PolicyLookup` whose
trace says every step.

Like the delivering MTA (:mod:`labsupport.mail.delivery_smtp`), which connects to the
lab's MX role on 127.0.0.1 for every MX host name, the fetcher looks up the address of
``mta-sts.<domain>`` in the lab DNS (a host without one cannot be reached) and then
connects to the lab's HTTPS policy server on 127.0.0.1, ``https_port()``, whatever the
address says; TLS still checks the real name.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.resolver

from ..core.clock import LabClock
from ..core.results import Result, TraceBuilder
from ..dns.mx import ResolverLike
from .mtasts_policy import (
    MAX_POLICY_BYTES,
    RFC_FETCH,
    RFC_RECORD,
    WELL_KNOWN_PATH,
    STSPolicy,
    read_policy,
    read_record,
)

#: Seconds to wait for the policy host (section 3.3 suggests at most a minute).
FETCH_TIMEOUT = 10.0


@dataclass(frozen=True)
class CachedPolicy:
    """A policy as a sender keeps it: with the record's id and when it expires."""

    domain: str
    id: str
    policy: STSPolicy
    fetched_at: float
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class PolicyLookup(Result):
    """The policy a sender applies to ``domain`` now.

    ``verdict`` is the mode to apply (``"enforce"``, ``"testing"`` or ``"none"``), or
    ``"no-policy"``. ``source`` says where the policy came from (``"fetched"``,
    ``"cache"``) or why there is none (``"no-record"``, ``"fetch-error"``...);
    ``failure`` is the TLS-RPT result type of a failed fetch (``sts-policy-fetch-error``,
    ``sts-policy-invalid``, ``sts-webpki-invalid``), else None.
    """

    domain: str
    policy: STSPolicy | None = None
    policy_id: str | None = None
    source: str = "no-record"
    failure: str | None = None
    failure_reason: str | None = None

    @property
    def active(self) -> bool:
        """True when the policy asks for something: mode enforce or testing."""
        return self.policy is not None and self.policy.active

    def title(self) -> str:
        return f"MTA-STS for {self.domain}: {self.verdict}"


class _FetchFailed(Exception):
    def __init__(self, result_type: str, reason: str) -> None:
        super().__init__(reason)
        self.result_type = result_type


class _LabHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``host`` (SNI and certificate name) over a TCP connection to 127.0.0.1."""

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
        try:
            self.sock = context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


class PolicyFetcher:
    """A sender's MTA-STS policy discovery and cache (RFC 8461 section 3.3).

    ``resolver`` follows dnspython's ``Resolver.resolve`` contract; ``ca_file`` is the
    sender's trust anchor (the lab CA), used for the policy host and, by the delivering
    MTA, for the MX hosts' certificates; ``https_port()`` is the lab's policy server's
    port on 127.0.0.1; ``clock`` times the cache.
    """

    def __init__(self, resolver: ResolverLike, *, ca_file: str | Path,
                 https_port: Callable[[], int], clock: LabClock,
                 timeout: float = FETCH_TIMEOUT) -> None:
        self.resolver = resolver
        self.ca_file = Path(ca_file)
        self.https_port = https_port
        self.clock = clock
        self.timeout = float(timeout)
        self._cache: dict[str, CachedPolicy] = {}
        self._lock = threading.Lock()

    # -- the cache -----------------------------------------------------------------------

    def cached(self, domain: str) -> CachedPolicy | None:
        """The cached policy of ``domain``, expired or not (None: never fetched)."""
        with self._lock:
            return self._cache.get(_name(domain))

    def clear(self) -> None:
        """Forget every cached policy (the lab's reset)."""
        with self._lock:
            self._cache.clear()

    def tls_context(self) -> ssl.SSLContext:
        """A client context that trusts the sender's CA file only, and checks names."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    # -- one look-up ---------------------------------------------------------------------

    def policy_for(self, domain: str) -> PolicyLookup:
        """The policy to apply to mail for ``domain`` now, with every step traced."""
        name = _name(domain)
        trace = TraceBuilder()
        now = self.clock.time()
        cached = self.cached(name)
        if cached is not None and cached.expires_at <= now:
            trace.add(f"the cached policy (id {cached.id}) expired "
                      f"{now - cached.expires_at:.0f} s ago: forget it", kind="info",
                      rfc=RFC_FETCH)
            cached = None
        texts, dns_problem = self._txt(name, trace)
        record = None
        if dns_problem is None:
            found = read_record(texts, name)
            with trace.nested():
                trace.extend(found.trace)
            record = found.record
        if record is None:
            if cached is not None:
                why = dns_problem or "no usable MTA-STS record"
                trace.add(f"{why}, but a cached policy (id {cached.id}) has not expired: "
                          "apply it", kind="decision", rfc=RFC_FETCH)
                return self._done(name, cached, "cache", trace)
            summary = (f"{name} has no MTA-STS policy ({dns_problem or 'no usable record'}): "
                       "deliver as usual.")
            trace.add(summary, kind="decision", rfc=RFC_RECORD)
            return PolicyLookup(verdict="no-policy", summary=summary, trace=trace.freeze(),
                                domain=name, source="no-record")
        if cached is not None and cached.id == record.id:
            trace.add(f"the cached policy has the same id ({record.id}) and expires in "
                      f"{cached.expires_at - now:.0f} s: no need to fetch it again",
                      kind="decision", rfc=RFC_FETCH)
            return self._done(name, cached, "cache", trace)
        if cached is not None:
            trace.add(f"the record's id {record.id} differs from the cached policy's "
                      f"({cached.id}): the policy changed, fetch it", kind="decision",
                      rfc=RFC_FETCH)
        try:
            policy = self._fetch(name, trace)
        except _FetchFailed as exc:
            trace.add(f"fetching the policy failed ({exc.result_type}): {exc}", kind="error",
                      rfc=RFC_FETCH)
            if cached is not None:
                trace.add(f"a cached policy (id {cached.id}) has not expired: apply it",
                          kind="decision", rfc=RFC_FETCH)
                return self._done(name, cached, "cache", trace, failure=exc)
            summary = (f"{name} announces an MTA-STS policy but it could not be fetched "
                       f"({exc}); nothing is cached, so deliver as if it had none.")
            trace.add(summary, kind="decision", rfc=RFC_FETCH)
            return PolicyLookup(verdict="no-policy", summary=summary, trace=trace.freeze(),
                                domain=name, policy_id=record.id, source="fetch-error",
                                failure=exc.result_type, failure_reason=str(exc))
        entry = CachedPolicy(domain=name, id=record.id, policy=policy, fetched_at=now,
                             expires_at=now + policy.max_age)
        with self._lock:
            self._cache[name] = entry
        trace.add(f"cache it under id {record.id} for max_age {policy.max_age} s (lab "
                  "clock)", kind="info", rfc=RFC_FETCH)
        return self._done(name, entry, "fetched", trace)

    def _done(self, name: str, entry: CachedPolicy, source: str, trace: TraceBuilder,
              failure: _FetchFailed | None = None) -> PolicyLookup:
        policy = entry.policy
        where = "fetched over HTTPS" if source == "fetched" else "from the cache"
        summary = (f"{name} has an MTA-STS policy (id {entry.id}, {where}) in mode "
                   f"{policy.mode}, MX {', '.join(policy.mx) or 'none'}.")
        if policy.mode == "none":
            summary += " Mode none: deliver as if there were no policy."
        trace.add(summary, kind="ok" if policy.active else "info")
        return PolicyLookup(verdict=policy.mode, summary=summary, trace=trace.freeze(),
                            domain=name, policy=policy, policy_id=entry.id, source=source,
                            failure=failure.result_type if failure else None,
                            failure_reason=str(failure) if failure else None)

    def _txt(self, name: str, trace: TraceBuilder) -> tuple[list[str], str | None]:
        qname = f"_mta-sts.{name}"
        trace.add(f"ask DNS for the TXT records of {qname}", kind="query", rfc=RFC_RECORD)
        try:
            answer = self.resolver.resolve(qname, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            trace.add(f"no TXT record at {qname}", kind="answer")
            return [], None
        except dns.exception.DNSException as exc:
            trace.add(f"DNS failed: {exc}", kind="warning")
            return [], f"the TXT look-up failed ({type(exc).__name__})"
        texts = [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]
        trace.add(" | ".join(texts), kind="answer")
        return texts, None

    def _fetch(self, name: str, trace: TraceBuilder) -> STSPolicy:
        host = f"mta-sts.{name}"
        trace.add(f"ask DNS for the address of {host}", kind="query", rfc=RFC_FETCH)
        addresses: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                addresses += [r.to_text() for r in self.resolver.resolve(host, rdtype)]
            except dns.exception.DNSException:
                continue
        if not addresses:
            raise _FetchFailed("sts-policy-fetch-error",
                               f"{host} has no address in DNS, so the policy host cannot "
                               "be reached")
        port = self.https_port()
        trace.add(f"{host} is {', '.join(addresses)}; the lab's HTTPS policy server on "
                  f"127.0.0.1 port {port} answers for it", kind="answer")
        trace.add(f"GET https://{host}{WELL_KNOWN_PATH} (TLS: the certificate must be "
                  f"valid for {host} and signed by the lab CA; no redirects)", kind="query",
                  rfc=RFC_FETCH)
        connection = _LabHTTPSConnection(host, port, timeout=self.timeout,
                                         context=self.tls_context())
        try:
            connection.request("GET", WELL_KNOWN_PATH, headers={"User-Agent": "mail-labs"})
            response = connection.getresponse()
            body = response.read(MAX_POLICY_BYTES + 1)
        except ssl.SSLCertVerificationError as exc:
            raise _FetchFailed("sts-webpki-invalid", f"the certificate of {host} does not "
                               f"validate: {exc.verify_message}") from exc
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            raise _FetchFailed("sts-policy-fetch-error",
                               f"cannot fetch from {host}: {exc}") from exc
        finally:
            connection.close()
        kind = response.getheader("Content-Type", "")
        trace.add(f"HTTP {response.status} {response.reason}, Content-Type {kind or 'none'}, "
                  f"{len(body)} bytes", kind="answer")
        if response.status != 200:
            why = "redirects must not be followed" if 300 <= response.status < 400 else \
                "only 200 OK carries a policy"
            raise _FetchFailed("sts-policy-fetch-error",
                               f"{host} answered HTTP {response.status} ({why})")
        if kind.split(";", 1)[0].strip().lower() != "text/plain":
            raise _FetchFailed("sts-policy-invalid",
                               f"the policy's media type is {kind or 'missing'!r}, not "
                               "text/plain")
        if len(body) > MAX_POLICY_BYTES:
            raise _FetchFailed("sts-policy-invalid",
                               f"the policy is larger than {MAX_POLICY_BYTES} bytes")
        read = read_policy(body, name)
        with trace.nested():
            trace.extend(read.trace)
        if read.policy is None:
            raise _FetchFailed("sts-policy-invalid", read.trace[-1].text)
        return read.policy


def _name(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


__all__ = ["FETCH_TIMEOUT", "CachedPolicy", "PolicyFetcher", "PolicyLookup"]
