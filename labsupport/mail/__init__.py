"""Mail: the lab's SMTP server roles (on aiosmtpd), storage, the delivering queue, the
forwarder and the list, greylisting, faults, accounts, the transcript client, reply codes,
Received chains and the downgrade relay.

Layer: imports :mod:`labsupport.auth`, :mod:`labsupport.wire`, :mod:`labsupport.dns` and
:mod:`labsupport.core`; never lab or teach.
"""

from ..core.lazy import lazy_submodules

#: The modules of this layer, each imported when first used as an attribute.
MODULES = ('server', 'server_roles', 'server_handler', 'server_session', 'mailstore',
           'delivery', 'delivery_items', 'delivery_dsn', 'delivery_smtp', 'delivery_queue',
           'aliases', 'greylist', 'faults', 'accounts',
           'smtp', 'smtp_replies', 'smtp_encoding', 'smtp_transcript', 'smtp_session',
           'replycodes', 'replycodes_tables', 'replycodes_explain', 'replycodes_decoded',
           'replycodes_actions', 'replycodes_parse', 'replycodes_decode',
           'received', 'mitm', 'smuggling', 'smuggling_lenient',
           'mtasts_policy', 'mtasts_server', 'mtasts_fetch', 'mtasts_enforce',
           'record_fields', 'tlsrpt', 'imap', 'imap_dovecot', 'dane', 'dane_enforce')

__getattr__ = lazy_submodules(__name__, MODULES)
