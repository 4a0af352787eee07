"""Authentication-Results: what the receiving server found out, in one header (RFC 8601).

A receiving mail server checks SPF, DKIM and DMARC and writes the outcome into
one ``Authentication-Results`` header field on the message it stores, so that the mail
program and the filters after it need not repeat the checks::

    Authentication-Results: mx.lab.test;
        spf=pass (192.0.2.10 may send mail for northwind.test ...)
        smtp.mailfrom=alice@northwind.test;
        dkim=pass (...) header.d=northwind.test header.s=lab2026-rsa header.b=Ab12Cd34

The field starts with the *authserv-id*, the name of the service that did the checks
(the lab's is ``mx.lab.test``, :data:`LAB_AUTHSERV_ID`); then one *resinfo* per check:
``method=result``, an optional comment, and properties ``ptype.property=value`` that say
what was checked (RFC 8601 section 2.2): ``smtp.mailfrom`` and ``smtp.helo`` for SPF
(section 2.7.2), ``header.d``, ``header.i``, ``header.s``, ``header.a`` and ``header.b``
for DKIM (section 2.7.1 and RFC 6008), ``header.from`` for DMARC (RFC 9989). A message
with no check at all says ``none``.

Anyone can write such a header into a message, so a receiver trusts only the fields
carrying its own authserv-id, and removes those it finds on incoming mail before adding
its own (RFC 8601 section 5): :func:`strip_own`.

* :func:`format_authres` builds the header value from an
  :class:`~labsupport.auth.spf.SPFResult` and a :class:`~labsupport.auth.dkim.DKIMVerification`;
  :func:`header_field` folds it into a header line;
* :func:`parse_authres` reads a value back into :class:`AuthResults`;
* :func:`strip_own` removes the fields carrying an authserv-id from a raw message;
* :func:`authenticate` runs the checks the lab's MX role runs on every message (SPF,
  DKIM, then DMARC with :func:`labsupport.auth.dmarc.evaluate`) and returns an
  :class:`AuthEvaluation` with the disposition DMARC asks for; the MX role keeps the
  latest ones in ``lab.smtp.evaluations`` (an :class:`EvaluationLog`).

This module is the entry point and removes forged fields itself; the rest lives beside
it, every name importable from here too: the parsed header and the quoting of its values
in :mod:`labsupport.auth.authres_model`, reading in :mod:`labsupport.auth.authres_parse`,
writing in :mod:`labsupport.auth.authres_format`, and the MX role's checks in
:mod:`labsupport.auth.authres_evaluation`.

Introduced in ``notebooks/04-spf.ipynb`` and ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

from .authres_evaluation import DISPOSITION_ACTIONS as DISPOSITION_ACTIONS
from .authres_evaluation import MAX_EVALUATIONS as MAX_EVALUATIONS
from .authres_evaluation import AuthEvaluation as AuthEvaluation
from .authres_evaluation import EvaluationLog as EvaluationLog
from .authres_evaluation import authenticate as authenticate
from .authres_format import format_authres as format_authres
from .authres_format import header_field as header_field
from .authres_model import HEADER_NAME as HEADER_NAME
from .authres_model import LAB_AUTHSERV_ID as LAB_AUTHSERV_ID
from .authres_model import MAX_COMMENT as MAX_COMMENT
from .authres_model import METHOD_PROPERTIES as METHOD_PROPERTIES
from .authres_model import METHOD_RESULTS as METHOD_RESULTS
from .authres_model import RFC_AUTHRES as RFC_AUTHRES
from .authres_model import RFC_REMOVAL as RFC_REMOVAL
from .authres_model import RFC_SYNTAX as RFC_SYNTAX
from .authres_model import AuthResults as AuthResults
from .authres_model import AuthResultsError as AuthResultsError
from .authres_model import MethodResult as MethodResult
from .authres_model import Property as Property
from .authres_parse import authserv_id_of as authserv_id_of
from .authres_parse import parse_authres as parse_authres

# -- removing forged fields ----------------------------------------------------------------


def _header_fields(head: bytes) -> list[list[bytes]]:
    """The header section as fields, each a list of its physical lines (with endings)."""
    fields: list[list[bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def strip_own(raw: bytes, authserv_id: str = LAB_AUTHSERV_ID) -> bytes:
    """``raw`` without the Authentication-Results fields that carry ``authserv_id``.

    RFC 8601 section 5: a border MTA removes such fields from incoming mail before
    adding its own, since only it may speak in its name; anyone else's fields stay (the
    authserv-id is compared without regard to case). Line endings and every other byte
    are kept.
    """
    wanted = authserv_id.lower()
    for separator in (b"\r\n\r\n", b"\n\n"):
        cut = raw.find(separator)
        if cut >= 0:
            split_at = cut + len(separator) // 2
            head, rest = raw[:split_at], raw[split_at:]
            break
    else:
        head, rest = raw, b""
    kept: list[bytes] = []
    for lines in _header_fields(head):
        name, colon, value = b"".join(lines).partition(b":")
        if colon and name.strip().lower() == HEADER_NAME.lower().encode():
            found = authserv_id_of(value)
            if found is not None and found.lower() == wanted:
                continue
        kept.extend(lines)
    return b"".join(kept) + rest


__all__ = [
    "HEADER_NAME", "LAB_AUTHSERV_ID", "METHOD_PROPERTIES", "METHOD_RESULTS", "AuthEvaluation",
    "AuthResults", "AuthResultsError", "EvaluationLog", "MethodResult", "Property",
    "authenticate", "authserv_id_of", "format_authres", "header_field", "parse_authres",
    "strip_own",
]
