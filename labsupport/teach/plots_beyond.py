"""Pictures of lesson 10 (``notebooks/10-after-dmarc.ipynb``): an ARC chain, and SMTP
smuggling's fake ends of data and what servers made of them.

* :func:`arc_chain` draws the ARC sets of a message (RFC 8617) as the validator found
  them (:func:`labsupport.auth.arc_verify.validate_chain`): one column per instance,
  oldest on the left, each with its ARC-Authentication-Results (what that handler
  recorded on arrival), its ARC-Message-Signature (what it signed: ``h=`` and the body,
  and whether that still verifies) and its ARC-Seal (``cv=``, the sets it covers, and
  whether it verifies); below, one bar per seal over the sets it covers.
* :func:`end_of_data_octets` draws the one end of data, CR LF . CR LF (RFC 5321
  section 4.1.1.4), and each fake one octet by octet, a bare CR or LF (section 2.3.8)
  in red.
* :func:`smuggling_grid` draws surveys (:func:`labsupport.mail.smuggling.
  send_every_variant`) side by side: variants by servers, each cell what happened.

Presentation only: each takes results and draws them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..mail.smuggling import _BARE, END_OF_DATA, VARIANTS, EndOfDataVariant
from .plots_core import axes_for

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..auth.arc_results import ARCValidation

GOOD = "#c9e9d2"
BAD = "#f6c9c9"
WARN = "#fde9b8"
NEUTRAL = "#eeeeee"
INFO = "#eef3fb"
_STATUS = {"pass": GOOD, "fail": BAD}
_CV_WORDS = {"none": "the first set, no chain before it",
             "pass": "the chain it received validated",
             "fail": "the chain it received was broken"}


def _signed_names(message: bytes | None) -> dict[int, str]:
    """The ``h=`` of each instance's ARC-Message-Signature in ``message``."""
    if message is None:
        return {}
    from ..auth.arc_sets import AMS, collect_arc_fields
    from ..auth.dkim_canon import parse_message

    collected = collect_arc_fields(parse_message(message))
    return {n: ":".join(p.strip() for p in tags[AMS].get("h", "").split(":"))
            for n, tags in collected.tags.items() if AMS in tags}


def _recorded(arc_set: Any) -> str:
    found = arc_set.authentication_results()
    if found is None:
        return "(unreadable)"
    return " ".join(f"{r.method}={r.result}" for r in found.results) or "none"


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, colour: str) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.03", fc=colour,
                                ec="#555555", lw=0.8))
    ax.text(x + 0.1, y + h - 0.1, text, ha="left", va="top", fontsize=7.5, family="monospace")


def arc_chain(validation: ARCValidation, message: bytes | None = None, title: str = "",
              ax: Axes | None = None) -> Figure:
    """The ARC sets of ``validation`` (oldest left), what each field records or covers,
    and the outcome of each check, green for pass and red for fail; ``message`` (the
    message validated) adds each ARC-Message-Signature's ``h=``."""
    sets = list(validation.sets)
    count = max(1, len(sets))
    width, gap = 4.6, 0.5
    fig, ax = axes_for(ax, (max(6.5, 5.0 * count), 5.2 + 0.35 * count))
    ax.set_axis_off()
    ax.set_xlim(-0.2, count * (width + gap))
    ax.set_ylim(-0.9 - 0.55 * count, 6.3)
    if not sets:
        ax.text(0.5, 0.5, f"no ARC sets: chain validation status {validation.verdict}",
                ha="center", va="center", transform=ax.transAxes, fontsize=10)
        return fig
    signed = _signed_names(message)
    for k, arc_set in enumerate(sets):
        x = k * (width + gap)
        ax.text(x + width / 2, 6.0, f"i={arc_set.instance}: sealed by {arc_set.sealer or '?'}",
                ha="center", va="center", fontsize=9.5, weight="bold")
        cv = arc_set.cv or "?"
        seal = arc_set.seal
        _box(ax, x, 4.0, width, 1.6,
             f"ARC-Seal i={arc_set.instance}\ncv={cv}: {_CV_WORDS.get(cv, 'not a status')}"
             f"\nseals the ARC fields of sets 1..{arc_set.instance}\ncheck now: {seal}",
             _STATUS.get(seal, NEUTRAL))
        names = signed.get(arc_set.instance)
        wrapped = "\n".join(textwrap.wrap("h=" + names, 44)[:3]) if names else "h= (not shown)"
        ams = arc_set.message_signature
        _box(ax, x, 1.9, width, 1.9,
             f"ARC-Message-Signature i={arc_set.instance}\nsigns the message as this hop "
             f"sent it:\n{wrapped}\nand the body\ncheck now: {ams}"
             + (" (changed since)" if ams == "fail" else ""), _STATUS.get(ams, NEUTRAL))
        recorded = "\n".join(textwrap.wrap(_recorded(arc_set), 44)[:2])
        _box(ax, x, 0.2, width, 1.5,
             f"ARC-Authentication-Results i={arc_set.instance}\nrecorded on arrival:\n"
             f"{recorded}", INFO)
    for k, arc_set in enumerate(sets):
        y = -0.35 - 0.55 * k
        right = k * (width + gap) + width
        colour = "#2a9d4b" if arc_set.seal == "pass" else (
            "#b00020" if arc_set.seal == "fail" else "#888888")
        ax.plot([0, right], [y, y], color=colour, lw=9, solid_capstyle="butt", alpha=0.45)
        ax.text(0.1, y, f"ARC-Seal i={arc_set.instance} covers sets 1..{arc_set.instance}: "
                f"{arc_set.seal}", va="center", fontsize=7.5)
    oldest = (f", oldest-pass {validation.oldest_pass}" if validation.oldest_pass is not None
              else "")
    status = (f"ARC chain: {validation.verdict} ({len(sets)} "
              f"set{'s' if len(sets) != 1 else ''}{oldest})")
    ax.set_title(f"{title}\n{status}" if title else status, fontsize=10.5)
    fig.tight_layout()
    return fig


def _octets(data: bytes) -> list[tuple[str, str, str]]:
    """Each octet as (label, hex, colour): a bare CR or LF red, one of a CR LF pair
    green, anything else white."""
    bare = {m.start() for m in _BARE.finditer(data)}
    names = {0x0D: "CR", 0x0A: "LF"}
    out = []
    for i, octet in enumerate(data):
        label = names.get(octet, chr(octet))
        colour = BAD if i in bare else (GOOD if octet in names else "#ffffff")
        out.append((label, f"{octet:02X}", colour))
    return out


def end_of_data_octets(variants: Sequence[EndOfDataVariant] = VARIANTS,
                       ax: Axes | None = None) -> Figure:
    """The end of data CR LF . CR LF and each of ``variants``, octet by octet (name and
    hex), a bare CR or LF red, a CR LF pair green."""
    rows: list[tuple[str, bytes]] = [("the end of data", END_OF_DATA)]
    rows += [(v.name, v.ending) for v in variants]
    fig, ax = axes_for(ax, (7.0, 0.5 * len(rows) + 1.2))
    widest = max(len(data) for _n, data in rows)
    ax.set_xlim(-3.2, widest + 0.2)
    ax.set_ylim(len(rows), -0.6)
    ax.set_axis_off()
    for y, (name, data) in enumerate(rows):
        ax.text(-0.3, y + 0.45, name, ha="right", va="center", fontsize=9,
                weight="bold" if y == 0 else "normal")
        for x, (label, hexa, colour) in enumerate(_octets(data)):
            ax.add_patch(_rectangle(x + 0.05, y + 0.05, 0.9, 0.8, colour))
            ax.text(x + 0.5, y + 0.35, label, ha="center", va="center", fontsize=9,
                    weight="bold")
            ax.text(x + 0.5, y + 0.7, hexa, ha="center", va="center", fontsize=6.5,
                    color="#555555")
    ax.set_title("Where a message ends: only CR LF . CR LF (RFC 5321 4.1.1.4); red: a bare "
                 "CR or LF (2.3.8)", fontsize=9.5)
    fig.tight_layout()
    return fig


def _rectangle(x: float, y: float, w: float, h: float, colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fc=colour, ec="#555555", lw=0.8)


#: The colour of each verdict of :class:`~labsupport.mail.smuggling.SmugglingResult`.
VERDICT_COLOURS = {"refused": GOOD, "accepted": WARN, "smuggled": BAD}


def _cell(result: Any) -> str:
    words = result.verdict
    if result.reply is not None:
        words += f"\n{result.reply.code}"
        if result.extra_replies:
            words += f" + {len(result.extra_replies)} more"
    if result.stored is not None:
        words += f", stored {result.stored}"
    return words


def smuggling_grid(surveys: Mapping[str, Any], ax: Axes | None = None) -> Figure:
    """Variants (rows) by servers (columns, the keys of ``surveys``, each a
    :class:`~labsupport.mail.smuggling.SmugglingSurvey`): each cell the verdict, the
    reply code (and how many replies to smuggled commands followed) and how many
    messages were stored. Red: smuggled; amber: accepted with its bare line ends;
    green: refused."""
    columns = list(surveys)
    by_column = {c: {r.variant.name: r for r in surveys[c].results} for c in columns}
    rows: list[EndOfDataVariant] = []
    for column in columns:
        for result in surveys[column].results:
            if result.variant not in rows:
                rows.append(result.variant)
    fig, ax = axes_for(ax, (2.6 * len(columns) + 2.6, 0.62 * len(rows) + 1.4))
    ax.set_xlim(0, max(1, len(columns)))
    ax.set_ylim(max(1, len(rows)), 0)
    for x, column in enumerate(columns):
        for y, each in enumerate(rows):
            found = by_column[column].get(each.name)
            text = _cell(found) if found is not None else "not tried"
            colour = VERDICT_COLOURS.get(found.verdict, NEUTRAL) if found else NEUTRAL
            ax.add_patch(_rectangle(x + 0.03, y + 0.06, 0.94, 0.88, colour))
            ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=8)
    ax.set_xticks([x + 0.5 for x in range(len(columns))],
                  ["\n".join(textwrap.wrap(c, 24)) for c in columns], fontsize=8.5)
    ax.xaxis.tick_top()
    ax.set_yticks([y + 0.5 for y in range(len(rows))], [f"{v.name}  {v.shown}" for v in rows],
                  fontsize=8, family="monospace")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title("Each fake end of data, sent with a smuggled second message", fontsize=10,
                 pad=30)
    fig.tight_layout()
    return fig


__all__ = ["VERDICT_COLOURS", "arc_chain", "end_of_data_octets", "smuggling_grid"]
