"""Teaching: check cells and exercise judges, pictures, explorers, the troubleshooting
lab, providers' client settings, and the index of names to lessons.

Layer: the top one; it may import every other layer, and none imports it.
"""

from ..core.lazy import lazy_submodules

#: The modules of this layer, each imported when first used as an attribute.
MODULES = ('checks', 'verdicts', 'widgets', 'plots', 'plots_capstone', 'plots_dkim',
           'plots_mail', 'world_map', 'troubleshoot', 'providers', 'index')

__getattr__ = lazy_submodules(__name__, MODULES)
