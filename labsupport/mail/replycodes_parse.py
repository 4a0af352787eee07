"""Finding the reply in what was pasted, and what is odd about it.

Reads a reply line, a multi-line reply, an enhanced code alone, a reply quoted by a mail
program or a bounce, or Python's ``smtplib`` exceptions, into its codes, text and context;
:func:`_notes_on` flags what is odd. Used by :func:`labsupport.mail.replycodes_decode.decode`.
"""

from __future__ import annotations

import re

from .replycodes_tables import (
    RFC_ENHANCED_IN_REPLIES,
    RFC_REPLIES,
    RFC_REPLY_CLASSES,
    ReplyCodeError,
)

# -- finding the reply in what was pasted ---------------------------------------------------

_MAX_INPUT = 100_000
_LINE = re.compile(r"([2-5][0-9][0-9])(?:([ -])(.*))?")
_ENHANCED_START = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?=[\s,;:]|\Z)")
_X_CODE = re.compile(r"(?<![\w.])X\.[0-9]{1,3}\.[0-9]{1,3}(?![\w])", re.IGNORECASE)
_PY_LITERAL = r"b?(?:'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")"
_SMTPLIB = re.compile(rf"\(\s*([2-5][0-9][0-9])\s*,\s*({_PY_LITERAL})"
                      rf"((?:\s*,\s*{_PY_LITERAL})*)\s*\)")
_QUOTED_FULL = re.compile(r"(?<![\w.:/\[-])([2-5][0-9][0-9])[ -]\s*"
                          r"([245]\.[0-9]{1,3}\.[0-9]{1,3})(?=[\s,;:)]|\Z)")
_QUOTED_CODE = re.compile(r"(?<![\w.:/\[-])([2-5][0-9][0-9])(?=[ -]|\Z)")
_QUOTED_ENHANCED = re.compile(r"(?<![\w.])([245]\.[0-9]{1,3}\.[0-9]{1,3})(?![\w]|\.[0-9])")
_IN_REPLY_TO = re.compile(r"\s*\((in reply to [^()]*)\)\s*\Z", re.IGNORECASE)

_Parsed = tuple[int | None, str | None, str, str, list[str]]


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _no_reply(text: str) -> ReplyCodeError:
    if re.fullmatch(r"[0-9]{3}", text) and text[0] == "1":
        return ReplyCodeError(f"{text} is not an SMTP reply code: SMTP uses no 1yz replies, its "
                              f"codes start with 2, 3, 4 or 5 ({RFC_REPLY_CLASSES}).")
    if _X_CODE.search(text):
        return ReplyCodeError(f"{_shown(text)} has X in place of the class: tables write "
                              "X.7.1 for 'any class', but a server sends 2, 4 or 5 there "
                              "(RFC 3463 section 2); decode '5.7.1' or '4.7.1' instead.")
    return ReplyCodeError(
        f"{_shown(text)} holds no SMTP reply: a reply code is three digits whose first is "
        f"2, 3, 4 or 5, such as 550 ({RFC_REPLIES}), and an enhanced status code is "
        "class.subject.detail with class 2, 4 or 5, such as 5.7.1 (RFC 3463 section 2).")


def _take_enhanced(lines: list[str]) -> tuple[str | None, list[str]]:
    """The enhanced code at the start of the first line, taken off every line that has it."""
    found = _ENHANCED_START.match(lines[0]) if lines else None
    if found is None:
        return None, lines
    enhanced = found.group(0)

    def without(line: str) -> str:
        rest = line[len(enhanced):]
        return rest.strip() if line.startswith(enhanced) and rest[:1] in ("", " ", "\t") \
            else line

    return enhanced, [without(line) for line in lines]


def _unrepr(literal: str) -> str:
    """The text of a Python bytes or str literal as smtplib's exceptions print it."""
    import ast
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(literal)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return literal.lstrip("b")[1:-1]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _from_smtplib(text: str) -> _Parsed | None:
    """``(550, b'5.1.1 no such user')``: how smtplib's exceptions print a reply."""
    found = _SMTPLIB.search(text)
    if found is None:
        return None
    body = _unrepr(found.group(2))
    lines = [line.strip() for line in body.splitlines()] or [""]
    enhanced, lines = _take_enhanced(lines)
    # SMTPSenderRefused adds the sender: "(553, b'5.1.8 ...', 'a@b')".
    extra = [_unrepr(m.group(0)) for m in re.finditer(_PY_LITERAL, found.group(3))]
    around = (text[:found.start()] + " " + text[found.end():]).strip(" \t\r\n{}[]:,'\"")
    context = " … ".join(c for c in [around, *extra] if c)
    return int(found.group(1)), enhanced, "\n".join(lines), context, []


def _from_reply_lines(text: str) -> _Parsed | None:
    """One reply as the server sent it: every line is ``code[SP|-]text``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = [_LINE.fullmatch(line) for line in lines]
    matches = [m for m in found if m is not None]
    if not lines or len(matches) != len(lines):
        return None
    codes = sorted({m.group(1) for m in matches})
    if len(codes) > 1:
        raise ReplyCodeError(
            f"these lines carry different codes ({' and '.join(codes)}): every line of a "
            f"multi-line reply repeats the same code ({RFC_REPLY_CLASSES}), so they are "
            "several replies; decode them one at a time.")
    notes = []
    if matches[-1].group(2) == "-":
        notes.append("The last line has a hyphen after the code, which says that more lines "
                     f"follow ({RFC_REPLY_CLASSES}): this reply may be cut short.")
    if any(m.group(2) == " " for m in matches[:-1]):
        notes.append("A line before the last has a space after the code, which ends a reply "
                     f"({RFC_REPLY_CLASSES}): these lines may come from more than one reply.")
    enhanced, texts = _take_enhanced([(m.group(3) or "").strip() for m in matches])
    return int(codes[0]), enhanced, "\n".join(texts), "", notes


def _from_enhanced_only(text: str) -> _Parsed | None:
    """``5.7.1`` or ``5.7.1 some text``: an enhanced status code without a reply code."""
    if _ENHANCED_START.match(text) is None:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    enhanced, lines = _take_enhanced(lines)
    return None, enhanced, "\n".join(lines), "", []


def _context_before(text: str, start: int) -> str:
    """The quoting program's words before a reply: its line, or the line above."""
    before = text[:start]
    line_start = before.rfind("\n") + 1
    same_line = before[line_start:].strip()
    if same_line:
        return same_line
    above = before[:line_start].rstrip().splitlines()
    return above[-1].strip() if above else ""


def _continued(text: str, end: int, code: int | None) -> str:
    """The rest of the reply's line, and the lines a bounce wrapped it onto (indented, or
    starting with the same code), up to a blank or an unindented line."""
    first, _, after = text[end:].partition("\n")
    kept = [first]
    for line in after.splitlines():
        if not line.strip():
            break
        if line[:1].isspace() or (code is not None and re.match(rf"\s*{code}[ -]", line)):
            kept.append(line)
        else:
            break
    return "\n".join(kept)


def _from_quoted(text: str) -> _Parsed | None:
    """A reply quoted by a mail program or a bounce: ``... said: 550 5.1.1 <bob@x>: ...``."""
    code: int | None
    enhanced: str | None
    full = _QUOTED_FULL.search(text)
    if full is not None:
        found, code, enhanced = full, int(full.group(1)), full.group(2)
    elif (bare := _QUOTED_CODE.search(text)) is not None:
        found, code, enhanced = bare, int(bare.group(1)), None
    elif (lone := _QUOTED_ENHANCED.search(text)) is not None:
        found, code, enhanced = lone, None, lone.group(1)
    else:
        return None
    rest = _continued(text, found.end(), code)
    if code is not None:
        again = rf"(?<!\S){code}[ -]" + (rf"(?:\s*{re.escape(enhanced)}(?=\s|\Z))?"
                                        if enhanced else "")
        rest = re.sub(again, " ", rest)
    context = [_context_before(text, found.start())]
    rest = " ".join(rest.split())  # the quoting program wrapped the lines, not the server
    trailer = _IN_REPLY_TO.search(rest)
    if trailer is not None:
        context.append(trailer.group(1))
        rest = rest[:trailer.start()]
    body = rest.lstrip("- ").strip()
    return code, enhanced, body, " … ".join(c for c in context if c), []


def _notes_on(code: int | None, enhanced: str | None, text: str) -> list[str]:
    notes = []
    if code is not None and code // 10 % 10 > 5:
        notes.append(f"The second digit of {code} is {code // 10 % 10}; RFC 5321 section 4.2 "
                     "allows only 0 to 5 there. A client reads a code it does not know by its "
                     "first digit only (RFC 5321 section 4.2).")
    if code is not None and enhanced and enhanced[0] != str(code)[0]:
        notes.append(f"The enhanced code's class ({enhanced[0]}) does not agree with the "
                     f"reply code's first digit ({str(code)[0]}), as {RFC_ENHANCED_IN_REPLIES} "
                     "requires. A client acts on the reply code, not on the rest "
                     f"({RFC_REPLIES}); so does this decoder.")
    if code is not None and code // 100 == 3 and enhanced:
        notes.append(f"3xx replies carry no enhanced status code ({RFC_ENHANCED_IN_REPLIES}).")
    if code is None and enhanced:
        notes.append("Only an enhanced code was given: its class decides here (RFC 3463 "
                     "section 2). In a real reply, the reply code in front of it is what a "
                     f"client acts on ({RFC_REPLIES}).")
    if code == 334 and text.strip():
        import base64

        try:
            said = base64.b64decode(text.strip(), validate=True).decode("ascii")
        except ValueError:
            said = ""
        if said and said.isprintable():
            notes.append(f"The text of a 334 is base64 (RFC 4954 section 4); this one says "
                         f"{said!r}.")
    return notes
