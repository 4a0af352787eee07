"""labsupport: the helper package of Mail Labs.

``import labsupport`` is enough in a notebook: it brings the lab (``start``), the
results and traces, the zones and DNS server, MX selection and the check helpers.
Pictures (``labsupport.teach.plots``) and explorers (``labsupport.teach.widgets``) import matplotlib
and ipywidgets only when first used, so this import stays cheap.

See :mod:`labsupport.teach.index` for the notebook that introduces each name.
"""

from __future__ import annotations

import importlib
from typing import Any

from .core.clock import LabClock
from .core.errors import CheckFailed, LabError, LabNotRunning, ZoneEditError
from .core.results import Result, Step, TraceBuilder
from .dns.mx import MXHost, MXResult, mx_hosts, order_by_preference
from .dns.nameserver import DNSServer, QueryLog
from .dns.query import DNSExchange, ask, dig
from .dns.zone import Lookup, ZoneSet
from .lab.lab import Lab, current, labs_home, start
from .mail.delivery import DeliveryAttempt, Queue, QueueItem
from .mail.received import Hop, received_chain
from .mail.replycodes import explain_reply, reply_code_table
from .mail.smtp import Reply, SMTPSession, Transcript, dot_stuff, send_mail
from .teach.index import where_taught
from .teach.verdicts import claim, claim_true

__version__ = "0.1.0"

#: The layers, top to bottom: each imports only the layers below it (tests/test_architecture.py).
LAYERS = ("teach", "lab", "mail", "auth", "wire", "dns", "core")


def __getattr__(name: str) -> Any:
    """``labsupport.dns`` and the other layers, and each module by its short name
    (``labsupport.spf`` is :mod:`labsupport.auth.spf`), imported on first use so that
    matplotlib, ipywidgets, cryptography and scapy stay unloaded until a lesson needs them."""
    if name in LAYERS:
        return importlib.import_module(f".{name}", __name__)
    for layer in LAYERS:
        if name in importlib.import_module(f".{layer}", __name__).MODULES:
            return importlib.import_module(f".{layer}.{name}", __name__)
    raise AttributeError(f"module 'labsupport' has no attribute {name!r}")


__all__ = [
    "CheckFailed", "DNSExchange", "DNSServer", "DeliveryAttempt", "Hop", "Lab", "LabClock",
    "LabError", "LabNotRunning", "Lookup", "MXHost", "MXResult", "QueryLog", "Queue",
    "QueueItem", "Reply", "Result", "SMTPSession", "Step", "TraceBuilder", "Transcript",
    "ZoneEditError", "ZoneSet", "ask", "claim", "claim_true", "current", "dig", "dot_stuff",
    "explain_reply", "labs_home", "mx_hosts", "order_by_preference", "received_chain",
    "reply_code_table", "send_mail", "start", "where_taught",
]
