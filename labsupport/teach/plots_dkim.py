"""Pictures of DKIM: what a signature covers, and which changes on the way break it.

:func:`dkim_coverage` draws a signed message line by line and colours what one signature
covers, the way a verifier reads it (RFC 6376 section 5.4.2): the header fields named in
``h=``, picked from the bottom of the header up; a name listed once more than the message
has it (oversigning), which signs the *absence* of another such field; the
DKIM-Signature field itself, hashed with an empty ``b=``; the body up to ``l=`` (all of
it without ``l=``), and what comes after, which nobody signed. Trailing empty lines,
which canonicalization drops, are shown as ignored.

:func:`dkim_tamper_grid` draws the table of section 5 of the DKIM lab: for each change a
message may suffer on the way, whether a signature made with ``simple`` or ``relaxed``
canonicalization still verifies.

Presentation only: both take what the DKIM verifier found and draw it.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..auth.dkim_canon import CRLF, parse_message
from .plots_mail import verdict_grid

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..auth.dkim import DKIMResult

#: What each kind of line means, and its colour.
COVERAGE = {
    "signed": ("#c9e9d2", "signed (in h=, or body up to l=)"),
    "signature": ("#cfe0f5", "the DKIM-Signature field itself, hashed with b= empty"),
    "absent": ("#ffffff", "named in h= once more than present: its absence is signed"),
    "unsigned": ("#eeeeee", "not signed: may be changed or added freely"),
    "after-l": ("#f6c9c9", "after l=: not signed, could be anything"),
    "ignored": ("#f7f7f7", "empty lines at the end: dropped by canonicalization"),
}


def _signed_fields(message: bytes, signature: DKIMResult) -> tuple[list[tuple[str, str, str]],
                                                                     list[str]]:
    """Each header field as (kind, text, note), top first, and the names in ``h=``
    that found no field (oversigned)."""
    parsed = parse_message(message)
    headers = list(parsed.headers)
    kinds = ["unsigned"] * len(headers)
    notes = ["not in h="] * len(headers)
    sig_positions = [i for i, h in enumerate(headers) if h.key == b"dkim-signature"]
    if signature.index < len(sig_positions):
        kinds[sig_positions[signature.index]] = "signature"
        notes[sig_positions[signature.index]] = "b= empty when hashed"
    used: set[int] = set()
    absent: list[str] = []
    for number, name in enumerate(signature.signed_headers, start=1):
        key = name.lower().encode()
        candidates = [i for i, h in enumerate(headers) if h.key == key and i not in used]
        if not candidates:
            absent.append(name)
            continue
        chosen = candidates[-1]  # the bottom one first (RFC 6376 section 5.4.2)
        used.add(chosen)
        kinds[chosen] = "signed"
        notes[chosen] = f"h= #{number}"
    rows = [(kind, h.text().split("\r\n")[0], note)
            for kind, h, note in zip(kinds, headers, notes, strict=True)]
    return rows, absent


def _body_lines(message: bytes, signature: DKIMResult) -> list[tuple[str, str, str]]:
    """Each body line as (kind, text, note): signed, after l=, or ignored."""
    body = parse_message(message).body
    relaxed = (signature.canonicalization or ("simple", "simple"))[1] == "relaxed"
    canonical_total = signature.body_octets
    if canonical_total is None:
        canonical_total = len(signature.canonical_body or b"")
    limit = signature.body_length if signature.body_length is not None else canonical_total
    lines = body.split(CRLF)
    if lines and lines[-1] == b"":
        lines.pop()
    rows: list[tuple[str, str, str]] = []
    offset = 0
    for line in lines:
        canonical = re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") if relaxed else line
        size = len(canonical) + 2
        text = line.decode("utf-8", "replace")
        if offset >= canonical_total:
            rows.append(("ignored", text, "dropped"))
        elif offset + size <= limit:
            rows.append(("signed", text, ""))
        elif offset >= limit:
            rows.append(("after-l", text, ""))
        else:
            rows.append(("after-l", text, f"only {limit - offset} of {size} octets signed"))
        offset += size
    return rows


def dkim_coverage(message: bytes, signature: DKIMResult, ax: Axes | None = None,
                  width: int = 78) -> Figure:
    """The signed ``message``, each line coloured by what ``signature`` (one entry of
    ``dkim.verify(...)``) covers: signed header fields with their place in ``h=``, the
    signature field, the body up to ``l=``, and what nobody signed."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    headers, absent = _signed_fields(message, signature)
    body = _body_lines(message, signature)
    rows: list[tuple[str, str, str]] = list(headers)
    rows += [("absent", f"{name.capitalize()}: (no such field: none may be added)",
              "oversigned") for name in absent]
    rows.append(("separator", "", ""))
    rows += body
    height = 0.28 * len(rows) + 1.6
    if ax is None:
        fig, ax = plt.subplots(figsize=(11, height))
    else:
        fig = ax.figure  # type: ignore[assignment]
    ax.set_axis_off()
    ax.set_xlim(0, 10)
    ax.set_ylim(len(rows) + 0.2, -0.8)
    for y, (kind, text, note) in enumerate(rows):
        if kind == "separator":
            ax.text(0.1, y, "(empty line: the body starts below)", fontsize=7.5, va="center",
                    color="#777777", style="italic")
            continue
        face = COVERAGE[kind][0]
        dashed = kind == "absent"
        ax.add_patch(Rectangle((0.05, y - 0.42), 8.4, 0.84, fc=face,
                               ec="#2a9d4b" if dashed else "none", ls="--" if dashed else "-"))
        shown = text if len(text) <= width else text[: width - 1] + "…"
        ax.text(0.1, y, shown or " ", fontsize=7.5, va="center", family="DejaVu Sans Mono",
                color="#aa0000" if kind == "after-l" else "black")
        if note:
            ax.text(8.55, y, note, fontsize=7.5, va="center", color="#333333")
    tags = dict(signature.tags)
    c = "/".join(signature.canonicalization or ("simple", "simple"))
    length = f", l={signature.body_length}" if signature.body_length is not None else ""
    ax.set_title(f"What the signature d={signature.domain} s={signature.selector} covers "
                 f"(c={c}{length}): {signature.verdict}\nh={tags.get('h', '')}", fontsize=9)
    used = {kind for kind, _, _ in rows}
    handles = [Patch(fc=face, ec="#2a9d4b" if kind == "absent" else "#bbbbbb",
                     ls="--" if kind == "absent" else "-", label=label)
               for kind, (face, label) in COVERAGE.items() if kind in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=2,
              fontsize=7.5, frameon=False)
    fig.tight_layout()
    return fig


def dkim_tamper_grid(survival: Mapping[str, Mapping[str, str]], ax: Axes | None = None
                     ) -> Figure:
    """A grid: one row per change on the way, one column per canonicalization, each cell
    the DKIM result after the change (``survival[change][canonicalization]``)."""
    table = {change: {f"c={c}/{c}": verdict for c, verdict in by_c.items()}
             for change, by_c in survival.items()}
    return verdict_grid(table, "Does the signature survive the change?", good={"pass"}, ax=ax)


__all__ = ["COVERAGE", "dkim_coverage", "dkim_tamper_grid"]
