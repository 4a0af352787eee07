"""DKIM tag lists: the ``tag=value; tag=value`` syntax of RFC 6376 section 3.2.

Both halves of DKIM are written as tag lists: the DKIM-Signature header field a signer
adds (``v=1; a=rsa-sha256; d=...``) and the key record a domain publishes in DNS
(``v=DKIM1; k=rsa; p=...``). :func:`parse_tag_list` reads one the strict way a verifier
must, and says in words what is wrong with text that is not one (:class:`TagListError`).

:class:`DKIMError`, the base of every DKIM error the lab raises, lives here too, since
this is the lowest of the DKIM modules that raise errors: the keys
(:mod:`labsupport.auth.dkim_keys`), key records (:mod:`labsupport.auth.dkim_keyrecord`)
and signing (:mod:`labsupport.auth.dkim`) all build on it.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import re

from ..core.errors import LabError


class DKIMError(LabError, ValueError):
    """A DKIM key or signing request that cannot be used, with the reason in words."""


# -- tag lists (RFC 6376 section 3.2) ----------------------------------------------------

RFC_TAG_LIST = "RFC 6376 section 3.2"
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class TagListError(DKIMError):
    """Text that is not a DKIM tag list, with what is wrong in words."""


def parse_tag_list(text: str) -> dict[str, str]:
    """Read a DKIM tag list (RFC 6376 section 3.2): ``tag=value`` pairs separated by
    semicolons, white space and folding around them ignored, a final semicolon allowed.

    Tag names are case-sensitive; a tag given twice, a piece without ``=``, an empty
    piece between two semicolons, a bad tag name or a control character is an error
    (:class:`TagListError`). Values keep their inner white space (``b=`` and ``p=`` may
    be folded); unknown tags are kept, for the caller to ignore.

    >>> parse_tag_list("v=DKIM1; k=ed25519; p=11qY...;")
    {'v': 'DKIM1', 'k': 'ed25519', 'p': '11qY...'}
    """
    if "\r\n" in text:
        text = text.replace("\r\n", "")
    specs = text.split(";")
    if specs[-1].strip(" \t") == "":
        specs.pop()
    tags: dict[str, str] = {}
    for spec in specs:
        name, eq, value = spec.partition("=")
        name = name.strip(" \t")
        # A tag name is a letter, then letters, digits or "_": the quick test covers the
        # usual names, the expression the rest.
        if not eq or not (name.isascii() and name.isalnum() and name[0].isalpha()
                          or _TAG_NAME.match(name)):
            raise _tag_spec_error(spec, name, eq)
        if name in tags:
            raise TagListError(f"the tag {name}= appears twice")
        value = value.strip(" \t")
        if not value.isprintable() and _CONTROL.search(value):
            raise TagListError(f"the value of {name}= holds a control character")
        tags[name] = value
    return tags


def _tag_spec_error(spec: str, name: str, eq: str) -> TagListError:
    if not eq:
        if not name:
            return TagListError("there is an empty tag between two semicolons (;;)")
        return TagListError(f"{_short(spec.strip(), 30)!r} is not tag=value (no '=')")
    return TagListError(f"{_short(name, 30)!r} is not a tag name (a letter, then letters, "
                        "digits or _)")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
