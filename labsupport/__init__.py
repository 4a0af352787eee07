"""labsupport: the helper package of Mail Labs.

``import labsupport`` is enough in a notebook: it brings the lab (``start``), the
results and traces, the zones and DNS server, MX selection and the check helpers.
Pictures (``labsupport.plots``) and explorers (``labsupport.widgets``) import matplotlib
and ipywidgets only when first used, so this import stays cheap.

See :mod:`labsupport.index` for the notebook that introduces each name.
"""

from __future__ import annotations

import importlib
from typing import Any

from .checks import claim, claim_true
from .clock import LabClock
from .delivery import DeliveryAttempt, Queue, QueueItem
from .errors import CheckFailed, LabError, LabNotRunning, ZoneEditError
from .index import where_taught
from .lab import Lab, current, labs_home, start
from .mx import MXHost, MXResult, mx_hosts, order_by_preference
from .nameserver import DNSServer, QueryLog
from .query import DNSExchange, ask, dig
from .received import Hop, received_chain
from .replycodes import explain_reply, reply_code_table
from .results import Result, Step, TraceBuilder
from .smtp import Reply, SMTPSession, Transcript, dot_stuff, send_mail
from .zone import Lookup, ZoneSet

__version__ = "0.1.0"

#: Parts imported on first use (matplotlib, ipywidgets, cryptography, scapy stay unloaded
#: until a lesson needs them): ``labsupport.spf``, ``labsupport.capture`` and so on.
_LAZY = {"plots", "widgets", "spf", "dkim", "authres", "capture", "capture_tls", "mitm",
         "dmarc", "dmarc_reports", "providers", "replycodes", "troubleshoot", "greylist"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'labsupport' has no attribute {name!r}")


__all__ = [
    "CheckFailed", "DNSExchange", "DNSServer", "DeliveryAttempt", "Hop", "Lab", "LabClock",
    "LabError", "LabNotRunning", "Lookup", "MXHost", "MXResult", "QueryLog", "Queue",
    "QueueItem", "Reply", "Result", "SMTPSession", "Step", "TraceBuilder", "Transcript",
    "ZoneEditError", "ZoneSet", "ask", "claim", "claim_true", "current", "dig", "dot_stuff",
    "explain_reply", "labs_home", "mx_hosts", "order_by_preference", "received_chain",
    "reply_code_table", "send_mail", "start", "where_taught",
]
