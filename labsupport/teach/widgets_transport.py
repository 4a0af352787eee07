"""The defence explorer of ``notebooks/09-transport-security.ipynb`` (ipywidgets), imported
only when used. Re-exported by :mod:`labsupport.teach.widgets`.

Pick what the recipient domain publishes (no defence, MTA-STS in testing or enforce mode,
DANE) and whether the downgrade relay of notebook 03 sits on the path: the panel sends
one real message from a delivering MTA of its own
(:func:`labsupport.teach.checks_transport.try_delivery`) and shows what it decided, host
by host, with its whole trace. Presentation only.
"""

from __future__ import annotations

import html
from typing import Any

from .checks_transport import DEFENCE_CASES, try_delivery
from .widgets_core import field_setter

_COLOURS = {"protected": "#2f6f2f", "reported": "#9f6f00", "exposed": "#b00020"}


def defence_explorer(lab: Any, case: str = "DANE", relay: bool = True) -> Any:
    """Choose a case of :data:`~labsupport.teach.checks_transport.DEFENCE_CASES` and the
    path; see the delivering MTA's decision and its trace.

    ``lab`` is the running lab. Each change sends one message (into the lab's mailboxes
    when it is delivered; ``lab.reset()`` empties them). The panel has ``set(case=...,
    relay=...)``, ``result()`` (the latest
    :class:`~labsupport.teach.checks_transport.DefenceRun`) and ``controls``.
    """
    import ipywidgets as w

    controls = {
        "case": w.Dropdown(options=list(DEFENCE_CASES), value=case,
                           description="Domain:", layout=w.Layout(width="300px")),
        "relay": w.Checkbox(value=relay, description="the attacker relays (strips STARTTLS)"),
    }
    verdict = w.HTML()
    detail = w.HTML()
    state: dict[str, Any] = {"result": None, "quiet": False}

    def show(*_args: Any) -> None:
        if state["quiet"]:
            return
        run = try_delivery(lab, controls["case"].value, relay=controls["relay"].value)
        state["result"] = run
        kind = run.exposure
        recipient, _mode = DEFENCE_CASES[run.case]
        found = (f"MTA-STS: {run.sts}, DANE: {run.dane}"
                 + (", STARTTLS stripped by the relay" if run.stripped else ""))
        verdict.value = (f'<div style="font-size:120%;color:{_COLOURS[kind]}"><b>'
                         f"{html.escape(run.verdict)}</b></div>"
                         f"<div>to {html.escape(recipient)}: {html.escape(run.summary)}</div>"
                         f'<div style="color:#555">{html.escape(found)}</div>')
        detail.value = run._repr_html_()

    set_values = field_setter(controls, state, show)

    for control in controls.values():
        control.observe(show, names="value")
    show()
    panel = w.VBox([w.HBox([controls["case"], controls["relay"]]), verdict, detail])
    panel.set = set_values  # type: ignore[attr-defined]
    panel.result = lambda: state["result"]  # type: ignore[attr-defined]
    panel.controls = controls  # type: ignore[attr-defined]
    return panel


__all__ = ["defence_explorer"]
