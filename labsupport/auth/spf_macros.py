"""SPF macros (RFC 7208 section 7): reading a macro-string and expanding it.

A domain-spec such as ``%{ir}.%{v}._spf.%{d2}`` or an explanation such as
``%{i} is not one of %{d}'s mail servers`` is a *macro-string*: literal text mixed with
macro-expands. :func:`parse_macro_string` reads one into tokens once (the syntax is
checked before anything is evaluated, RFC 7208 section 4.6), and :func:`expand`
fills the tokens in for one message with a :class:`MacroContext`.

The rules, each with its place in RFC 7208 section 7:

* ``%{`` letter transformers delimiters ``}``: the letters ``s l o d i p v h`` anywhere,
  ``c r t`` only in explanation text (7.1, 7.2);
* transformers: a number (not zero) keeps that many right-hand parts, ``r`` reverses
  (7.3); delimiters ``. - + , / _ =`` split the value, which is joined again with dots;
* an upper-case letter URL-escapes the result (7.3);
* ``%%`` is ``%``, ``%_`` a space, ``%-`` is ``%20``; any other ``%`` is a syntax error;
* a domain-spec ends with a macro or with a dot and a top label (7.1);
* an expanded domain name longer than 253 characters loses labels from the left (7.3).

Introduced in ``notebooks/04-spf.ipynb``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

RFC_MACROS = "RFC 7208 section 7"
RFC_MACRO_SYNTAX = "RFC 7208 section 7.1"
RFC_MACRO_LETTERS = "RFC 7208 section 7.2"
RFC_TRANSFORMERS = "RFC 7208 section 7.3"

#: Every macro letter, and what it stands for (RFC 7208 section 7.2).
MACRO_LETTERS = {
    "s": "the sender (local-part@domain)",
    "l": "the local-part of the sender",
    "o": "the domain of the sender",
    "d": "the domain being checked",
    "i": "the client IP address (dotted nibbles for IPv6)",
    "p": "the validated domain name of the client IP (do not use)",
    "v": "'in-addr' for IPv4, 'ip6' for IPv6",
    "h": "the HELO/EHLO domain",
    "c": "the client IP in readable form (explanations only)",
    "r": "the name of the receiving host (explanations only)",
    "t": "the current time in seconds (explanations only)",
}

#: Letters allowed only in explanation text (RFC 7208 section 7.2).
EXPLANATION_ONLY = frozenset("crt")

#: Characters that split a macro value (RFC 7208 section 7.1, ``delimiter``).
DELIMITERS = frozenset(".-+,/_=")

#: Longest domain name in text form; longer expansions lose labels on the left (7.3).
MAX_DOMAIN_LENGTH = 253

# toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
_TOPLABEL_END = re.compile(
    r"\.(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\.?\Z"
)
_MACRO_BODY = re.compile(r"([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}")


class MacroSyntaxError(ValueError):
    """A macro-string does not follow RFC 7208 section 7.1; the message says where."""


@dataclass(frozen=True, slots=True)
class Macro:
    """One ``%{...}`` macro-expand: letter, how many right-hand parts, reversal,
    delimiters, and whether to URL-escape (an upper-case letter)."""

    letter: str
    digits: int | None
    reverse: bool
    delimiters: str
    escape: bool
    text: str


#: A parsed macro-string: literal text and macros, in order.
Tokens = tuple[str | Macro, ...]


@dataclass(frozen=True, slots=True)
class MacroString:
    """A parsed macro-string: its text, its tokens, and whether a domain-spec may end
    the way it does (with a macro-expand or a dot and a top label, RFC 7208 section 7.1).
    """

    text: str
    tokens: Tokens
    domain_end_ok: bool
    letters: frozenset[str]

    @property
    def has_macros(self) -> bool:
        return any(isinstance(t, Macro) for t in self.tokens)


@lru_cache(maxsize=4096)
def parse_macro_string(text: str, *, explanation: bool = False) -> MacroString:
    """Read ``text`` as an RFC 7208 macro-string (or, with ``explanation``, as an
    explain-string, which may also hold spaces and the letters c, r and t).

    Raises :class:`MacroSyntaxError` naming the offending character.
    """
    tokens: list[str | Macro] = []
    literal: list[str] = []
    tail: list[str] = []  # the literal text after the last macro-expand
    letters: set[str] = set()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "%":
            code = ord(ch)
            if not (0x21 <= code <= 0x7E or (explanation and ch == " ")):
                what = "a space" if ch == " " else f"the character {ch!r}"
                raise MacroSyntaxError(
                    f"{what} at position {i + 1} of {text!r} is not allowed here: only "
                    "visible ASCII characters may appear (RFC 7208 section 7.1)"
                )
            literal.append(ch)
            tail.append(ch)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt in ("%", "_", "-"):
            literal.append({"%": "%", "_": " ", "-": "%20"}[nxt])
            tail.clear()
            i += 2
            continue
        if nxt != "{":
            shown = text[i:i + 2] if nxt else "%"
            raise MacroSyntaxError(
                f"{shown!r} at position {i + 1} of {text!r} is not a macro: a '%' must be "
                "followed by '{', '%', '_' or '-' (RFC 7208 section 7.1)"
            )
        match = _MACRO_BODY.match(text, i + 2)
        if match is None:
            end = text.find("}", i)
            shown = text[i:end + 1] if end >= 0 else text[i:]
            raise MacroSyntaxError(
                f"{shown!r} in {text!r} is not a valid macro: write %{{letter}}, optionally "
                "with a number, 'r' and delimiters, such as %{d2} or %{ir} or %{l-} "
                "(RFC 7208 section 7.1)"
            )
        raw_letter, digits, reverse, delimiters = match.groups()
        letter = raw_letter.lower()
        macro_text = text[i:match.end()]
        if letter not in MACRO_LETTERS:
            raise MacroSyntaxError(
                f"{macro_text!r} uses the unknown macro letter {raw_letter!r}; the letters "
                f"are {', '.join(sorted(MACRO_LETTERS))} (RFC 7208 section 7.2)"
            )
        if letter in EXPLANATION_ONLY and not explanation:
            raise MacroSyntaxError(
                f"{macro_text!r}: the macro letters c, r and t are allowed only in "
                "explanation text, not in a domain-spec (RFC 7208 section 7.2)"
            )
        count = None
        if digits:
            count = int(digits)
            if count == 0:
                raise MacroSyntaxError(
                    f"{macro_text!r}: the number of parts to keep must not be zero "
                    "(RFC 7208 section 7.3)"
                )
        if literal:
            tokens.append("".join(literal))
            literal.clear()
        tokens.append(Macro(letter, count, bool(reverse), delimiters or ".",
                            raw_letter.isupper(), macro_text))
        letters.add(letter)
        tail.clear()
        i = match.end()
    if literal:
        tokens.append("".join(literal))
    tail_text = "".join(tail)
    ends_with_macro = n > 0 and not tail_text
    domain_end_ok = ends_with_macro or bool(_TOPLABEL_END.search(tail_text))
    return MacroString(text, tuple(tokens), domain_end_ok, frozenset(letters))


def parse_domain_spec(text: str) -> MacroString:
    """Read a domain-spec: a macro-string that ends with a macro or with a dot and a
    top label that is not all digits (RFC 7208 section 7.1)."""
    if not text:
        raise MacroSyntaxError("the domain-spec is empty; a domain name must follow "
                               "(RFC 7208 section 7.1)")
    spec = parse_macro_string(text)
    if not spec.domain_end_ok:
        raise MacroSyntaxError(
            f"{text!r} is not a valid domain-spec: it must end with a dot and a top label "
            "that has a letter and does not start or end with '-' (such as "
            "'.example.com'), or with a macro (RFC 7208 section 7.1)"
        )
    return spec


class MacroContext:
    """The values the macro letters stand for while one message is checked.

    ``p`` is computed only when a macro asks for it (it costs DNS queries), through
    ``validated_name(domain)``.
    """

    __slots__ = ("sender", "local", "sender_domain", "domain", "ip_dotted", "ip_readable",
                 "ip_version", "helo", "receiver", "timestamp", "validated_name")

    def __init__(self, *, sender: str, local: str, sender_domain: str, domain: str,
                 ip_dotted: str, ip_readable: str, ip_version: int, helo: str,
                 receiver: str, timestamp: int,
                 validated_name: Callable[[str], str] | None = None) -> None:
        self.sender = sender
        self.local = local
        self.sender_domain = sender_domain
        self.domain = domain
        self.ip_dotted = ip_dotted
        self.ip_readable = ip_readable
        self.ip_version = ip_version
        self.helo = helo
        self.receiver = receiver
        self.timestamp = timestamp
        self.validated_name = validated_name

    def value(self, letter: str) -> str:
        """The unmodified value of one macro letter (RFC 7208 section 7.2)."""
        if letter == "d":
            return self.domain
        if letter == "s":
            return self.sender
        if letter == "l":
            return self.local
        if letter == "o":
            return self.sender_domain
        if letter == "i":
            return self.ip_dotted
        if letter == "v":
            return "in-addr" if self.ip_version == 4 else "ip6"
        if letter == "h":
            return self.helo
        if letter == "c":
            return self.ip_readable
        if letter == "r":
            return self.receiver
        if letter == "t":
            return str(self.timestamp)
        if letter == "p":
            return self.validated_name(self.domain) if self.validated_name else "unknown"
        raise KeyError(letter)


_SPLITTERS: dict[str, re.Pattern[str]] = {}


def _split(value: str, delimiters: str) -> list[str]:
    if delimiters == ".":
        return value.split(".")
    pattern = _SPLITTERS.get(delimiters)
    if pattern is None:
        pattern = re.compile("[" + re.escape(delimiters) + "]")
        _SPLITTERS[delimiters] = pattern
    return pattern.split(value)


def expand_macro(macro: Macro, context: MacroContext) -> str:
    """One macro filled in: split, reverse, keep the right-hand parts, join with dots,
    and URL-escape for an upper-case letter (RFC 7208 section 7.3)."""
    value = context.value(macro.letter)
    if macro.digits is not None or macro.reverse or macro.delimiters != ".":
        parts = _split(value, macro.delimiters)
        if macro.reverse:
            parts.reverse()
        if macro.digits is not None and macro.digits < len(parts):
            parts = parts[-macro.digits:]
        value = ".".join(parts)
    if macro.escape:
        # RFC 3986 unreserved characters stay; everything else is %-escaped (7.3).
        value = quote(value, safe="")
    return value


def expand(spec: MacroString | Tokens, context: MacroContext) -> str:
    """The macro-string with every macro filled in for ``context``."""
    tokens = spec.tokens if isinstance(spec, MacroString) else spec
    if len(tokens) == 1 and isinstance(tokens[0], str):
        return tokens[0]
    return "".join(t if isinstance(t, str) else expand_macro(t, context) for t in tokens)


def truncate_domain(name: str) -> str:
    """An expanded domain name fit for a query: one trailing dot dropped, then labels
    removed from the left until it is at most 253 characters (RFC 7208 section 7.3)."""
    if name.endswith("."):
        name = name[:-1]
    while len(name) > MAX_DOMAIN_LENGTH and "." in name:
        name = name[name.index(".") + 1:]
    return name


def url_escape(value: str) -> str:
    """The URL escaping an upper-case macro letter applies (RFC 7208 section 7.3)."""
    return quote(value, safe="")
