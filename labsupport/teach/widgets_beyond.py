"""The explorer of lesson 10 (``notebooks/10-after-dmarc.ipynb``, ipywidgets): a console
that sends one fake end of data, with a smuggled second message after it, to a server
you pick, and shows the octets, the dialogue, the verdict and what was stored.
Re-exported by :mod:`labsupport.teach.widgets`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from ..mail.smuggling import VARIANTS, variant


def smuggling_console(servers: Mapping[str, tuple[str, int, Any]], chosen: str = "LF.CRLF",
                      server: str | None = None, *, settle: float = 0.1) -> Any:
    """Pick a fake end of data and a server: the console sends it with a smuggled second
    message (:func:`labsupport.mail.smuggling.send_variant`) and shows what happened.

    ``servers`` maps a label to ``(host, port, store)``, ``store`` counting the
    messages kept there (``lab.mail`` for the lab's MX role, a
    :class:`~labsupport.teach.checks_beyond.LenientServer` itself). ``settle`` is how long
    to wait for replies a lenient server adds. The panel has ``result()`` (the
    :class:`~labsupport.mail.smuggling.SmugglingResult` of the last send), ``set(chosen=,
    server=)`` (send again, return the result) and ``controls``.
    """
    import ipywidgets as w

    from ..mail.smuggling import send_variant

    if not servers:
        raise ValueError("give at least one server: {label: (host, port, store)}")
    pick = w.Dropdown(options=[(f"{v.name}   {v.shown}", v.name) for v in VARIANTS],
                      value=variant(chosen).name, description="Fake end:",
                      layout=w.Layout(width="300px"))
    target = w.Dropdown(options=list(servers), value=server or next(iter(servers)),
                        description="Server:", layout=w.Layout(width="360px"))
    again = w.Button(description="send again", icon="paper-plane")
    verdict = w.HTML()
    details = w.HTML()
    state: dict[str, Any] = {"result": None}

    def show(*_args: Any) -> None:
        host, port, store = servers[target.value]
        result = send_variant(host, port, pick.value, store=store, follow_up=False,
                              settle=settle)
        state["result"] = result
        colour = {"refused": "#2f6f2f", "smuggled": "#b00020"}.get(result.verdict, "#8a5a00")
        stored = "?" if result.stored is None else str(result.stored)
        extra = "; ".join(r.first_line for r in result.extra_replies) or "none"
        verdict.value = (
            f"<div><b style='color:{colour}'>{html.escape(result.verdict)}</b>: "
            f"{html.escape(result.summary)}</div>"
            f"<div>octets in place of &lt;CR&gt;&lt;LF&gt;.&lt;CR&gt;&lt;LF&gt;: "
            f"<code>{html.escape(result.variant.shown)}</code> "
            f"(<code>{html.escape(repr(result.variant.ending))}</code>)</div>"
            f"<div>reply: <code>{html.escape(result.reply.first_line if result.reply else '-')}"
            f"</code>; replies to smuggled commands: {html.escape(extra)}; messages stored "
            f"by this attempt: <b>{stored}</b></div>")
        details.value = ("<details><summary>the dialogue</summary><pre style='font-size:85%'>"
                         + html.escape(result.dialogue()) + "</pre></details>")

    def set_values(chosen: str | None = None, server: str | None = None) -> Any:
        quiet = [pick, target]
        for each in quiet:
            each.unobserve(show, names="value")
        try:
            if chosen is not None:
                pick.value = variant(chosen).name
            if server is not None:
                if server not in servers:
                    raise ValueError(f"no server {server!r}; the servers are "
                                     + ", ".join(servers))
                target.value = server
        finally:
            for each in quiet:
                each.observe(show, names="value")
        show()
        return state["result"]

    pick.observe(show, names="value")
    target.observe(show, names="value")
    again.on_click(show)
    show()
    panel = w.VBox([w.HBox([pick, target, again]), verdict, details])
    panel.result = lambda: state["result"]  # type: ignore[attr-defined]
    panel.set = set_values  # type: ignore[attr-defined]
    panel.controls = {"chosen": pick, "server": target, "again": again}  # type: ignore[attr-defined]
    return panel


__all__ = ["smuggling_console"]
