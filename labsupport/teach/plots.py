"""Pictures of results: matplotlib only, imported when a picture is asked for.

Presentation only: every function here takes a result (or computes one with the
protocol modules) and draws it; none of them decides anything.

Introduced in ``notebooks/01-dns-mx.ipynb``.

Part: :mod:`labsupport.teach.plots_beyond` (the ARC chain and SMTP smuggling pictures of
notebook 10).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..dns.mx import MXResult, ResolverLike, mx_hosts, order_by_preference
from .plots_beyond import arc_chain as arc_chain
from .plots_beyond import end_of_data_octets as end_of_data_octets
from .plots_beyond import smuggling_grid as smuggling_grid
from .plots_capstone import capstone_journey as capstone_journey
from .plots_capstone import capstone_scorecard as capstone_scorecard
from .plots_core import axes_for
from .plots_dkim import dkim_coverage as dkim_coverage
from .plots_dkim import dkim_tamper_grid as dkim_tamper_grid
from .plots_mail import pairing_grid as pairing_grid
from .plots_mail import received_hops as received_hops
from .plots_mail import verdict_grid as verdict_grid
from .plots_transport import chain_of_trust as chain_of_trust
from .plots_transport import defence_grid as defence_grid
from .world_map import world_map as world_map

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..auth.spf import SPFResult
    from ..mail.smtp import Line, Transcript


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
    fig, ax = axes_for(ax, (6, 3))
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
    fig, ax = axes_for(ax, (8, 1.2 + 0.9 * max(1, len(hosts))))
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


# -- SMTP dialogues (notebooks/02-smtp-dialogue.ipynb) -------------------------------------

_REPLY_CLASS_NAMES = {2: "2yz done", 3: "3yz go on (intermediate)",
                      4: "4yz transient: try later", 5: "5yz permanent"}
_CLIENT_X, _SERVER_X = 1.6, 8.4


def _short(text: str, width: int = 58) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _sequence_events(transcript: Transcript) -> list[tuple[str, list[Line]]]:
    """Group transcript lines into the diagram's events: one per command, per whole reply
    (all its lines), per message (all its content lines) and per note."""
    events: list[tuple[str, list[Line]]] = []
    group: list[Line] = []
    for line in transcript.lines:
        group.append(line)
        if line.end:
            events.append((line.kind, group))
            group = []
    if group:  # a reply or message cut short by a lost connection
        events.append((group[0].kind, group))
    return events


def smtp_sequence(transcript: Transcript, ax: Axes | None = None) -> Figure:
    """A sequence diagram of an SMTP dialogue: the client's lane on the left, the
    server's on the right, one arrow per command, per reply and per message, the part
    inside TLS shaded, replies coloured by class (2yz green, 3yz blue, 4yz amber, 5yz red),
    and AUTH lines sent in the clear marked in red."""
    from matplotlib.lines import Line2D

    from ..mail.smtp import REPLY_CLASS_COLOURS

    events = _sequence_events(transcript)
    rows = max(1, len(events))
    fig, ax = axes_for(ax, (10, 1.6 + 0.42 * rows))
    ax.set_axis_off()
    ax.set_xlim(0, 10)
    ax.set_ylim(rows + 0.2, -1.6)
    for x, label in ((_CLIENT_X, "client"),
                     (_SERVER_X, f"server\n{transcript.host}:{transcript.port}")):
        ax.plot([x, x], [-0.6, rows - 0.4], color="#999", lw=1, zorder=1)
        ax.text(x, -1.0, label, ha="center", va="center", fontsize=9, fontweight="bold",
                bbox=dict(boxstyle="round,pad=0.3", fc="#eef3fb", ec="#4c72b0"))
    tls_start: int | None = None
    for y, (kind, lines) in enumerate([*events, ("end", [])]):
        tls = bool(lines) and lines[0].tls and kind != "end"
        if tls and tls_start is None:
            tls_start = y
        elif not tls and tls_start is not None:
            ax.axhspan(tls_start - 0.5, y - 0.5, color="#e6f2e6", zorder=0, gid="tls")
            ax.text(9.95, (tls_start + y - 1) / 2, "inside TLS", rotation=90, ha="right",
                    va="center", fontsize=8, color="#2f6f2f")
            tls_start = None
        if kind == "end":
            break
        first = lines[0]
        if kind == "note":
            ax.text(5, y, _short(first.text, 90), ha="center", va="center", fontsize=7.5,
                    color="#666", style="italic", gid="note")
            continue
        if first.from_client:
            start, end = _CLIENT_X, _SERVER_X
        else:
            start, end = _SERVER_X, _CLIENT_X
        colour, style, label = "#333", "-", first.text
        if kind == "reply":
            code = int(first.text[:3]) if first.text[:3].isdigit() else 0
            colour = REPLY_CLASS_COLOURS.get(code // 100, "#333")
            if len(lines) > 1:
                label = f"{first.text}  (+{len(lines) - 1} more lines)"
        elif kind == "data":
            style = "--"
            label = f"the message: {len(lines)} lines, ending with '.'"
        decoded = next((line.decoded for line in lines if line.decoded is not None), None)
        label = _short(label, 36 if decoded is not None else 80)
        if decoded is not None:
            label = f"{label}  = {_short(decoded, 40)}"
        exposed = any(line.exposed for line in lines)
        if exposed:
            colour = "#b00020"
            label += "  (in the clear!)"
        ax.annotate("", xy=(end, y + 0.12), xytext=(start, y + 0.12),
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.4, linestyle=style),
                    gid=kind)
        ax.text(5, y - 0.08, label, ha="center", va="bottom", fontsize=8,
                family="monospace", color=colour, gid=f"{kind}-label",
                fontweight="bold" if exposed else "normal")
    handles = [Line2D([], [], color=c, lw=2, label=_REPLY_CLASS_NAMES[k])
               for k, c in REPLY_CLASS_COLOURS.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=4,
              fontsize=7, frameon=False)
    ax.set_title(transcript.title(), fontsize=10, loc="left")
    fig.tight_layout()
    return fig


# -- captures (notebooks/03-starttls-vs-implicit-tls.ipynb) ------------------------------

_PROTOCOL_COLOURS = {"TCP": "#888888", "SMTP": "#1f5f9f", "TLS": "#2f6f2f", "DNS": "#5f2f8f"}


def capture_ladder(summary: Any, ax: Axes | None = None, limit: int = 45) -> Figure:
    """A ladder diagram of a capture (a :class:`labsupport.wire.capture.CaptureSummary`): the
    client's lane on the left, one lane per server (DNS, mail role), one arrow per packet
    with its time, coloured by protocol (TCP grey, SMTP blue, TLS green, DNS purple) and
    credentials sent in the clear in red. At most ``limit`` packets are drawn."""
    from matplotlib.lines import Line2D

    rows = list(summary.rows)[:limit]
    services: list[str] = []
    for row in rows:
        if row.service not in services:
            services.append(row.service)
    lanes = {"client": 1.0}
    for i, name in enumerate(services or ["server"]):
        lanes[name] = 9.0 - (len(services) - 1 - i) * (7.0 / max(1, len(services)))
    height = max(1, len(rows))
    fig, ax = axes_for(ax, (10, 1.6 + 0.32 * height))
    ax.set_axis_off()
    ax.set_xlim(-0.6, 10)
    ax.set_ylim(height + 0.3, -1.5)
    for name, x in lanes.items():
        ax.plot([x, x], [-0.6, height - 0.4], color="#999", lw=1, zorder=1)
        ax.text(x, -1.0, name, ha="center", va="center", fontsize=9, fontweight="bold",
                bbox=dict(boxstyle="round,pad=0.3", fc="#eef3fb", ec="#4c72b0"))
    for y, row in enumerate(rows):
        server_x = lanes.get(row.service, 9.0)
        start, end = (lanes["client"], server_x) if row.direction.startswith("client") \
            else (server_x, lanes["client"])
        colour = _PROTOCOL_COLOURS.get(row.protocol, "#333")
        if "clear" in row.what:
            colour = "#b00020"
        ax.annotate("", xy=(end, y + 0.1), xytext=(start, y + 0.1),
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.2), gid=row.protocol)
        label = _short(row.what, 60) + (f" ({row.length} B)" if row.length else "")
        ax.text((start + end) / 2, y - 0.05, label, ha="center", va="bottom", fontsize=7.5,
                family="monospace", color=colour)
        ax.text(-0.5, y + 0.1, f"{row.time * 1000:.1f} ms", ha="left", va="center",
                fontsize=7, color="#666")
    handles = [Line2D([], [], color=c, lw=2, label=p) for p, c in _PROTOCOL_COLOURS.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
              fontsize=7, frameon=False)
    more = f" (first {limit} of {len(summary.rows)})" if len(summary.rows) > limit else ""
    ax.set_title(f"{summary.title()}{more}", fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def round_trips_chart(counts: dict[str, int | None], ax: Axes | None = None) -> Figure:
    """A bar chart: round trips before the first protected byte, per way of submitting
    (None, for plaintext, is drawn as "never")."""
    fig, ax = axes_for(ax, (6, 3))
    names = list(counts)
    values = [counts[n] or 0 for n in names]
    colours = ["#b00020" if counts[n] is None else "#2f6f2f" for n in names]
    bars = ax.bar(names, values, color=colours)
    for bar, name in zip(bars, names, strict=True):
        label = "never protected" if counts[name] is None else str(counts[name])
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom")
    ax.set_ylabel("round trips")
    ax.set_ylim(0, max(values + [1]) * 1.3)
    ax.set_title("Round trips before the first protected byte")
    fig.tight_layout()
    return fig


# -- DMARC aggregate reports (notebooks/06-dmarc.ipynb) ------------------------------------

_DMARC_COLOURS = {"pass": "#2f6f2f", "fail": "#b00020", "none": "#888888"}


def spf_tree(result: SPFResult, ax: Axes | None = None) -> Figure:
    """An SPF evaluation's include/redirect chain as a tree: one box per record
    evaluated, coloured by its result, with the edge saying how it was reached."""
    import matplotlib.pyplot as plt

    from ..auth.spf import SPFNode
    from ..auth.spf_record import RESULT_COLOURS

    nodes = result.chain or (SPFNode(0, None, "check_host", None, result.domain, None,
                                   result.verdict),)
    children: dict[int | None, list[SPFNode]] = {}
    for node in nodes:
        children.setdefault(node.parent, []).append(node)
    position: dict[int, tuple[float, float]] = {}
    row = 0

    def place(node: SPFNode, depth: int) -> None:
        nonlocal row
        position[node.number] = (depth, -row)
        row += 1
        for child in children.get(node.number, []):
            place(child, depth + 1)

    for root in children.get(None, []):
        place(root, 0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(2.5 + 3.2 * max(x for x, _ in position.values()),
                                        0.9 + 0.8 * row))
    else:
        fig = ax.figure  # type: ignore[assignment]
    for node in nodes:
        x, y = position[node.number]
        if node.parent is not None:
            px, py = position[node.parent]
            ax.annotate("", xy=(x - 0.05, y), xytext=(px + 0.08, py - 0.3),
                        arrowprops={"arrowstyle": "->", "color": "#555",
                                    "connectionstyle": "angle,angleA=-90,angleB=180"})
            ax.text(x - 0.12, y + 0.12, node.via, fontsize=8, color="#555", ha="right")
        label = f"{node.domain}\n{node.result}"
        ax.text(x, y, label, ha="left", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.3",
                      "facecolor": RESULT_COLOURS.get(node.result, "#ddd"),
                      "alpha": 0.35, "edgecolor": RESULT_COLOURS.get(node.result, "#888")})
    ax.set_xlim(-0.3, max(x for x, _ in position.values()) + 1.6)
    ax.set_ylim(-row + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(result.title(), fontsize=10)
    return fig  # type: ignore[return-value]


def spf_lookup_budget(results: Mapping[str, SPFResult], ax: Axes | None = None) -> Figure:
    """How much of RFC 7208's two budgets (section 4.6.4) each check used: DNS-querying
    terms (at most 10) and void lookups (at most 2); a check over a limit is red."""
    import matplotlib.pyplot as plt

    from ..auth.spf_record import MAX_DNS_TERMS, MAX_VOID_LOOKUPS

    if ax is None:
        fig, (terms_ax, void_ax) = plt.subplots(1, 2, figsize=(10, 0.45 * len(results) + 1.5),
                                                sharey=True)
    else:
        fig, terms_ax = ax.figure, ax  # type: ignore[assignment]
        void_ax = ax.inset_axes((1.15, 0, 0.6, 1), sharey=ax)
    names = list(results)
    for where, attr, limit, what in ((terms_ax, "dns_terms", MAX_DNS_TERMS,
                                      "DNS-querying terms (limit 10)"),
                                     (void_ax, "void_lookups", MAX_VOID_LOOKUPS,
                                      "void lookups (limit 2)")):
        values = [getattr(results[n], attr) for n in names]
        # the check stops at the term over the limit, so the count shows the limit itself
        colours = ["#c44e52" if v > limit or (v == limit and results[n].verdict == "permerror")
                   else "#4c72b0" for v, n in zip(values, names, strict=True)]
        where.barh(names, values, color=colours)
        where.axvline(limit, color="#c44e52", ls="--", lw=1)
        where.set_xlim(0, max([limit, *values]) + 1.5)
        for y, value in enumerate(values):
            where.text(value + 0.1, y, str(value), va="center", fontsize=8)
        where.set_title(what, fontsize=9)
    terms_ax.invert_yaxis()
    terms_ax.set_yticks(range(len(names)), [f"{n}: {results[n].verdict}" for n in names])
    fig.suptitle("Each check's share of the lookup limits: over a limit is permerror",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _dmarc_rows(records: Any) -> list[tuple[float, str, str, str, int]]:
    """(time, source address, DMARC verdict, alignment, count) for each record: report
    records (:func:`labsupport.auth.dmarc_reports.report_records`), observations, MX-role
    evaluations, or whole reports (bytes or parsed)."""
    from ..auth.dmarc_reports import AggregateReport, ReportRecord, observations, report_records

    items = list(records)
    if any(isinstance(i, bytes | AggregateReport) for i in items):
        items = report_records(items)
    rows: list[tuple[float, str, str, str, int]] = []
    for item in items:
        if isinstance(item, ReportRecord):
            rows.append((item.time, item.source_ip, item.dmarc, item.alignment, item.count))
            continue
        for seen in observations([item]):
            dkim, spf = seen.dkim_aligned, seen.spf_aligned
            alignment = ("DKIM and SPF" if dkim and spf else "DKIM only" if dkim
                         else "SPF only" if spf else "neither")
            verdict = seen.dmarc if seen.dmarc in _DMARC_COLOURS else "fail"
            rows.append((seen.time, seen.source_ip, verdict, alignment, 1))
    return rows


def dmarc_over_time(records: Any, ax: Axes | None = None, buckets: int = 12) -> Figure:
    """Stacked bars: messages that passed and failed DMARC over time (from report
    records, or the MX role's evaluations), in ``buckets`` equal periods."""
    from datetime import UTC, datetime

    rows = _dmarc_rows(records)
    fig, ax = axes_for(ax, (7, 3))
    if not rows:
        ax.set_title("DMARC over time: no messages")
        return fig
    start = min(r[0] for r in rows)
    span = max(max(r[0] for r in rows) - start, 1.0)
    width = span / buckets
    counts = {v: [0] * buckets for v in _DMARC_COLOURS}
    for time, _ip, verdict, _alignment, count in rows:
        index = min(int((time - start) / width), buckets - 1)
        counts.setdefault(verdict, [0] * buckets)[index] += count
    bottom = [0] * buckets
    lefts = list(range(buckets))
    for verdict, values in counts.items():
        if any(values):
            ax.bar(lefts, values, bottom=bottom, label=f"DMARC {verdict}",
                   color=_DMARC_COLOURS.get(verdict, "#4c72b0"))
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    labels = [datetime.fromtimestamp(start + i * width, tz=UTC).strftime("%m-%d %H:%M")
              for i in lefts]
    ax.set_xticks(lefts, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("messages")
    ax.set_title("DMARC results over time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def dmarc_by_source(records: Any, ax: Axes | None = None) -> Figure:
    """Horizontal stacked bars: for each sending address, how many messages passed and
    failed DMARC (where a forgotten sender or a spoofer shows up)."""
    rows = _dmarc_rows(records)
    fig, ax = axes_for(ax, (7, 3))
    totals: Counter[str] = Counter()
    by: dict[str, Counter[str]] = {}
    for _time, ip, verdict, _alignment, count in rows:
        totals[ip] += count
        by.setdefault(verdict, Counter())[ip] += count
    sources = [ip for ip, _ in totals.most_common()][::-1]
    left = [0] * len(sources)
    for verdict in _DMARC_COLOURS:
        values = [by.get(verdict, Counter())[ip] for ip in sources]
        if any(values):
            ax.barh(sources, values, left=left, label=f"DMARC {verdict}",
                    color=_DMARC_COLOURS[verdict])
            left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("messages")
    ax.set_title("DMARC results by source address")
    if sources:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def dmarc_by_alignment(records: Any, ax: Axes | None = None) -> Figure:
    """A bar chart: messages by which aligned identifier passed (DKIM and SPF, DKIM
    only, SPF only, neither)."""
    rows = _dmarc_rows(records)
    fig, ax = axes_for(ax, (6, 3))
    order = ["DKIM and SPF", "DKIM only", "SPF only", "neither"]
    counts: Counter[str] = Counter()
    for _time, _ip, _verdict, alignment, count in rows:
        counts[alignment] += count
    colours = ["#2f6f2f", "#6f9f2f", "#9f9f2f", "#b00020"]
    bars = ax.bar(order, [counts[o] for o in order], color=colours)
    for bar, name in zip(bars, order, strict=True):
        ax.annotate(str(counts[name]), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom")
    ax.set_ylabel("messages")
    ax.set_title("Which aligned identifier passed")
    fig.tight_layout()
    return fig


def troubleshooting_journey(ax: Axes | None = None) -> Figure:
    """The stages a message passes, left to right, with each ticket of the troubleshooting
    lab (:mod:`labsupport.teach.troubleshoot`) under the stage where its fault sits.
    Introduced in ``notebooks/08-troubleshooting.ipynb``."""
    from matplotlib.patches import FancyBboxPatch

    from .troubleshoot import JOURNEY, ticket

    fig, ax = axes_for(ax, (12, 3.4))
    width, gap = 1.5, 0.45
    for index, (stage, numbers) in enumerate(JOURNEY):
        x = index * (width + gap)
        broken = bool(numbers)
        ax.add_patch(FancyBboxPatch((x, 1.0), width, 0.9, boxstyle="round,pad=0.05",
                                    facecolor="#fbe3e6" if broken else "#e6f2e6",
                                    edgecolor="#b00020" if broken else "#2f6f2f"))
        ax.text(x + width / 2, 1.45, stage, ha="center", va="center", fontsize=9)
        if index + 1 < len(JOURNEY):
            ax.annotate("", xy=(x + width + gap - 0.02, 1.45), xytext=(x + width + 0.07, 1.45),
                        arrowprops={"arrowstyle": "->", "color": "#555"})
        for row, number in enumerate(numbers):
            item = ticket(number)
            ax.text(x + width / 2, 0.7 - 0.45 * row, f"#{number}\n{item.domain}",
                    ha="center", va="center", fontsize=8, color="#b00020")
    ax.set_xlim(-0.2, len(JOURNEY) * (width + gap))
    ax.set_ylim(-0.4, 2.1)
    ax.axis("off")
    ax.set_title("Where each ticket's fault sits on a message's way", fontsize=11)
    return fig
