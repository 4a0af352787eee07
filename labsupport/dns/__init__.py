"""DNS: the lab's zones, its authoritative server, queries on the wire, MX selection.

Layer: imports only :mod:`labsupport.core`.
"""

from ..core.lazy import lazy_submodules

#: The modules of this layer, each imported when first used as an attribute.
MODULES = ('zone', 'zone_records', 'zone_store', 'zone_lookup', 'zone_resolver', 'zone_edits',
           'nameserver', 'query', 'mx', 'world', 'dnssec_sign', 'dnssec_answer',
           'dnssec_proofs', 'dnssec_validate')

__getattr__ = lazy_submodules(__name__, MODULES)
