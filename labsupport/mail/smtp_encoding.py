"""How the transcript client puts things on the wire: base64, message content, paths.

:func:`decode_base64_text` shows the base64 of an AUTH exchange decoded (NUL bytes as
``\\0``), and ``_b64`` encodes it; :func:`message_bytes` turns a message into bytes and
:func:`dot_stuff` makes the content that goes after DATA (CRLF line ends, transparency,
the final "." line, RFC 5321 sections 2.3.8 and 4.5.2); ``_path``, ``_params`` and
``_xtext`` write the arguments of MAIL, RCPT and XCLIENT.

Part of the transcript client, :mod:`labsupport.mail.smtp`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from email.message import Message


def _shown(data: bytes) -> str:
    """Bytes from a base64 field, shown readably: NUL as \\0, other controls escaped."""
    text = data.decode("utf-8", errors="replace")
    out = []
    for char in text:
        if char == "\0":
            out.append("\\0")
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def decode_base64_text(text: str) -> str | None:
    """The base64 ``text`` decoded for display, or None when it is not base64.

    ``*`` (the client cancelling an AUTH exchange, RFC 4954 section 4) is shown as such.
    """
    text = text.strip()
    if text == "*":
        return "* (the client cancels the exchange)"
    if not text or text == "=":
        return None
    try:
        return _shown(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# -- message content ----------------------------------------------------------------------

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def message_bytes(message: bytes | str | Message) -> bytes:
    """A message as bytes: text is encoded as UTF-8, an email.message object serialised."""
    if isinstance(message, Message):
        return message.as_bytes()
    if isinstance(message, str):
        return message.encode("utf-8")
    return bytes(message)


def dot_stuff(message: bytes | str | Message) -> bytes:
    """The message as it goes on the wire after DATA, end-of-data line included.

    Every line break becomes CRLF (a bare CR or LF is not allowed in SMTP, RFC 5321
    section 2.3.8), every line that starts with a period gets one more in front
    ("transparency", RFC 5321 section 4.5.2), and the content ends with CRLF . CRLF.
    The receiver takes the extra period off again, so a line starting with "." arrives
    intact.

    >>> dot_stuff("Hi\\n.hidden line\\n")
    b'Hi\\r\\n..hidden line\\r\\n.\\r\\n'
    """
    raw = message_bytes(message)
    lines = _LINE_BREAK.split(raw)
    if lines and lines[-1] == b"":
        lines.pop()  # the content ended with a line break
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"



def _xtext(value: str) -> str:
    """xtext (RFC 3461 section 4): '+', '=' and characters outside ! to ~ as +HH."""
    return "".join(
        c if "!" <= c <= "~" and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode())
        for c in value
    )


def _path(address: str) -> str:
    """An address as a reverse- or forward-path: <...>; the empty address is <>."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        return address
    return f"<{address}>"


def _params(params: Mapping[str, str | None] | Sequence[str] | None) -> str:
    if not params:
        return ""
    if isinstance(params, Mapping):
        words = [k if v is None else f"{k}={v}" for k, v in params.items()]
    else:
        words = list(params)
    return "".join(f" {w}" for w in words)
