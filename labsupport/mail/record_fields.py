"""The ``v=...; name=value; ...`` TXT records of MTA-STS and TLS-RPT, split into fields.

Both records have one grammar (RFC 8461 section 3.1, RFC 8460 section 3): a version field
first, then fields separated by ``;`` with optional white space around it (``*WSP ";"
*WSP``), a final ``;`` allowed. :func:`fields_after_version` splits a record so and checks
each piece is ``name=value``; what the names mean is each record's own reader's business
(:mod:`labsupport.mail.mtasts_policy`, :mod:`labsupport.mail.tlsrpt`). DKIM's tag lists
are stricter (RFC 6376 section 3.2) and have their reader in
:mod:`labsupport.auth.dkim_taglist`.
"""

from __future__ import annotations

from ..core.errors import LabError


def fields_after_version(text: str, error: type[LabError], rfc: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` fields of ``text`` after its first (version) field, in order;
    raises ``error`` naming the first piece that is not ``name=value``.

    >>> fields_after_version("v=STSv1; id=20260101;", LabError, "RFC 8461 section 3.1")
    [('id', '20260101')]
    """
    pieces = [piece.strip(" \t") for piece in text.split(";")][1:]
    if pieces and pieces[-1] == "":
        pieces.pop()  # a trailing ";" is allowed
    fields = []
    for piece in pieces:
        name, eq, value = piece.partition("=")
        if not eq or not name:
            raise error(f"{piece!r} in {text!r} is not a name=value field ({rfc})")
        fields.append((name, value))
    return fields


__all__ = ["fields_after_version"]
