"""Sender authentication: SPF, DKIM and DMARC evaluators with traces, DMARC reports
and the Authentication-Results header.

Layer: imports :mod:`labsupport.dns` and :mod:`labsupport.core`; never mail, wire, lab
or teach. Independent of :mod:`labsupport.wire`.
"""

from ..core.lazy import lazy_submodules

#: The modules of this layer, each imported when first used as an attribute.
MODULES = ('spf', 'spf_result', 'spf_dns', 'spf_expansion', 'spf_eval', 'spf_record',
           'spf_macros',
           'dkim', 'dkim_canon', 'dkim_keys', 'dkim_taglist', 'dkim_keyrecord', 'dkim_sigtags',
           'dkim_hashing', 'dkim_results', 'dkim_verify', 'dkim_sign',
           'dmarc', 'dmarc_record', 'dmarc_domains', 'dmarc_discovery', 'dmarc_alignment',
           'dmarc_reports', 'dmarc_reports_model', 'dmarc_reports_observe',
           'dmarc_reports_read', 'dmarc_reports_write', 'dmarc_reports_validate',
           'authres', 'authres_model', 'authres_parse', 'authres_format', 'authres_evaluation',
           'arc_sets', 'arc_results', 'arc_verify', 'arc_sign', 'arc_trust')

__getattr__ = lazy_submodules(__name__, MODULES)
