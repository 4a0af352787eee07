"""A lenient toy SMTP server: the receiver SMTP smuggling needs.

:class:`LenientServer` reads CR LF and also a bare LF and/or a bare CR as a line end, so
a ``.`` between such line ends ends the data, as the servers of the SMTP smuggling
disclosures of 2023-24 did. It is here to show what the attack does to such a server
(:func:`labsupport.mail.smuggling.send_every_variant` surveys it like the lab's MX role);
the lab's own roles end the data only at CR LF . CR LF and refuse a bare CR or LF
(RFC 5321 sections 2.3.8 and 4.1.1.4). Introduced in ``notebooks/10-after-dmarc.ipynb``.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterable

_BARE_NAMES = {"LF": b"\n", "CR": b"\r"}


class LenientServer:
    """A toy SMTP server on 127.0.0.1 that reads CR LF and also each of ``reads_bare``
    (``"LF"``, ``"CR"``) as a line end, so ``.`` between such line ends ends the data: the
    receiver of the SMTP smuggling disclosures of 2023-24. It answers 250 to every
    command, 354 to DATA, 221 to QUIT, and keeps each message it thinks it got
    (``messages``: MAIL FROM, RCPT TO, content). Not an MTA: it checks nothing.

    ``count(address)`` counts the messages for ``address`` (all without one), like the
    lab's mailboxes. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, reads_bare: Iterable[str] = ("LF", "CR")) -> None:
        wanted = tuple(dict.fromkeys(str(b).upper() for b in reads_bare))
        unknown = [b for b in wanted if b not in _BARE_NAMES]
        if unknown:
            raise ValueError(f"reads_bare takes 'LF' and 'CR', not {', '.join(unknown)}")
        self.reads_bare = wanted
        ends = [b"\r\n"] + [_BARE_NAMES[b] for b in wanted]
        self._line_end = re.compile(b"|".join(re.escape(e) for e in ends))
        self.messages: list[tuple[str, tuple[str, ...], bytes]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="lenient-smtp", daemon=True)
        self._thread.start()

    def describe(self) -> str:
        extra = " and ".join(f"a bare {b}" for b in self.reads_bare)
        return ("a lenient server: ends a line at CR LF" + (f", and at {extra}" if extra
                                                            else " only"))

    def count(self, address: str | None = None) -> int:
        with self._lock:
            if address is None:
                return len(self.messages)
            wanted = address.strip("<>").lower()
            return sum(1 for _f, rcpts, _c in self.messages if wanted in rcpts)

    def close(self) -> None:
        """Stop listening and end the server's thread (safe to call twice)."""
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> LenientServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LenientServer 127.0.0.1:{self.port}: {self.describe()}>"

    def _serve(self) -> None:
        while True:
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                return
            if self._closed:
                conn.close()
                return
            with conn:
                conn.settimeout(10)
                try:
                    self._session(conn)
                except OSError:
                    continue  # the client went away or stopped talking: next one

    def _session(self, conn: socket.socket) -> None:
        conn.sendall(b"220 lenient.test toy SMTP server\r\n")
        buf, content, in_data = b"", b"", False
        sender = ""
        rcpts: list[str] = []
        while True:
            found = self._line_end.search(buf)
            if found is None:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                continue
            line, buf = buf[:found.start()], buf[found.end():]
            if in_data:
                if line == b".":
                    with self._lock:
                        self.messages.append((sender, tuple(rcpts), content))
                    in_data, content, rcpts = False, b"", []
                    conn.sendall(b"250 2.0.0 queued\r\n")
                else:
                    content += (line[1:] if line.startswith(b".") else line) + b"\r\n"
                continue
            word = line.split(b":", 1)[0].split(b" ", 1)[0].upper()
            address = line.partition(b":")[2].strip().strip(b"<>").decode("utf-8", "replace")
            if word == b"DATA":
                in_data = True
                conn.sendall(b"354 go ahead\r\n")
            elif word == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                if word == b"MAIL":
                    sender, rcpts = address, []
                elif word == b"RCPT":
                    rcpts.append(address.lower())
                conn.sendall(b"250 ok\r\n")


__all__ = ["LenientServer"]
