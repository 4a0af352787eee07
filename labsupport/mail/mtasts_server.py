"""The lab's MTA-STS policy host: a real HTTPS server on 127.0.0.1 (RFC 8461 section 3.2).

A domain publishes its MTA-STS policy at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``.
:class:`PolicyServer` is that web server for every lab domain that publishes a policy: one
listener on 127.0.0.1 (an ephemeral port) stands for each ``mta-sts.<domain>`` host, the
way the lab's MX role stands for every MX host. It presents a certificate issued by the
lab CA (:mod:`labsupport.wire.tls`, with trustme) for exactly the ``mta-sts.<domain>``
names it serves, picks the policy by the request's ``Host`` header, and answers with
``Content-Type: text/plain`` (section 3.2); anything else is a 404. A sender verifies the
certificate for ``mta-sts.<domain>`` and the lab CA, as any HTTPS client would::

    curl --cacert ca.pem --resolve mta-sts.northwind.test:PORT:127.0.0.1 \\
         https://mta-sts.northwind.test:PORT/.well-known/mta-sts.txt

Python's :mod:`http.server` in a thread; each connection gets its own thread, and its
TLS handshake happens there, so a silent client blocks nobody. On a shared host the
server asks who connected (:func:`labsupport.core.peers.check_socket`) and closes a
connection of another local user at accept, before any TLS (``refused`` keeps the
latest such checks): a lab's policies are its own user's.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..core.errors import LabError
from ..core.peers import PeerCheck, check_socket
from ..wire.tls import LabCA
from .mtasts_policy import WELL_KNOWN_PATH, parse_policy

#: Seconds between the serving thread's looks at whether it should stop (``stop()``
#: waits up to this long).
_POLL_INTERVAL = 0.05

#: The policies the lab world publishes (the zones have the matching ``_mta-sts`` TXT
#: records, see data/zones/northwind.test.zone). Lines end in CRLF (section 3.2).
LAB_POLICIES: dict[str, str] = {
    "northwind.test": ("version: STSv1\r\n"
                       "mode: enforce\r\n"
                       "mx: mx1.northwind.test\r\n"
                       "mx: *.northwind.test\r\n"
                       "max_age: 86400\r\n"),
}


class PolicyServer:
    """The HTTPS server of every ``mta-sts.<domain>`` host in the lab (a context manager).

    ``policies`` maps a domain to its policy text (default :data:`LAB_POLICIES`); each is
    checked with :func:`~labsupport.mail.mtasts_policy.parse_policy` unless
    ``check=False`` (a lesson may serve a broken policy on purpose). ``requests`` logs
    what was asked and answered.
    """

    def __init__(self, ca: LabCA, policies: Mapping[str, str] | None = None) -> None:
        self.ca = ca
        self._policies: dict[str, str] = {}
        self._lock = threading.Lock()
        self._names: tuple[str, ...] = ()
        self.requests: list[str] = []
        #: The latest connections refused because another user made them.
        self.refused: deque[PeerCheck] = deque(maxlen=20)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._initial = dict(LAB_POLICIES if policies is None else policies)
        for domain, text in self._initial.items():
            self.set_policy(domain, text)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the policies --------------------------------------------------------------------

    def set_policy(self, domain: str, text: str, *, check: bool = True) -> None:
        """Serve ``text`` as the policy of ``domain`` from now on (a new domain gets a
        certificate that names its ``mta-sts`` host too). Remember to change the id in
        the domain's ``_mta-sts`` TXT record, or senders keep their cached copy."""
        name = domain.lower().rstrip(".")
        if check:
            parse_policy(text)  # raises MTASTSError with the reason
        with self._lock:
            self._policies[name] = text
        self._issue()

    def remove_policy(self, domain: str) -> None:
        """Stop serving a policy for ``domain`` (its URL answers 404)."""
        with self._lock:
            self._policies.pop(domain.lower().rstrip("."), None)

    def reset(self) -> None:
        """Serve the policies given at the start again, and nothing else (the lab's reset)."""
        with self._lock:
            self._policies = dict(self._initial)
            self.requests.clear()

    def policy(self, domain: str) -> str | None:
        with self._lock:
            return self._policies.get(domain.lower().rstrip("."))

    def domains(self) -> list[str]:
        with self._lock:
            return sorted(self._policies)

    def _issue(self) -> None:
        """A certificate from the lab CA for every ``mta-sts.<domain>`` served."""
        names = tuple(f"mta-sts.{d}" for d in self.domains())
        if not names or set(names) <= set(self._names):
            return
        import trustme  # brings in cryptography; only when a certificate is made

        try:
            authority = trustme.CA.from_pem(self.ca.ca_file.read_bytes(),
                                            self.ca.key_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise LabError(f"the lab CA in {self.ca.directory} is unreadable ({exc})") from exc
        leaf = authority.issue_cert(*names, common_name=names[0],
                                    organization_name="Mail Labs",
                                    organization_unit_name="lab MTA-STS policy host")
        leaf.configure_cert(self._context)  # new connections get the new certificate
        self._names = names

    @property
    def certificate_names(self) -> tuple[str, ...]:
        """The DNS names the server's certificate carries."""
        return self._names

    # -- serving -------------------------------------------------------------------------

    def start(self) -> PolicyServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": _POLL_INTERVAL},
                                        name="mail-labs-mta-sts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise LabError("the MTA-STS policy server is not running; call start() first")
        return int(self._httpd.server_address[1])

    def url(self, domain: str) -> str:
        """Where a sender fetches ``domain``'s policy (with the lab's port)."""
        return f"https://mta-sts.{domain.lower().rstrip('.')}:{self.port}{WELL_KNOWN_PATH}"

    def curl_command(self, domain: str) -> str:
        """A ``curl`` command that fetches the policy, verifying the lab CA and the name."""
        host = f"mta-sts.{domain.lower().rstrip('.')}"
        return (f"curl --cacert {self.ca.ca_file} --resolve {host}:{self.port}:127.0.0.1 "
                f"{self.url(domain)}")

    def _answer(self, host: str, path: str) -> tuple[int, str]:
        name = host.split(":", 1)[0].lower().rstrip(".")
        if path.split("?", 1)[0] != WELL_KNOWN_PATH:
            return 404, f"only {WELL_KNOWN_PATH} is served here\n"
        domain = name[len("mta-sts."):] if name.startswith("mta-sts.") else ""
        text = self.policy(domain) if domain else None
        if text is None:
            return 404, f"no MTA-STS policy is published for {name or 'this host'}\n"
        return 200, text

    def _note(self, text: str) -> None:
        with self._lock:
            self.requests.append(text)
            del self.requests[:-200]

    def __repr__(self) -> str:
        where = f"port {self.port}" if self._httpd is not None else "stopped"
        return f"<PolicyServer {where}, policies for {', '.join(self.domains()) or 'none'}>"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: PolicyServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """At accept, in the listening thread: only this lab's own user is served."""
        try:
            check = check_socket(request)
        except OSError:
            return False  # the client is already gone
        if check.allowed:
            return True
        self.owner.refused.append(check)
        self.owner._note(f"refused {client_address[0]}:{client_address[1]}: {check.summary}")
        return False

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake in the connection's own thread, then the HTTP request."""
        raw: socket.socket = request
        raw.settimeout(10)
        try:
            tls = self.owner._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.owner._note(f"TLS handshake with {client_address[0]} failed: {exc}")
            return
        try:
            _Handler(tls, client_address, self)
        except (ssl.SSLError, OSError) as exc:
            self.owner._note(f"connection from {client_address[0]} ended: {exc}")
        finally:
            tls.close()


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "MailLabs-MTA-STS/1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        host = self.headers.get("Host", "")
        status, body = self.server.owner._answer(host, self.path)
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.owner._note(f"GET https://{host}{self.path} -> {status}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base's name
        pass  # requests are noted in PolicyServer.requests, never printed


__all__ = ["LAB_POLICIES", "PolicyServer"]
