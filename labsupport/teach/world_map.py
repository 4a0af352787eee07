"""A map of the lab world, drawn from its zones, with one message's path across it.

:func:`world_map` takes the :class:`~labsupport.dns.world.World` that
:func:`~labsupport.dns.world.lab_world` reads from DNS and draws every organisation as a
card: its domain, who it is (the first line of its zone file), its MX hosts in the order a
sender tries them, its submission and outbound hosts. The attacker is drawn in red, the
set-ups broken on purpose in orange. Above them sits the one name server every DNS
question goes to. The path of the end-to-end message of ``00-start-here`` is drawn in
green and numbered like the lesson's steps: Alice's laptop to her submission server, the
signed message to the outbound host, the MX look-up and the delivery to the recipient's
first MX host, the checks and the mailbox.

Presentation only: the map decides nothing, it shows what DNS says.

Introduced in ``notebooks/00-start-here.ipynb``.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..dns.world import Organisation, World

#: Card colours by kind: (face, edge).
KIND_COLOURS = {
    "organisation": ("#eef3fb", "#4c72b0"),
    "broken": ("#fdf0e1", "#dd8452"),
    "attacker": ("#fbe5e5", "#c44e52"),
}
PATH_COLOUR = "#2a9d4b"
COLUMNS = 4
CARD_WIDTH = 3.3
GAP = 0.9
LINE = 0.26


@dataclass
class _Card:
    org: Organisation
    lines: list[tuple[str, str]]  # (role, text): role is "title", "who", "mx", ...
    x: float = 0.0
    top: float = 0.0

    def y_of(self, role: str) -> float:
        """The height of the first line with this role (for arrows to point at)."""
        for number, (kind, _) in enumerate(self.lines):
            if kind == role:
                return self.top - 0.32 - LINE * number
        return self.top - 0.32

    @property
    def height(self) -> float:
        return 0.3 + LINE * len(self.lines)


def _relative(name: str, domain: str) -> str:
    return name[: -len(domain) - 1] if name.endswith("." + domain) else name


def _card_lines(org: Organisation) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = [("title", org.domain)]
    lines += [("who", part) for part in textwrap.wrap(org.description, 40)[:2]]
    verdict = org.mx.verdict
    if verdict == "null-mx":
        lines.append(("mx", "MX 0 .  (accepts no mail, RFC 7505)"))
    elif not org.mx.records:
        lines.append(("mx", "no MX: mail goes to the domain's own address"
                      if verdict == "implicit-mx" else "no MX and no address: no mail"))
    hosts = sorted(org.mx.hosts, key=lambda h: (h.preference, h.name))  # as published
    for host in hosts if org.mx.records else ():
        where = host.addresses[0] if host.addresses else ""
        name = _relative(host.name, org.domain)
        if host.problem_kind:
            problem = "no address" if host.problem_kind == "no-address" else host.problem_kind
            where = f"{where}  ✗ {problem}".strip()
        lines.append(("mx", f"MX {host.preference} {name} · {where}"))
    if org.submission:
        lines.append(("submission", f"submission smtp · {org.submission[0]}"))
    if org.outbound:
        lines.append(("outbound", f"outbound out · {org.outbound[0]}"))
    for name, mx in org.subdomains:
        names = ", ".join(_relative(h.name, org.domain) for h in mx.hosts)
        lines.append(("sub", f"{_relative(name, org.domain)}: its own MX ({names})"))
    return lines


def _layout(world: World, first: list[str]) -> tuple[list[_Card], float]:
    """Cards in rows of COLUMNS, the given domains first; returns the cards and the
    bottom of the last row."""
    orgs = sorted(world.organisations,
                  key=lambda o: (o.domain not in first, first.index(o.domain)
                                 if o.domain in first else 0, o.domain))
    cards = [_Card(org, _card_lines(org)) for org in orgs]
    top = 0.0
    for start in range(0, len(cards), COLUMNS):
        row = cards[start:start + COLUMNS]
        for column, card in enumerate(row):
            card.x = column * (CARD_WIDTH + GAP)
            card.top = top
        top -= max(card.height for card in row) + 0.45
    return cards, top


def _draw_card(ax: Axes, card: _Card, highlight: bool) -> None:
    from matplotlib.patches import FancyBboxPatch

    face, edge = KIND_COLOURS.get(card.org.kind, KIND_COLOURS["organisation"])
    ax.add_patch(FancyBboxPatch((card.x, card.top - card.height), CARD_WIDTH, card.height,
                                boxstyle="round,pad=0.04,rounding_size=0.12", fc=face,
                                ec=PATH_COLOUR if highlight else edge,
                                lw=2.6 if highlight else 1.0))
    for number, (kind, text) in enumerate(card.lines):
        y = card.top - 0.2 - LINE * number
        style: dict[str, Any] = {"fontsize": 7.5, "va": "center", "family": "DejaVu Sans"}
        if kind == "title":
            style.update(fontsize=9.5, weight="bold")
        elif kind == "who":
            style.update(style="italic", color="#444444")
        elif kind in ("mx", "sub"):
            style.update(family="DejaVu Sans Mono", fontsize=7)
        else:
            style.update(family="DejaVu Sans Mono", fontsize=7, color="#333333")
        ax.text(card.x + 0.12, y, text, **style)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], label: str,
           rad: float = 0.0, dashed: bool = False, label_at: tuple[float, float] | None = None,
           colour: str = PATH_COLOUR) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.2 if dashed else 2.2,
                                linestyle="--" if dashed else "-",
                                connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))
    if not label:
        return
    where = label_at or ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    ax.text(*where, label, fontsize=7.5, color=colour, ha="center", va="center",
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=colour, lw=0.8))


def world_map(world: World, sender: str | None = "northwind.test",
              recipient: str | None = "campus.test",
              ax: Axes | None = None) -> Figure:
    """The lab world, every organisation a card, with the path of one message from a user
    at ``sender`` to one at ``recipient`` (``sender=None`` draws no path)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyBboxPatch

    first = [d for d in (sender, recipient) if d is not None]
    cards, bottom = _layout(world, first)
    width = COLUMNS * CARD_WIDTH + (COLUMNS - 1) * GAP
    height = -bottom + 1.6
    if ax is None:
        fig, ax = plt.subplots(figsize=(width * 1.0, height * 0.95))
    else:
        fig = ax.figure  # type: ignore[assignment]
    ax.set_axis_off()
    ax.set_xlim(-0.3, width + 0.3)
    ax.set_ylim(bottom, 1.5)

    ns_name, ns_address = world.name_server
    ns_x = 2 * (CARD_WIDTH + GAP) + CARD_WIDTH + GAP / 2  # above the third and fourth cards
    ax.add_patch(FancyBboxPatch((ns_x - 2.2, 0.75), 4.4, 0.55, boxstyle="round,pad=0.04",
                                fc="#f2f2f2", ec="#777777"))
    ax.text(ns_x, 1.02, f"{ns_name} ({ns_address}): the one name server, it answers every "
            "DNS question", ha="center", va="center", fontsize=8)
    for card in cards:
        _draw_card(ax, card, card.org.domain in first)

    by_domain = {card.org.domain: card for card in cards}
    if sender in by_domain and recipient in by_domain:
        s, r = by_domain[sender], by_domain[recipient]
        right = s.x + CARD_WIDTH
        laptop = (s.x + 0.5, 0.95)
        ax.text(*laptop, "Alice's laptop", ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec=PATH_COLOUR))
        _arrow(ax, (laptop[0] - 0.45, laptop[1] - 0.1), (s.x - 0.02, s.y_of("submission")),
               "1  submission, STARTTLS + AUTH", rad=0.35, label_at=(s.x + 1.4, 0.5))
        _arrow(ax, (right - 0.15, s.y_of("submission") + 0.05),
               (right - 0.15, s.y_of("outbound") - 0.05), "", rad=0.0)
        ax.text(right - 0.3, (s.y_of("submission") + s.y_of("outbound")) / 2,
                "2  DKIM-signed,\n    queued", fontsize=7.5, color=PATH_COLOUR, ha="right",
                va="center")
        _arrow(ax, (s.x + 2.6, s.top + 0.02), (ns_x - 2.2, 0.95), f"MX {recipient}?",
               rad=-0.15, dashed=True, colour="#777777",
               label_at=(s.x + CARD_WIDTH + GAP / 2, 0.62))
        target = r.y_of("mx")
        _arrow(ax, (right + 0.05, s.y_of("outbound")), (r.x - 0.05, target),
               "3  SMTP to\nthe first MX", rad=0.15,
               label_at=((right + r.x) / 2, s.y_of("outbound") - 0.3))
        mailbox = (r.x + CARD_WIDTH / 2, 0.95)
        ax.text(*mailbox, "Carol's mailbox", ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec=PATH_COLOUR))
        _arrow(ax, (mailbox[0], r.top + 0.02), (mailbox[0], mailbox[1] - 0.18),
               "4  SPF, DKIM, DMARC, then filed", label_at=(mailbox[0], 0.42))
    legend = [Line2D([], [], color=edge, lw=6, alpha=0.5, label=label)
              for label, (_, edge) in (("an organisation", KIND_COLOURS["organisation"]),
                                       ("broken on purpose", KIND_COLOURS["broken"]),
                                       ("the attacker", KIND_COLOURS["attacker"]))]
    if first:
        legend.append(Line2D([], [], color=PATH_COLOUR, lw=2.2, label="one message's path"))
    ax.legend(handles=legend, loc="lower right", fontsize=8, frameon=False,
              bbox_to_anchor=(1.0, -0.02), ncols=len(legend))
    ax.set_title(world.summary, fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["KIND_COLOURS", "world_map"]
