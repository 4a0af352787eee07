"""The delivering MTA: a persistent outbound queue, MX fallback, retries and bounces.

When an authenticated user submits mail for another lab domain, the lab delivers it the
way a real mail transfer agent does: it groups the recipients by domain, looks up each
domain's MX hosts in the lab's DNS (:func:`labsupport.dns.mx.mx_hosts`, RFC 5321 section 5.1)
and tries them in order. A host that is down (a lesson fault) or answers 4xx sends it on
to the next host; when every host failed for now the message stays in the queue and is
tried again on the lab clock (RFC 5321 section 4.5.4.1); a 5xx reply, or a message too
old to keep trying, is returned to the sender as a delivery status notification (a
"bounce", RFC 3464), unless the envelope sender is empty (RFC 5321 section 4.5.5).

Every lab MX host name is served by one listener, the lab's MX role on 127.0.0.1: the
MX lookup decides the order and which faults apply, the TCP connection always goes to
``127.0.0.1:mx_port()``. The sender appears to the MX role as its organisation's
outbound host (``out.<domain>``, e.g. 192.0.2.10) through Postfix's XCLIENT command,
when the MX role offers it. Nothing here ever connects outside 127.0.0.1.

:meth:`Queue.run` talks to the lab's DNS server and MX role, which live on the lab's
event loop: call it from another thread (a notebook cell, an executor, the queue's own
worker started with :meth:`Queue.start`), never on that loop; it refuses to run there.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.

The code lives in four parts, each re-exported here:
:mod:`~labsupport.mail.delivery_items` holds the settings (RFC references, retry
schedule, queue lifetime, SMTP timeout), the protocols of the store and faults the queue
uses, and the records :class:`QueueItem`, :class:`HostTry`, :class:`DeliveryAttempt` and
:class:`QueueTable`; :mod:`~labsupport.mail.delivery_dsn` builds the bounce
(:class:`FailedRecipient`, :func:`build_dsn`); :mod:`~labsupport.mail.delivery_smtp`
delivers one recipient domain (the MX look-up and the SMTP session with each MX host);
:mod:`~labsupport.mail.delivery_queue` holds :class:`Queue` itself: its files, its runs,
retries and bounces, and its worker thread.
"""

from __future__ import annotations

from .delivery_dsn import FailedRecipient as FailedRecipient
from .delivery_dsn import build_dsn as build_dsn
from .delivery_items import MAX_QUEUE_LIFETIME as MAX_QUEUE_LIFETIME
from .delivery_items import RETRY_SCHEDULE as RETRY_SCHEDULE
from .delivery_items import RFC_BOUNCE as RFC_BOUNCE
from .delivery_items import RFC_DSN as RFC_DSN
from .delivery_items import RFC_MX as RFC_MX
from .delivery_items import RFC_NULL_SENDER as RFC_NULL_SENDER
from .delivery_items import RFC_REPLY as RFC_REPLY
from .delivery_items import RFC_RETRY as RFC_RETRY
from .delivery_items import RFC_STATUS as RFC_STATUS
from .delivery_items import RFC_XCLIENT as RFC_XCLIENT
from .delivery_items import SMTP_TIMEOUT as SMTP_TIMEOUT
from .delivery_items import STATUS_EXPIRED as STATUS_EXPIRED
from .delivery_items import DeliveryAttempt as DeliveryAttempt
from .delivery_items import FaultsLike as FaultsLike
from .delivery_items import HostTry as HostTry
from .delivery_items import QueueItem as QueueItem
from .delivery_items import QueueTable as QueueTable
from .delivery_items import StoreLike as StoreLike
from .delivery_queue import Queue as Queue

__all__ = [
    "MAX_QUEUE_LIFETIME", "RETRY_SCHEDULE", "STATUS_EXPIRED", "DeliveryAttempt", "HostTry",
    "FailedRecipient", "Queue", "QueueItem", "QueueTable", "build_dsn",
]
