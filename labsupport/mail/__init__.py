"""Mail: the lab's SMTP server roles (on aiosmtpd), storage, the delivering queue, the
forwarder and the list, greylisting, faults, accounts, the transcript client, reply codes,
Received chains and the downgrade relay.

Layer: imports :mod:`labsupport.auth`, :mod:`labsupport.wire`, :mod:`labsupport.dns` and
:mod:`labsupport.core`; never lab or teach.
"""

from ..core.lazy import lazy_submodules

#: The modules of this layer, each imported when first used as an attribute.
MODULES = ('server', 'server_roles', 'server_handler', 'server_session', 'mailstore',
           'delivery', 'aliases', 'greylist', 'faults', 'accounts',
           'smtp', 'replycodes', 'received', 'mitm')

__getattr__ = lazy_submodules(__name__, MODULES)
