"""Pictures of transport security: DNSSEC's chain of trust, and what each defence does
against the STARTTLS downgrade.

:func:`chain_of_trust` draws a :class:`~labsupport.teach.checks_transport.TrustChain`
top down: the trust anchor (a DS record the validator is configured with), the zone's
DNSKEY, and the signed RRset; each arrow is one check, green when it holds, red when it
fails, grey when a link above it failed (nothing below a broken link can be trusted).

:func:`defence_grid` draws the table of
:func:`~labsupport.teach.checks_transport.compare_defences`: one row per case (what the
recipient domain publishes), one column per path (no attacker, the downgrade relay), each
cell the delivering MTA's outcome: green when the message was protected (over TLS, or
held back in the queue), amber when it crossed the path in the clear but the failure was
recorded for a TLS-RPT report, red when it crossed in the clear unseen.

Presentation only: the checks and the delivering MTA decided; these functions draw it.

Introduced in ``notebooks/09-transport-security.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .plots_core import axes_for

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .checks_transport import DefenceRun, TrustChain

#: Link colours: holds, fails, not reached.
LINK_COLOURS = {"ok": "#2a9d4b", "fails": "#b00020", "unreached": "#9a9a9a"}
#: Cell colours of the defence grid: protected, exposed but reported, exposed.
OUTCOME_COLOURS = {"protected": "#c9e9d2", "reported": "#fbe3b5", "exposed": "#f6c9c9"}
OUTCOME_MEANING = {"protected": "protected (TLS, or held in the queue)",
                   "reported": "in the clear, but reported (TLS-RPT)",
                   "exposed": "in the clear, unseen"}


def _state(link: Any) -> str:
    return "unreached" if not link.reached else "ok" if link.ok else "fails"


def chain_of_trust(chain: TrustChain, ax: Axes | None = None) -> Figure:
    """The trust anchor, the zone's key and the signed RRset, with the checks between."""
    from matplotlib.patches import FancyBboxPatch

    fig, ax = axes_for(ax, (9, 4.6))
    ax.set_axis_off()
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.8, 3.4)
    boxes = [
        (2.7, "trust anchor (the validator is configured with it)", chain.anchor, "#eef3fb"),
        (1.35, "the zone's key", chain.key, "#fff7e0"),
        (0.0, "the signed data", chain.data, "#eef7ee"),
    ]
    for y, role, text, face in boxes:
        ax.add_patch(FancyBboxPatch((0.3, y - 0.32), 5.4, 0.64, boxstyle="round,pad=0.05",
                                    fc=face, ec="#4c72b0"))
        ax.text(3.0, y + 0.08, text, ha="center", va="center", fontsize=9,
                family="DejaVu Sans Mono")
        ax.text(3.0, y - 0.2, role, ha="center", va="center", fontsize=7.5, color="#555555")
    links = list(chain.links)
    arrows: list[tuple[float, float] | None] = [(2.35, 1.7), None, (1.0, 0.35)]
    for link, span in zip(links, arrows, strict=False):
        state = _state(link)
        colour = LINK_COLOURS[state]
        mark = {"ok": "✔", "fails": "✘", "unreached": "(not reached)"}[state]
        if span is None:  # the key signs its own RRset: a loop on the right of its box
            ax.annotate("", xy=(5.75, 1.25), xytext=(5.75, 1.45),
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=2,
                                        connectionstyle="arc3,rad=-2.2"))
            ax.text(6.35, 1.35, f"{mark} {link.how}", va="center", fontsize=8.5, color=colour)
            continue
        top, bottom = span
        ax.annotate("", xy=(3.0, bottom), xytext=(3.0, top),
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=2))
        ax.text(3.15, (top + bottom) / 2, f"{mark} {link.how}", va="center", fontsize=8.5,
                color=colour)
    note = ("On the Internet the DS sits in the parent zone, signed by the parent's key, and so "
            "on up to the root's key:\nthe lab serves no parent zones, so each lab zone's DS "
            "is itself the trust anchor.")
    ax.text(0.3, -0.65, note, fontsize=7.5, color="#555555", va="center")
    ax.set_title(f"{chain.title()}\n{chain.summary}", fontsize=9.5)
    fig.tight_layout()
    return fig


def defence_grid(table: Mapping[str, Mapping[str, DefenceRun]], ax: Axes | None = None
                 ) -> Figure:
    """One row per case, one column per path, each cell the outcome of one delivery."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = list(table)
    columns = list(next(iter(table.values()), {}))
    fig, ax = axes_for(ax, (3.4 * len(columns) + 3.2, 0.75 * len(rows) + 1.8))
    ax.set_xlim(0, max(1, len(columns)))
    ax.set_ylim(max(1, len(rows)), 0)
    labels = []
    for y, row in enumerate(rows):
        runs = table[row]
        first = next(iter(runs.values()), None)
        labels.append(f"{row}\n(mail to {first.domain})" if first is not None else row)
        for x, column in enumerate(columns):
            run = runs.get(column)
            if run is None:
                continue
            kind = run.exposure
            ax.add_patch(plt.Rectangle((x + 0.03, y + 0.06), 0.94, 0.88,
                                       fc=OUTCOME_COLOURS[kind]))
            extra = f"\n{', '.join(run.reported)}" if run.reported else ""
            ax.text(x + 0.5, y + 0.5, run.verdict + extra, ha="center", va="center",
                    fontsize=8.5)
    ax.set_xticks([x + 0.5 for x in range(len(columns))], columns)
    ax.xaxis.tick_top()
    ax.set_yticks([y + 0.5 for y in range(len(rows))], labels, fontsize=8.5)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    used = {run.exposure for runs in table.values() for run in runs.values()}
    handles = [Patch(fc=colour, label=OUTCOME_MEANING[kind])
               for kind, colour in OUTCOME_COLOURS.items() if kind in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncols=3,
              fontsize=8, frameon=False)
    ax.set_title("What the delivering MTA did with one message, by what the domain publishes",
                 fontsize=10, pad=24)
    fig.tight_layout()
    return fig


__all__ = ["LINK_COLOURS", "OUTCOME_COLOURS", "chain_of_trust", "defence_grid"]
