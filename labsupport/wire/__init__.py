"""What crosses the wire: the lab certificate authority and TLS contexts, packet
captures, and TLS decryption from a key log.

Layer: imports :mod:`labsupport.dns` and :mod:`labsupport.core`; never auth, mail, lab or
teach. Independent of :mod:`labsupport.auth`.
"""

from ..core.lazy import lazy_submodules

#: The modules of this layer, each imported when first used as an attribute.
MODULES = ('tls', 'relay', 'segments', 'dialogue', 'capture_tls', 'capture', 'capture_files')

__getattr__ = lazy_submodules(__name__, MODULES)
