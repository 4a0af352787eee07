"""Interactive explorers for the notebooks (ipywidgets), imported only when used.

Presentation only: each explorer calls the protocol modules and shows their results.

Introduced in ``notebooks/01-dns-mx.ipynb``.
"""

from __future__ import annotations

import html
import random
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..core.results import html_table
from ..dns.mx import ResolverLike, mx_hosts

if TYPE_CHECKING:
    from .providers import ProviderTable


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


# -- DKIM (notebooks/05-dkim.ipynb) -------------------------------------------------------

_DKIM_SAMPLE = (
    "From: Alice Adams <alice@northwind.test>\n"
    "To: Bob <bob@northwind.test>\n"
    "Subject: Quarterly figures\n"
    "Date: Sat, 28 Nov 2026 10:00:00 +0000\n"
    "Message-ID: <explorer@northwind.test>\n"
    "\n"
    "Hi Bob,\n"
    "the figures are attached.\n"
)


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def dkim_explorer(resolver: ResolverLike, message: str | None = None, *,
                  key: Any = None) -> Any:
    """Sign a message, change it on its way, and watch DKIM verification react.

    The upper box is the message as the signer sends it; it is signed with ``key``
    (by default Northwind's lab key, ``lab2026-rsa``) using the canonicalization and
    signed header fields picked above it. The lower box is the message as it arrives:
    edit it (a word, a space, a folded line, a footer) and the signature made over the
    original is checked against it with ``resolver`` (``lab.zones`` or
    ``lab.resolver``). Shown: the DKIM-Signature, the body hash signed and the one
    computed on arrival, the header data that is hashed (white space made visible), and
    the verdict with its reason.

    The panel has ``result()`` (the :class:`~labsupport.auth.dkim.DKIMVerification`),
    ``signing()`` (the :class:`~labsupport.auth.dkim.DKIMSigning`) and ``controls`` (the
    widgets by name: ``sent``, ``received``, ``header_c``, ``body_c``, ``headers``,
    ``oversign``) for notebooks and tests.
    """
    import ipywidgets as w

    from ..auth.dkim import sign_traced, verify
    from ..auth.dkim_canon import parse_message, show_whitespace
    from ..auth.dkim_keys import lab_key

    key = key if key is not None else lab_key("northwind.test")
    if not key.domain or not key.selector:
        raise ValueError("the key must say where it is published: use key.at(domain, selector)")
    text = message if message is not None else _DKIM_SAMPLE
    text = text.replace("\r\n", "\n")

    def names_in(raw: str) -> list[str]:
        found = [h.name.decode("ascii", "replace").lower()
                 for h in parse_message(_crlf(raw)).headers]
        return list(dict.fromkeys(found))

    wide = w.Layout(width="640px", height="170px")
    sent = w.Textarea(value=text, description="Sent:", continuous_update=False, layout=wide)
    received = w.Textarea(value=text, description="Received:", continuous_update=False,
                          layout=wide)
    header_c = w.ToggleButtons(options=["simple", "relaxed"], value="relaxed",
                               description="Header c=")
    body_c = w.ToggleButtons(options=["simple", "relaxed"], value="relaxed",
                             description="Body c=")
    present = names_in(text)
    headers = w.SelectMultiple(options=present, value=tuple(present), rows=min(6, len(present)),
                               description="Sign (h=):")
    oversign = w.Checkbox(value=True, description="oversign From (one extra 'from' in h=)")
    reset_button = w.Button(description="received = sent", icon="undo",
                            tooltip="undo the changes made on the way")
    verdict_box = w.HTML()
    detail = w.HTML()
    state: dict[str, Any] = {"signing": None, "result": None}

    def block(title: str, body: str) -> str:
        return (f"<div><b>{html.escape(title)}</b><pre style='margin:2px 0 6px 0;padding:2px "
                f"6px;background:#f4f4f4;font-size:85%'>{html.escape(body)}</pre></div>")

    def update(*_args: Any) -> None:
        order = [n for n in headers.options if n in headers.value]
        signing = sign_traced(_crlf(sent.value), domain=key.domain, selector=key.selector,
                              private_key=key, canonicalization=(header_c.value, body_c.value),
                              headers=order, oversign=("from",) if oversign.value else (),
                              trace=False)
        state["signing"] = signing
        if signing.signature_field is None:
            state["result"] = None
            verdict_box.value = (f"<b style='color:#b00020'>not signed</b>: "
                                 f"{html.escape(signing.summary)}")
            detail.value = ""
            return
        result = verify(signing.signature_field + _crlf(received.value), resolver)
        state["result"] = result
        sig = result.signatures[0]
        colour = "#2f6f2f" if sig.passed else "#b00020"
        verdict_box.value = (f"<b style='color:{colour}'>dkim={html.escape(sig.verdict)}</b>: "
                             f"{html.escape(sig.summary)}")
        same = sig.body_hash == signing.body_hash
        rows: list[list[object]] = [
            ["body hash signed (bh=)", signing.body_hash or "-"],
            ["body hash on arrival", sig.body_hash or "-"],
            ["body hashes", "match" if same else "differ"],
        ]
        parts = [html_table(["", ""], rows),
                 block("DKIM-Signature added by the signer",
                       signing.signature_field.decode("utf-8", "replace").rstrip("\r\n")
                       .replace("\r\n", "\n")),
                 block(f"Body as hashed on arrival ({body_c.value})",
                       show_whitespace(sig.canonical_body or b"", max_lines=16)),
                 block(f"Header data hashed on arrival ({header_c.value}; the input of the "
                       "header hash that b= signs)",
                       show_whitespace(sig.canonical_headers or b"(not reached)")),
                 block("Header data the signer hashed",
                       show_whitespace(signing.canonical_headers or b""))]
        detail.value = "".join(parts)

    def sent_changed(*_args: Any) -> None:
        now = names_in(sent.value)
        if list(headers.options) != now:
            chosen = [n for n in now if n in headers.value or n not in headers.options]
            headers.options = now
            headers.value = tuple(chosen)
        received.value = sent.value  # runs update()
        update()

    sent.observe(sent_changed, names="value")
    for control in (received, header_c, body_c, headers, oversign):
        control.observe(update, names="value")
    reset_button.on_click(lambda _b: setattr(received, "value", sent.value))
    update()
    panel = w.VBox([
        w.HBox([header_c, body_c]),
        w.HBox([headers, oversign]),
        sent,
        w.HBox([received, reset_button]),
        verdict_box,
        detail,
    ])
    panel.result = lambda: state["result"]  # type: ignore[attr-defined]
    panel.signing = lambda: state["signing"]  # type: ignore[attr-defined]
    panel.controls = {  # type: ignore[attr-defined]
        "sent": sent, "received": received, "header_c": header_c, "body_c": body_c,
        "headers": headers, "oversign": oversign,
    }
    return panel


# -- SPF (notebooks/04-spf.ipynb) ---------------------------------------------------------


def spf_explorer(zones: Any, domain: str = "northwind.test", ip: str = "192.0.2.10",
                 record: str | None = None) -> Any:
    """Edit an SPF record and a client address: see the verdict and the trace update.

    ``zones`` is the lab's zone set (``lab.zones``). The record is evaluated in a scratch
    copy of it (taken when the explorer opens), so the lab's zones are never changed;
    ``record`` defaults to the one ``domain`` publishes. The sender checked is
    ``postmaster@<domain>``. The panel has ``set(record=..., ip=..., domain=...)`` and
    ``result()`` for notebooks and tests.
    """
    import ipywidgets as w
    from IPython.display import HTML, display

    from ..auth.spf import SPFArgumentError, check_host
    from ..core.errors import LabError
    from .checks import put_spf_record, spf_record_of, spf_scratch_zones

    scratch = spf_scratch_zones(zones)
    domain_box = w.Text(value=domain, description="Domain:", continuous_update=False,
                        layout=w.Layout(width="360px"))
    ip_box = w.Text(value=ip, description="Client IP:", continuous_update=False,
                    layout=w.Layout(width="300px"))
    record_box = w.Textarea(value=record if record is not None
                            else spf_record_of(domain, scratch) or "v=spf1 -all",
                            description="Record:", continuous_update=False,
                            layout=w.Layout(width="95%", height="70px"))
    reset_button = w.Button(description="published record", icon="undo",
                            tooltip="put back the record the domain publishes in the lab")
    status = w.HTML()
    out = w.Output()
    state: dict[str, Any] = {"result": None, "quiet": False}

    def say(text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#555"
        status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def show(*_args: Any) -> None:
        if state["quiet"]:
            return
        name = domain_box.value.strip().rstrip(".")
        text = " ".join(record_box.value.split())
        state["result"] = None
        out.clear_output(wait=True)
        try:
            scratch.reset()
            put_spf_record(scratch, name, text)
            result = check_host(ip_box.value.strip(), name, f"postmaster@{name}",
                                resolver=scratch)
        except SPFArgumentError as exc:
            say(f"{exc}", error=True)
            return
        except LabError as exc:
            say(f"The record cannot be tried here: {exc}", error=True)
            return
        state["result"] = result
        say(f"The record is tried in a scratch copy of the lab's zones; "
            f"the lab's {name} is unchanged.")
        with out:
            display(HTML(result._repr_html_()))

    def published(*_args: Any) -> None:
        scratch.reset()
        record_box.value = spf_record_of(domain_box.value.strip(), scratch) or "v=spf1 -all"

    def set_values(record: str | None = None, ip: str | None = None,
                   domain: str | None = None) -> Any:
        state["quiet"] = True
        try:
            if domain is not None:
                domain_box.value = domain
            if ip is not None:
                ip_box.value = ip
            if record is not None:
                record_box.value = record
        finally:
            state["quiet"] = False
        show()
        return state["result"]

    for box in (domain_box, ip_box, record_box):
        box.observe(show, names="value")
    reset_button.on_click(published)
    show()
    panel = w.VBox([w.HBox([domain_box, ip_box, reset_button]), record_box, status, out])
    panel.set = set_values  # type: ignore[attr-defined]
    panel.result = lambda: state["result"]  # type: ignore[attr-defined]
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


# -- DMARC (notebooks/06-dmarc.ipynb) ------------------------------------------------------


def alignment_explorer(zones: Any, from_domain: str = "northwind.test",
                       mail_from_domain: str = "phisher.example",
                       dkim_domain: str = "", aspf: str = "r", adkim: str = "r") -> Any:
    """Type a From domain, a MAIL FROM domain and a DKIM ``d=``; pick relaxed or strict
    alignment for each: see whether each identifier aligns, and the DMARC verdict.

    ``zones`` is the lab's zone set (``lab.zones``); Organizational Domains are found by
    the DNS Tree Walk in an in-memory scratch copy of it (no network, the lab unchanged),
    with :func:`labsupport.teach.checks.alignment_of`: both identifiers are taken to have
    passed SPF and DKIM, so only alignment decides. An empty field means no such
    identifier. The panel has ``set(...)`` (same names as the arguments) and
    ``result()`` for notebooks and tests.
    """
    import ipywidgets as w

    from .checks import alignment_of, dmarc_scratch_zones

    scratch = dmarc_scratch_zones(zones)
    modes = [("relaxed (r)", "r"), ("strict (s)", "s")]
    boxes = {
        "from_domain": w.Text(value=from_domain, description="From:", continuous_update=False),
        "mail_from_domain": w.Text(value=mail_from_domain, description="MAIL FROM:",
                                   continuous_update=False),
        "dkim_domain": w.Text(value=dkim_domain, description="DKIM d=",
                              continuous_update=False, placeholder="(not signed)"),
        "aspf": w.Dropdown(options=modes, value=aspf, description="aspf:"),
        "adkim": w.Dropdown(options=modes, value=adkim, description="adkim:"),
    }
    verdict = w.HTML()
    detail = w.HTML()
    state: dict[str, Any] = {"result": None, "quiet": False}

    def show(*_args: Any) -> None:
        if state["quiet"]:
            return
        author = boxes["from_domain"].value.strip()
        if not author:
            verdict.value = "<i>type a From domain</i>"
            state["result"] = None
            return
        result = alignment_of(author, mail_from_domain=boxes["mail_from_domain"].value.strip()
                              or None, dkim_domain=boxes["dkim_domain"].value.strip() or None,
                              zones=zones, aspf=boxes["aspf"].value,
                              adkim=boxes["adkim"].value, scratch=scratch)
        state["result"] = result
        colour = {"pass": "#2f6f2f", "fail": "#b00020"}.get(result.verdict, "#555")
        verdict.value = (f'<div style="font-size:120%;color:{colour}"><b>DMARC '
                         f"{html.escape(result.verdict)}</b>, disposition "
                         f"{html.escape(result.disposition)}</div>"
                         f"<div>{html.escape(result.summary)}</div>")
        rows: list[list[object]] = [
            ["From (Author Domain)", result.from_domain or "-",
             result.organizational_domain or "-", "", ""]]
        for a in result.alignments:
            rows.append([f"{a.mechanism.upper()} ({'MAIL FROM' if a.mechanism == 'spf' else 'd='})",
                         a.domain, a.organizational_domain or "-", a.mode,
                         ("aligned" if a.aligned else "not aligned") + f": {a.reason}"])
        detail.value = html_table(["identity", "domain", "Organizational Domain", "mode",
                                   "alignment"], rows,
                                  caption="Both identifiers are taken to have passed; "
                                  "found by the DNS Tree Walk in a scratch copy of the "
                                  "lab's zones")

    def set_values(**values: str) -> Any:
        unknown = sorted(set(values) - set(boxes))
        if unknown:
            raise TypeError(f"unknown field(s) {', '.join(unknown)}; use {', '.join(boxes)}")
        state["quiet"] = True
        try:
            for name, value in values.items():
                boxes[name].value = value
        finally:
            state["quiet"] = False
        show()
        return state["result"]

    for box in boxes.values():
        box.observe(show, names="value")
    show()
    panel = w.VBox([w.HBox([boxes["from_domain"], boxes["mail_from_domain"],
                            boxes["dkim_domain"]]),
                    w.HBox([boxes["aspf"], boxes["adkim"]]), verdict, detail])
    panel.set = set_values  # type: ignore[attr-defined]
    panel.result = lambda: state["result"]  # type: ignore[attr-defined]
    panel.controls = boxes  # type: ignore[attr-defined]
    return panel


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
