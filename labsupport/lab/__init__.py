"""The lab: one object that starts every service (:func:`start`), its control channel
and the command line (``python -m labsupport``).

Layer: imports mail, auth, wire, dns and core; never teach.
"""

from ..core.lazy import lazy_submodules

#: The modules of this layer, each imported when first used as an attribute.
MODULES = ('lab', 'statedir', 'control', 'cli', 'lab_mail', 'lab_commands', 'lab_state')

__getattr__ = lazy_submodules(__name__, MODULES)

# The lab object and how to start it, as ``labsupport.lab.start`` (and ``labsupport.start``).
from .lab import Lab, current, labs_home, start  # noqa: E402

__all__ = ["MODULES", "Lab", "current", "labs_home", "start"]
