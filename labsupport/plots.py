"""Pictures of results: matplotlib only, imported when a picture is asked for.

Presentation only: every function here takes a result (or computes one with the
protocol modules) and draws it; none of them decides anything.

Introduced in ``notebooks/01-dns-mx.ipynb``.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING, Any

from .mx import MXResult, ResolverLike, mx_hosts, order_by_preference

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new_ax = plt.subplots(figsize=size)
    return fig, new_ax


def first_choice_counts(domain: str, resolver: ResolverLike, trials: int = 1000,
                        seed: int = 0) -> tuple[MXResult, Counter[str]]:
    """Look ``domain`` up once, then pick a first host ``trials`` times the way a sender
    does (RFC 5321 section 5.1): how often does each host come first?"""
    result = mx_hosts(domain, resolver, rng=random.Random(seed))
    usable = {h.name for h in result.hosts if h.usable}
    records = [(p, h) for p, h in result.records if h in usable]
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    for _ in range(trials):
        ordered = order_by_preference(records, rng)
        if ordered:
            counts[ordered[0][1]] += 1
    return result, counts


def mx_spread(domain: str, resolver: ResolverLike, trials: int = 1000, seed: int = 0,
              ax: Axes | None = None) -> Figure:
    """A bar chart: which host a sender picks first, over many deliveries."""
    result, counts = first_choice_counts(domain, resolver, trials, seed)
    fig, ax = _axes(ax, (6, 3))
    names = [h for _, h in result.records if h in counts] or ["(none)"]
    values = [counts.get(n, 0) for n in names]
    bars = ax.bar(names, values, color="#4c72b0")
    for bar, value in zip(bars, values, strict=True):
        ax.annotate(f"{value / trials:.0%}", (bar.get_x() + bar.get_width() / 2, value),
                    ha="center", va="bottom")
    prefs = {h: p for p, h in result.records}
    ax.set_xticks(range(len(names)), [f"{n}\n(preference {prefs.get(n, '-')})" for n in names])
    ax.set_ylabel(f"first choice, out of {trials}")
    ax.set_title(f"Where {trials} messages for {domain} go first")
    ax.set_ylim(0, trials * 1.15)
    fig.tight_layout()
    return fig


def mx_diagram(result: MXResult, ax: Axes | None = None) -> Figure:
    """The domain, its mail hosts in the order a sender tries them, and their addresses;
    hosts a sender cannot use are drawn in red with the reason."""
    hosts = list(result.hosts)
    fig, ax = _axes(ax, (8, 1.2 + 0.9 * max(1, len(hosts))))
    ax.set_axis_off()
    rows = max(1, len(hosts))
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.5, rows - 0.5)
    box: dict[str, Any] = dict(boxstyle="round,pad=0.4", fc="#eef3fb", ec="#4c72b0")
    ax.text(1.2, (rows - 1) / 2, result.domain, ha="center", va="center", bbox=box,
            fontsize=11, fontweight="bold")
    if not hosts:
        ax.text(5.5, (rows - 1) / 2, f"{result.verdict}: {result.summary}", ha="left",
                va="center", wrap=True, fontsize=9)
    for i, host in enumerate(hosts):
        y = rows - 1 - i
        good = host.usable and not host.problem_kind
        colour = "#2f6f2f" if good else ("#9f6f00" if host.usable else "#b00020")
        ax.annotate("", xy=(4.0, y), xytext=(2.4, (rows - 1) / 2),
                    arrowprops=dict(arrowstyle="->", color=colour))
        ax.text(3.2, y + 0.12 + ((rows - 1) / 2 - y) * 0.5, f"#{i + 1}, pref {host.preference}",
                ha="center", fontsize=8, color=colour)
        ax.text(4.1, y, host.name, ha="left", va="center", fontsize=10,
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec=colour))
        note = ", ".join(host.addresses) or "no address"
        if host.problem_kind:
            note += f"   [{host.problem_kind}]"
        ax.text(7.0, y, note, ha="left", va="center", fontsize=8, color=colour)
    ax.set_title(f"{result.title()}", fontsize=10, loc="left")
    fig.tight_layout()
    return fig
