"""The core: results with their traces, the one exception root, the lab clock.

Imports nothing else from labsupport; every other layer may import it.
"""

from .lazy import lazy_submodules

#: The modules of this layer, each imported when first used as an attribute.
MODULES = ('errors', 'results', 'clock', 'paths', 'lazy', 'peers')

__getattr__ = lazy_submodules(__name__, MODULES)
