"""The SMTP dialogue read back from captured bytes, up to where TLS begins.

A :class:`WireDialogue` is the conversation of one connection as lines, ``->`` from the
client and ``<-`` from the server, in time order; what an eavesdropper could read, AUTH
credentials decoded from their base64 included. After STARTTLS, or from the first byte
on the implicit-TLS port, the rest is ciphertext: :func:`_clear_part` cuts each side's
stream where its TLS records begin, and :mod:`labsupport.wire.capture_tls` decrypts what
follows when a key log is at hand.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

from ..core.results import Result
from .segments import _Connection, _looks_like_tls


@dataclass(frozen=True)
class WireLine:
    """One line of a dialogue read from a capture: ``->``/``<-`` in the clear, ``~>``/
    ``<~`` recovered from inside TLS."""

    direction: str
    text: str
    time: float

    def __str__(self) -> str:
        return f"{self.direction} {self.text}"


@dataclass(frozen=True, kw_only=True)
class WireDialogue(Result):
    """The SMTP lines a capture holds (in the clear, or decrypted with a key log)."""

    lines: tuple[WireLine, ...] = ()

    def title(self) -> str:
        return f"SMTP dialogue read from the capture: {self.verdict}"

    def dialogue(self) -> str:
        return "\n".join(str(line) for line in self.lines)

    def text(self) -> str:
        return "\n".join([self.title(), f"  {self.summary}", "", self.dialogue()])

    def _repr_html_(self) -> str:
        rows = []
        for line in self.lines:
            shade = "background:#e6f2e6;" if line.direction in ("~>", "<~") else ""
            rows.append(f'<div style="white-space:pre-wrap;margin:0;{shade}">'
                        f"{html.escape(str(line))}</div>")
        return ('<div style="border-left:4px solid #888;padding-left:8px">'
                f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
                f'<div style="font-family:monospace;font-size:90%;margin-top:6px">'
                f"{''.join(rows)}</div></div>")

    def texts(self) -> list[str]:
        return [line.text for line in self.lines]

    def contains(self, text: str) -> bool:
        return any(text in line.text for line in self.lines)

    def credentials(self) -> list[str]:
        """User names and passwords found in AUTH lines (base64 decoded)."""
        found: list[str] = []
        pending = False
        for line in self.lines:
            if line.direction in ("->", "~>"):
                words = line.text.split()
                if pending and words:
                    found.append(_unb64(words[0]))
                elif len(words) >= 3 and words[0].upper() == "AUTH":
                    found.extend(_unb64(words[2]).split("\0")[1:])
            else:
                pending = line.text.startswith("334")
        return [f for f in found if f]


def _unb64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", errors="replace")
    except ValueError:
        return ""


def _lines_of(chunks: list[tuple[float, bytes]], arrow: str) -> list[WireLine]:
    out: list[WireLine] = []
    buf = b""
    for when, data in chunks:
        buf += data
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            out.append(WireLine(arrow, line.decode("utf-8", errors="replace"), when))
    return out


def _clear_part(conn: _Connection) -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]],
                                            int, int]:
    """The cleartext bytes of each side before TLS starts, and where TLS starts (offset
    in each side's stream; -1 when it never does)."""
    sides = []
    for from_client in (True, False):
        data = b"".join(d for _, d in conn.stream(from_client))
        sides.append(data)
    client, server = sides
    if _looks_like_tls(client):
        return [], [], 0, 0
    c_tls = s_tls = -1
    marker = client.upper().find(b"STARTTLS\r\n")
    if marker >= 0:
        c_tls = marker + len(b"STARTTLS\r\n")
        # The server's 220 answer to STARTTLS ends its cleartext.
        # (the first 220 line is the banner).
        pos = 0
        for number, line in enumerate(server.split(b"\r\n")):
            pos += len(line) + 2
            if number > 0 and line.startswith(b"220 "):
                s_tls = pos
                break
        if not _looks_like_tls(client[c_tls:]):  # refused (454), or TLS never began
            c_tls = s_tls = -1
    return (_cut(conn.stream(True), c_tls), _cut(conn.stream(False), s_tls), c_tls, s_tls)


def _cut(chunks: list[tuple[float, bytes]], limit: int) -> list[tuple[float, bytes]]:
    if limit < 0:
        return chunks
    out, total = [], 0
    for when, data in chunks:
        if total >= limit:
            break
        out.append((when, data[: limit - total]))
        total += len(data)
    return out


def _merge(*line_lists: list[WireLine]) -> list[WireLine]:
    merged = [line for lines in line_lists for line in lines]
    merged.sort(key=lambda line: line.time)  # stable: each side keeps its order
    return merged
