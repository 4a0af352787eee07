"""The SMTP and TLS explorers of the notebooks (ipywidgets), imported only when used.

Holds the SMTP console and the mailbox viewer of ``notebooks/02-smtp-dialogue.ipynb``
(with the protocols they need of the lab's mail store, and the helpers that render a
message's Received chain and Authentication-Results), and the TLS submission panel of
``notebooks/03-starttls-vs-implicit-tls.ipynb``. Re-exported by
:mod:`labsupport.teach.widgets`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from ..core.results import html_table

# -- SMTP (notebooks/02-smtp-dialogue.ipynb) ----------------------------------------------


class StoredMessageLike(Protocol):
    """What the mailbox viewer needs of a stored message (labsupport.mail.mailstore)."""

    @property
    def raw(self) -> bytes: ...

    @property
    def message(self) -> EmailMessage: ...


class MailStoreLike(Protocol):
    """What the mailbox viewer needs of a mail store (labsupport.mail.mailstore.MailStore)."""

    def addresses(self) -> list[str]: ...

    def folders(self, address: str) -> list[str]: ...

    def messages(self, address: str, folder: str = "INBOX") -> Sequence[StoredMessageLike]: ...


_CONSOLE_HELP = (
    "Type a command and press Enter: EHLO client.lab.test, MAIL FROM:&lt;you@...&gt;, "
    "RCPT TO:&lt;...&gt;, DATA, QUIT. After DATA's 354 the server reads the message until "
    "a line holding a single <code>.</code>"
)


def smtp_console(host: str, port: int, *, ca_file: str | Path | None = None,
                 implicit_tls: bool = False, verify: bool = True,
                 server_hostname: str | None = None, timeout: float = 10.0) -> Any:
    """An SMTP console: type a command, press Enter, and watch the dialogue grow.

    The connection opens at once (its banner is the first reply). Typing ``STARTTLS``
    (or the STARTTLS button) starts TLS for real, verified against ``ca_file``. After
    DATA's 354 a box appears for the message: headers, an empty line, the body, and a
    line holding a single ``.`` (sent exactly as typed, so dot-stuffing is yours to do).
    Reset closes the connection and opens a new one. Errors (a refused connection, a
    timeout, a certificate that does not verify) are shown as sentences.

    The panel has ``submit(text)``, ``send_message(text)``, ``session()`` and
    ``transcript()`` for notebooks and tests.
    """
    import ipywidgets as w

    from ..mail.smtp import Reply, SMTPClientError, SMTPSession

    entry = w.Text(placeholder="EHLO client.lab.test", continuous_update=False,
                   description="Command:", layout=w.Layout(width="520px"))
    starttls_button = w.Button(description="STARTTLS", icon="lock",
                               tooltip="start TLS on this connection (RFC 3207)")
    reset_button = w.Button(description="Reset", icon="refresh",
                            tooltip="close this connection and open a new one")
    message_box = w.Textarea(placeholder="Subject: hello\n\nHi!\n.",
                             layout=w.Layout(width="520px", height="140px", display="none"))
    send_button = w.Button(description="Send lines", icon="paper-plane",
                           layout=w.Layout(display="none"),
                           tooltip="send these lines as typed; a line with a single '.' ends "
                                   "the message")
    status = w.HTML()
    view = w.HTML()
    state: dict[str, Any] = {"session": None}

    def session() -> SMTPSession:
        current: SMTPSession = state["session"]
        return current

    def say(text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#555"
        status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def show() -> None:
        current = session()
        view.value = current.transcript._repr_html_()
        data_mode = current.in_data
        message_box.layout.display = "" if data_mode else "none"
        send_button.layout.display = "" if data_mode else "none"
        starttls_button.disabled = not current.connected or current.tls_active or data_mode
        if data_mode:
            say("The server is reading the message: type it below (headers, an empty line, "
                "the body) and end with a line holding a single '.'.")
        elif current.connected:
            say(f"Connected to {host}:{port}{' over TLS' if current.tls_active else ''}. "
                "Type a command and press Enter.")
        else:
            say("The connection is closed; press Reset to open a new one.")

    def run(action: Any) -> Reply | None:
        try:
            reply: Reply | None = action()
        except SMTPClientError as exc:
            show()
            say(str(exc), error=True)
            return None
        show()
        return reply

    def connect() -> None:
        state["session"] = SMTPSession(host, port, implicit_tls=implicit_tls, ca_file=ca_file,
                                       verify=verify, server_hostname=server_hostname,
                                       timeout=timeout)
        run(session().connect)

    def submit(text: str) -> Reply | None:
        text = text.rstrip("\r\n")
        current = session()
        if current.in_data:
            return run(lambda: current.data_line(text))
        if not text.strip():
            return None
        if not current.connected:
            show()
            return None
        if text.strip().upper() == "STARTTLS":
            return run(current.starttls)
        return run(lambda: current.send(text))

    def send_message(text: str) -> Reply | None:
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        reply: Reply | None = None
        for line in lines:
            if not session().in_data:
                break
            reply = submit(line)
        if not session().in_data:
            message_box.value = ""
        return reply

    def on_entry(change: dict[str, Any]) -> None:
        if change["new"]:
            text = change["new"]
            entry.value = ""
            submit(text)

    entry.observe(on_entry, names="value")
    starttls_button.on_click(lambda _b: submit("STARTTLS"))
    def reset(*_args: Any) -> None:
        session().close()
        connect()

    reset_button.on_click(reset)
    send_button.on_click(lambda _b: send_message(message_box.value))
    connect()
    panel = w.VBox([
        w.HTML(f'<div style="font-size:90%;color:#555">{_CONSOLE_HELP}</div>'),
        w.HBox([entry, starttls_button, reset_button]),
        w.HBox([message_box, send_button]),
        status,
        view,
    ])
    panel.submit = submit  # type: ignore[attr-defined]
    panel.send_message = send_message  # type: ignore[attr-defined]
    panel.session = session  # type: ignore[attr-defined]
    panel.transcript = lambda: session().transcript  # type: ignore[attr-defined]
    return panel


def _message_label(index: int, stored: StoredMessageLike) -> str:
    msg = stored.message
    subject = str(msg.get("Subject", "(no subject)"))
    sender = str(msg.get("From", "(no From)"))
    date = str(msg.get("Date", ""))
    return f"{index + 1}. {date[:25]}  {sender[:30]}  {subject[:50]}"


def _received_html(msg: EmailMessage) -> str:
    from ..mail.received import received_chain
    from ..mail.replycodes import RFC_TRACE

    hops = received_chain(msg)
    if not hops:
        return "<p>This message has no Received header fields.</p>"
    rows: list[list[object]] = []
    previous = None
    for hop in hops:
        delay = ""
        if hop.date is not None and previous is not None:
            try:
                delay = f"{(hop.date - previous).total_seconds():+.0f} s"
            except TypeError:  # one date with a zone, one without
                delay = ""
        previous = hop.date or previous
        client = hop.from_ or "-"
        if hop.from_info:
            client += f" ({hop.from_info})"
        rows.append([hop.number, client, hop.by or "-",
                     f"{hop.with_}: {hop.protocol}" if hop.protocol else (hop.with_ or "-"),
                     hop.date.isoformat() if hop.date else (hop.date_text or "-"), delay])
    note = (f"<p style='color:#555;font-size:90%'>Read from the bottom field up: each server "
            f"adds its Received field on top ({html.escape(RFC_TRACE)}), so hop 1 is where "
            "the message entered the mail system.</p>")
    return note + html_table(["hop", "from (client said, and what the server saw)", "by",
                              "with", "time", "after the hop before"], rows)


def _auth_results_html(msg: EmailMessage) -> str:
    values = msg.get_all("Authentication-Results") or []
    if not values:
        return ("<p>No Authentication-Results field: the receiving server adds one when "
                "it checks SPF, DKIM and DMARC (later lessons).</p>")
    return "".join(f"<pre style='white-space:pre-wrap'>{html.escape(str(v))}</pre>"
                   for v in values)


def mailbox_viewer(store: MailStoreLike, address: str | None = None) -> Any:
    """A lab mailbox: pick an address and a folder, then a message, and read its header
    fields, its Received chain hop by hop (first hop first), its Authentication-Results
    and its raw source. Refresh picks up mail that arrived since.

    ``store`` is the lab's mail store (``lab.mail``). The panel has ``refresh()``,
    ``select(index)`` and ``selected()`` for notebooks and tests.
    """
    import ipywidgets as w

    addresses = sorted(store.addresses())
    if address is not None and address not in addresses:
        addresses.append(address)
    address_box = w.Dropdown(options=addresses, value=address or (addresses[0] if addresses
                                                                    else None),
                             description="Mailbox:", layout=w.Layout(width="360px"))
    folder_box = w.Dropdown(options=["INBOX"], value="INBOX", description="Folder:")
    refresh_button = w.Button(description="Refresh", icon="refresh")
    message_list = w.Select(options=[], rows=6, layout=w.Layout(width="95%"))
    headers_view, received_view, auth_view, raw_view = (w.HTML() for _ in range(4))
    tabs = w.Tab(children=[headers_view, received_view, auth_view, raw_view])
    tabs.titles = ("Header fields", "Received chain", "Authentication-Results", "Raw source")
    state: dict[str, Any] = {"messages": [], "quiet": False}

    def show_message(*_args: Any) -> None:
        index = message_list.value
        stored: StoredMessageLike | None = (
            state["messages"][index] if index is not None and index < len(state["messages"])
            else None)
        state["selected"] = stored
        if stored is None:
            for view in (headers_view, received_view, auth_view, raw_view):
                view.value = "<p>No message selected.</p>"
            return
        msg = stored.message
        headers_view.value = html_table(["field", "value"],
                                        [[name, str(value)] for name, value in msg.items()])
        received_view.value = _received_html(msg)
        auth_view.value = _auth_results_html(msg)
        raw = stored.raw.decode("utf-8", errors="replace")
        raw_view.value = (f"<pre style='white-space:pre-wrap;font-size:85%'>"
                          f"{html.escape(raw)}</pre>")

    def quietly(change: Any) -> None:
        """Set widget values without their observers firing (they reload by hand)."""
        state["quiet"] = True
        try:
            change()
        finally:
            state["quiet"] = False

    def load_messages(*_args: Any) -> None:
        address, folder = address_box.value, folder_box.value
        state["messages"] = list(store.messages(address, folder)) if address else []
        options = [(_message_label(i, m), i) for i, m in enumerate(state["messages"])]

        def update() -> None:
            message_list.options = options
            message_list.value = 0 if options else None

        quietly(update)
        show_message()

    def load_folders(*_args: Any, keep: str | None = None) -> None:
        found = list(store.folders(address_box.value)) if address_box.value else []
        folders = ["INBOX", *(f for f in found if f != "INBOX")]
        keep = keep or folder_box.value
        value = keep if keep in folders else "INBOX"

        def update() -> None:
            folder_box.options = folders
            folder_box.value = value

        quietly(update)
        load_messages()

    def refresh(*_args: Any) -> None:
        address, folder = address_box.value, folder_box.value
        options = sorted(set(store.addresses()) | ({address} if address else set()))

        def update() -> None:
            address_box.options = options
            address_box.value = address if address in options else (
                options[0] if options else None)

        quietly(update)
        load_folders(keep=folder)

    def unless_quiet(action: Any) -> Any:
        return lambda change: None if state.get("quiet") else action()

    def select(index: int) -> None:
        message_list.value = index

    address_box.observe(unless_quiet(load_folders), names="value")
    folder_box.observe(unless_quiet(load_messages), names="value")
    message_list.observe(unless_quiet(show_message), names="value")
    refresh_button.on_click(refresh)
    load_folders()
    panel = w.VBox([w.HBox([address_box, folder_box, refresh_button]), message_list, tabs])
    panel.refresh = refresh  # type: ignore[attr-defined]
    panel.select = select  # type: ignore[attr-defined]
    panel.selected = lambda: state.get("selected")  # type: ignore[attr-defined]
    return panel


# -- TLS and captures (notebooks/03-starttls-vs-implicit-tls.ipynb) -----------------------


def tls_panel(lab: Any, *, capture_mode: str = "auto") -> Any:
    """Pick how to submit (plain, STARTTLS, implicit TLS), whether the client requires TLS,
    and whether an attacker sits in the middle; Run shows the verdict ("password exposed:
    yes/no"), the client's transcript and the capture's summary.

    The panel has ``run()`` and ``scenario()`` for notebooks and tests.
    """
    import ipywidgets as w

    from ..mail.mitm import run_scenario

    mode = w.Dropdown(options=[("plain (legacy role)", "plain"), ("STARTTLS", "starttls"),
                               ("implicit TLS", "implicit")], value="starttls",
                      description="Mode:")
    required = w.Checkbox(value=False, description="client requires TLS")
    attacker = w.ToggleButton(value=False, description="attacker in the middle",
                              icon="user-secret")
    button = w.Button(description="Run", icon="play")
    verdict = w.HTML()
    transcript = w.HTML()
    summary = w.HTML()
    state: dict[str, Any] = {"scenario": None}

    def run(*_args: Any) -> Any:
        scenario = run_scenario(lab, mode.value, require_tls=required.value,
                                attacker=attacker.value, capture_mode=capture_mode)
        state["scenario"] = scenario
        colour = "#b00020" if scenario.password_exposed else "#2f6f2f"
        verdict.value = (f'<div style="font-size:120%;color:{colour}"><b>password exposed: '
                         f'{"yes" if scenario.password_exposed else "no"}</b></div>'
                         f"<div>{html.escape(scenario.title())}</div>"
                         f"<div>{html.escape(scenario.summary)}</div>")
        transcript.value = scenario.transcript._repr_html_()
        summary.value = scenario.capture.summary()._repr_html_()
        return scenario

    button.on_click(run)
    panel = w.VBox([w.HBox([mode, required, attacker, button]), verdict,
                    w.HBox([transcript, summary])])
    panel.run = run  # type: ignore[attr-defined]
    panel.scenario = lambda: state["scenario"]  # type: ignore[attr-defined]
    return panel
