"""Teaching: check cells and exercise judges, pictures, explorers, the troubleshooting
lab, providers' client settings, and the index of names to lessons.

Layer: the top one; it may import every other layer, and none imports it.
"""

from ..core.lazy import lazy_submodules

#: The modules of this layer, each imported when first used as an attribute.
MODULES = ('checks', 'checks_core', 'checks_dns', 'checks_smtp', 'checks_tls', 'checks_spf',
           'checks_dkim', 'checks_dmarc', 'checks_capstone', 'checks_transport',
           'checks_beyond', 'verdicts',
           'widgets', 'widgets_core', 'widgets_smtp', 'widgets_auth', 'widgets_troubleshoot',
           'widgets_transport', 'widgets_beyond',
           'plots', 'plots_core', 'plots_capstone', 'plots_dkim', 'plots_mail', 'plots_transport',
           'plots_beyond', 'world_map',
           'troubleshoot', 'troubleshoot_tickets', 'troubleshoot_evidence', 'troubleshoot_tls',
           'troubleshoot_hunt', 'troubleshoot_checks',
           'providers', 'providers_rules', 'providers_table', 'providers_lab', 'providers_checks',
           'index')

__getattr__ = lazy_submodules(__name__, MODULES)
