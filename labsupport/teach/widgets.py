"""Interactive explorers for the notebooks (ipywidgets), imported only when used.

Presentation only: each explorer calls the protocol modules and shows their results.

Introduced in ``notebooks/01-dns-mx.ipynb``.

The MX explorer of that notebook is here; the others live in parts, all re-exported here:
:mod:`labsupport.teach.widgets_smtp` (the SMTP console and mailbox viewer of notebook 02,
the TLS submission panel of notebook 03), :mod:`labsupport.teach.widgets_transport` (the
defence explorer of notebook 09), :mod:`labsupport.teach.widgets_auth` (the SPF,
DKIM and DMARC alignment explorers of notebooks 04 to 06) and
:mod:`labsupport.teach.widgets_troubleshoot` (the provider settings explorer and the
reply decoder of notebook 08).
Also :mod:`labsupport.teach.widgets_beyond` (the SMTP smuggling console of notebook 10).
"""

from __future__ import annotations

import random
from typing import Any

from ..dns.mx import ResolverLike, mx_hosts
from .widgets_auth import alignment_explorer as alignment_explorer
from .widgets_auth import dkim_explorer as dkim_explorer
from .widgets_auth import spf_explorer as spf_explorer
from .widgets_beyond import smuggling_console as smuggling_console
from .widgets_smtp import MailStoreLike as MailStoreLike
from .widgets_smtp import StoredMessageLike as StoredMessageLike
from .widgets_smtp import mailbox_viewer as mailbox_viewer
from .widgets_smtp import smtp_console as smtp_console
from .widgets_smtp import tls_panel as tls_panel
from .widgets_transport import defence_explorer as defence_explorer
from .widgets_troubleshoot import provider_explorer as provider_explorer
from .widgets_troubleshoot import reply_decoder as reply_decoder


def mx_explorer(resolver: ResolverLike, domains: list[str], value: str | None = None) -> Any:
    """Pick or type a domain: see its MX set, the order a sender would try, and why.

    ``resolver`` is the lab's (``lab.resolver``) or any with dnspython's contract.
    The "pick again" button draws a new random order among hosts of equal preference.
    """
    import ipywidgets as w
    from IPython.display import HTML, display

    box = w.Combobox(
        value=value or (domains[0] if domains else ""),
        options=list(domains),
        placeholder="type or pick a domain",
        description="Domain:",
        ensure_option=False,
        continuous_update=False,
        layout=w.Layout(width="360px"),
    )
    again = w.Button(description="pick again", tooltip="a new random order among equal "
                     "preferences", icon="random")
    trace = w.Checkbox(value=True, description="show the trace")
    out = w.Output()
    rng = random.Random(0)
    state: dict[str, Any] = {"result": None}

    def show(*_args: Any) -> None:
        result = mx_hosts(box.value, resolver, rng=rng)
        state["result"] = result
        out.clear_output(wait=True)
        with out:
            page = result._repr_html_()
            if not trace.value:
                page = page.split('<div style="margin-top:4px">')[0] + "</div>"
            display(HTML(page))

    box.observe(show, names="value")
    trace.observe(show, names="value")
    again.on_click(show)
    show()
    panel = w.VBox([w.HBox([box, again, trace]), out])
    panel.result = lambda: state["result"]  # type: ignore[attr-defined]
    return panel
