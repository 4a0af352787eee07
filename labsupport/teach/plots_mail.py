"""Pictures of mail on its way: the hops a message records, and grids of outcomes.

:func:`received_hops` draws a message's Received chain (RFC 5321 section 4.4) read from
the bottom field up, as the trip it records: one box per host, one arrow per hand-over,
labelled with the protocol (``ESMTPSA``: extended SMTP with TLS and a login, RFC 3848),
the address the receiver saw, and the seconds since the first hop.

:func:`verdict_grid` draws any table of outcomes (rows by columns, each cell a word such
as ``pass``/``fail`` or ``works``/``fails``) in colour; :func:`pairing_grid` uses it for
which TLS mode a mail program may use on which listener (notebook 08).

Presentation only.

Introduced in ``notebooks/00-start-here.ipynb`` and ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from email.message import Message
from typing import TYPE_CHECKING, Any

from ..mail.received import received_chain

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GOOD = "#c9e9d2"
BAD = "#f6c9c9"
PATH = "#2a9d4b"
#: Cell words drawn green in :func:`verdict_grid` unless told otherwise.
GOOD_WORDS = frozenset({"pass", "works", "delivered", "accepted", "INBOX"})


def received_hops(message: Message | bytes | str, ax: Axes | None = None) -> Figure:
    """The trip a message records in its Received fields, oldest hop on the left."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    hops = received_chain(message)
    hosts: list[str] = []
    if hops:
        hosts.append(hops[0].from_ or "(unnamed client)")
        hosts.extend(hop.by or "(unnamed server)" for hop in hops)
    count = max(1, len(hosts))
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.0, 3.2 * count), 2.4))
    else:
        fig = ax.figure  # type: ignore[assignment]
    ax.set_axis_off()
    ax.set_xlim(-0.2, 3.2 * count - 0.8)
    ax.set_ylim(-1.5, 1.0)
    if not hops:
        ax.text(0.5, 0.0, "no Received fields: the message never crossed a server",
                fontsize=9, transform=ax.transAxes, ha="center")
        return fig
    for n, host in enumerate(hosts):
        x = 3.2 * n
        ax.add_patch(FancyBboxPatch((x, -0.3), 2.2, 0.6, boxstyle="round,pad=0.05",
                                    fc="#eef3fb", ec="#4c72b0"))
        ax.text(x + 1.1, 0.0, host, ha="center", va="center", fontsize=8.5, weight="bold")
        role = "the sender's client" if n == 0 else f"hop {n}: wrote Received #{n}"
        ax.text(x + 1.1, 0.5, role, ha="center", va="center", fontsize=7.5, color="#555555")
    start = hops[0].date
    for n, hop in enumerate(hops):
        x0, x1 = 3.2 * n + 2.25, 3.2 * (n + 1) - 0.05
        ax.annotate("", xy=(x1, 0.0), xytext=(x0, 0.0),
                    arrowprops=dict(arrowstyle="-|>", color=PATH, lw=2))
        with_ = hop.with_ or "?"
        words = [with_]
        if hop.protocol:
            words.append(hop.protocol.replace("ESMTP with ", "").replace("both ", ""))
        if hop.from_ip:
            words.append(f"seen from {hop.from_ip}")
        if start is not None and hop.date is not None:
            words.append(f"+{(hop.date - start).total_seconds():.0f} s")
        ax.text((x0 + x1) / 2, -0.75, "\n".join(words), ha="center", va="center",
                fontsize=7.5, color=PATH)
    ax.set_title("The trip as the message records it: its Received fields, read bottom up",
                 fontsize=9)
    fig.tight_layout()
    return fig


def verdict_grid(table: Mapping[str, Mapping[str, str]], title: str = "",
                 good: Collection[str] = GOOD_WORDS, ax: Axes | None = None) -> Figure:
    """A grid: one row per key of ``table``, one column per key of its first row, each
    cell its word, green when the word is in ``good`` and red otherwise."""
    import matplotlib.pyplot as plt

    rows = list(table)
    columns = list(next(iter(table.values()), {}))
    if ax is None:
        fig, ax = plt.subplots(figsize=(2.2 * len(columns) + 4.0, 0.5 * len(rows) + 1.2))
    else:
        fig = ax.figure  # type: ignore[assignment]
    ax.set_xlim(0, max(1, len(columns)))
    ax.set_ylim(max(1, len(rows)), 0)
    for y, row in enumerate(rows):
        for x, column in enumerate(columns):
            word = table[row].get(column, "")
            ok = word in good
            ax.add_patch(plt.Rectangle((x + 0.03, y + 0.06), 0.94, 0.88, fc=GOOD if ok else BAD))
            ax.text(x + 0.5, y + 0.5, f"{'✔' if ok else '✘'} {word}", ha="center",
                    va="center", fontsize=9)
    ax.set_xticks([x + 0.5 for x in range(len(columns))], columns)
    ax.xaxis.tick_top()
    ax.set_yticks([y + 0.5 for y in range(len(rows))], rows, fontsize=8.5)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10, pad=24)
    fig.tight_layout()
    return fig


def pairing_grid(tries: Mapping[tuple[str, str], Any], ax: Axes | None = None) -> Figure:
    """Which client TLS mode works on which listener: ``tries`` maps (listener, mode) to
    what ``providers.try_pairing`` found (anything with a ``worked`` flag)."""
    table: dict[str, dict[str, str]] = {}
    for (listener, mode), found in tries.items():
        table.setdefault(f"client uses {mode}", {})[listener] = (
            "works" if found.worked else "fails")
    return verdict_grid(table, "Which TLS mode goes with which listener", ax=ax)


__all__ = ["pairing_grid", "received_hops", "verdict_grid"]
