"""The troubleshooting explorers of the notebooks (ipywidgets), imported only when used.

Holds the providers' client settings explorer and the reply decoder of
``notebooks/08-troubleshooting.ipynb``. Re-exported by :mod:`labsupport.teach.widgets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .providers import ProviderTable


def provider_explorer(table: ProviderTable | None = None) -> Any:
    """Public providers' client settings (:mod:`labsupport.teach.providers`): pick a provider
    and a service to see its settings explained; try a port and TLS mode to see whether
    they belong together. Introduced in ``notebooks/08-troubleshooting.ipynb``.

    The panel's ``controls`` are the ``provider``, ``service``, ``port`` and ``tls``
    dropdowns; its ``views`` are the ``settings`` and ``pairing`` HTML widgets.
    """
    import ipywidgets as w

    from .providers import STARTTLS, TLS_MODES, load, pairing_html, settings_html

    table = table if table is not None else load()
    names = table.providers()
    provider = w.Dropdown(options=names, value=names[0], description="provider")
    service = w.Dropdown(options=["submission", "imap"], value="submission",
                         description="service")
    settings = w.HTML()
    port = w.Dropdown(options=[25, 465, 587, 143, 993], value=587, description="port")
    tls = w.Dropdown(options=list(TLS_MODES), value=STARTTLS, description="TLS mode")
    verdict = w.HTML()

    def show_settings(_: Any = None) -> None:
        settings.value = settings_html(table, provider.value, service.value)

    def show_pairing(_: Any = None) -> None:
        verdict.value = pairing_html(port.value, tls.value, service.value)

    provider.observe(show_settings, names="value")
    service.observe(show_settings, names="value")
    service.observe(show_pairing, names="value")
    port.observe(show_pairing, names="value")
    tls.observe(show_pairing, names="value")
    show_settings()
    show_pairing()
    panel = w.VBox([w.HBox([provider, service]), settings,
                    w.HTML("<b>Try a pair:</b> does this port go with this TLS mode?"),
                    w.HBox([port, tls]), verdict])
    panel.controls = {"provider": provider, "service": service,  # type: ignore[attr-defined]
                      "port": port, "tls": tls}
    panel.views = {"settings": settings, "pairing": verdict}  # type: ignore[attr-defined]
    return panel


def reply_decoder(initial: str | None = None) -> Any:
    """The reply decoder (:mod:`labsupport.mail.replycodes`): type or paste a reply (or pick an
    example) and read it decoded. Introduced in ``notebooks/08-troubleshooting.ipynb``.

    Returns the ipywidgets panel; ``panel.decoded()`` gives the last :class:`Decoded` (or
    None when the text held no reply).
    """
    import ipywidgets as w

    from ..mail.replycodes import EXAMPLES, Decoded, ReplyCodeError, decode, decoded_html

    if initial is None:
        initial = EXAMPLES[1][1]
    box = w.Textarea(value=initial, placeholder="paste a reply, e.g. 550 5.1.1 no such user",
                     description="Reply:", continuous_update=False,
                     layout=w.Layout(width="70%", height="4em"))
    pick = w.Dropdown(options=[("examples…", "")] + [(label, line) for label, line in EXAMPLES],
                      value="", description="Try:", layout=w.Layout(width="28%"))
    view = w.HTML()
    state: dict[str, Decoded | None] = {"decoded": None}

    def show(*_args: Any) -> None:
        try:
            state["decoded"] = decode(box.value)
        except ReplyCodeError:
            state["decoded"] = None
        view.value = decoded_html(box.value)

    def picked(change: dict[str, Any]) -> None:
        if change["new"]:
            box.value = change["new"]

    box.observe(show, names="value")
    pick.observe(picked, names="value")
    show()
    panel = w.VBox([w.HBox([box, pick]), view])
    panel.decoded = lambda: state["decoded"]  # type: ignore[attr-defined]
    return panel
