"""DKIM: sign a message and verify its signatures, showing every step.

DomainKeys Identified Mail (RFC 6376) lets a domain sign the mail it sends. The signer
picks header fields (``h=``), puts header and body into a canonical form (``c=``, see
:mod:`labsupport.auth.dkim_canon`), hashes the body (``bh=``), then signs the hash of the
chosen header fields plus the new DKIM-Signature field itself (``b=``). A receiver finds
the public key in DNS at ``<s=>._domainkey.<d=>`` and repeats the computation.

* :func:`verify` checks every DKIM-Signature of a message and returns a
  :class:`DKIMVerification` holding one :class:`DKIMResult` per signature (pass, fail,
  neutral, temperror or permerror, the names RFC 8601 gives them), each with a trace:
  the parsed tags, the canonicalized header and body exactly as hashed (CR LF, spaces
  and tabs made visible), the computed and claimed body hashes, the DNS query and key
  record, and the signature check with its reason.
* :func:`sign` adds a DKIM-Signature (rsa-sha256, or ed25519-sha256 from RFC 8463);
  :func:`sign_traced` does the same and shows each step.

RFC 8301 is enforced on both sides: rsa-sha1 and RSA keys under 1024 bits are refused,
with the reason. All cryptography goes through the ``cryptography`` package. Keys:
:mod:`labsupport.auth.dkim_keys`.

This module is the entry point: every name above is importable from here. The work is
done in modules by concept: :mod:`labsupport.auth.dkim_sigtags` (the DKIM-Signature's
tags and reading them), :mod:`labsupport.auth.dkim_hashing` (the bytes a signature
covers and the signing primitives), :mod:`labsupport.auth.dkim_results` (the result
types), :mod:`labsupport.auth.dkim_verify` (verifying) and
:mod:`labsupport.auth.dkim_sign` (signing). Canonicalization is
:mod:`labsupport.auth.dkim_canon`; tag lists and key records,
:mod:`labsupport.auth.dkim_taglist` and :mod:`labsupport.auth.dkim_keyrecord`.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

from .dkim_canon import CANONICALIZATIONS as CANONICALIZATIONS
from .dkim_canon import CRLF as CRLF
from .dkim_canon import ParsedMessage as ParsedMessage
from .dkim_canon import canonical_body as canonical_body
from .dkim_canon import canonicalize_body as canonicalize_body
from .dkim_canon import canonicalize_body_relaxed as canonicalize_body_relaxed
from .dkim_canon import canonicalize_body_simple as canonicalize_body_simple
from .dkim_canon import canonicalize_header as canonicalize_header
from .dkim_canon import canonicalize_header_relaxed as canonicalize_header_relaxed
from .dkim_canon import canonicalize_header_simple as canonicalize_header_simple
from .dkim_canon import parse_message as parse_message
from .dkim_canon import show_whitespace as show_whitespace
from .dkim_hashing import MAX_SHOWN_LINES as MAX_SHOWN_LINES
from .dkim_keys import MIN_RSA_BITS as MIN_RSA_BITS
from .dkim_keys import DKIMError as DKIMError
from .dkim_keys import DKIMKeyError as DKIMKeyError
from .dkim_keys import KeyRecord as KeyRecord
from .dkim_keys import KeyRecordError as KeyRecordError
from .dkim_keys import LabKey as LabKey
from .dkim_keys import TagListError as TagListError
from .dkim_keys import generate_key as generate_key
from .dkim_keys import key_name as key_name
from .dkim_keys import key_type_for as key_type_for
from .dkim_keys import lab_key as lab_key
from .dkim_keys import load_private_key as load_private_key
from .dkim_keys import parse_key_record as parse_key_record
from .dkim_keys import parse_tag_list as parse_tag_list
from .dkim_keys import publish as publish
from .dkim_keys import revoke as revoke
from .dkim_keys import rotate as rotate
from .dkim_results import RESULTS as RESULTS
from .dkim_results import VERDICT_ORDER as VERDICT_ORDER
from .dkim_results import DKIMResult as DKIMResult
from .dkim_results import DKIMSigning as DKIMSigning
from .dkim_results import DKIMVerification as DKIMVerification
from .dkim_sign import DEFAULT_SIGNED_HEADERS as DEFAULT_SIGNED_HEADERS
from .dkim_sign import DKIMSigningError as DKIMSigningError
from .dkim_sign import sign as sign
from .dkim_sign import sign_traced as sign_traced
from .dkim_sigtags import RFC_BODY_CANON as RFC_BODY_CANON
from .dkim_sigtags import RFC_BODY_HASH as RFC_BODY_HASH
from .dkim_sigtags import RFC_COMPUTE as RFC_COMPUTE
from .dkim_sigtags import RFC_DKIM as RFC_DKIM
from .dkim_sigtags import RFC_ED25519 as RFC_ED25519
from .dkim_sigtags import RFC_GET_KEY as RFC_GET_KEY
from .dkim_sigtags import RFC_HEADER_CANON as RFC_HEADER_CANON
from .dkim_sigtags import RFC_KEY_FLAGS as RFC_KEY_FLAGS
from .dkim_sigtags import RFC_KEY_SIZE as RFC_KEY_SIZE
from .dkim_sigtags import RFC_LENGTH as RFC_LENGTH
from .dkim_sigtags import RFC_OVERSIGN as RFC_OVERSIGN
from .dkim_sigtags import RFC_RESULTS as RFC_RESULTS
from .dkim_sigtags import RFC_SELECT as RFC_SELECT
from .dkim_sigtags import RFC_SHA1 as RFC_SHA1
from .dkim_sigtags import RFC_SIG_TAGS as RFC_SIG_TAGS
from .dkim_sigtags import RFC_UTF8 as RFC_UTF8
from .dkim_sigtags import RFC_VERIFY_SIG as RFC_VERIFY_SIG
from .dkim_sigtags import SIGNATURE_ALGORITHMS as SIGNATURE_ALGORITHMS
from .dkim_sigtags import Now as Now
from .dkim_verify import verify as verify

__all__ = [
    "DEFAULT_SIGNED_HEADERS", "RESULTS", "SIGNATURE_ALGORITHMS", "DKIMError", "DKIMKeyError",
    "DKIMResult", "DKIMSigning", "DKIMSigningError", "DKIMVerification", "LabKey",
    "canonicalize_body", "canonicalize_body_relaxed", "canonicalize_body_simple",
    "canonicalize_header", "canonicalize_header_relaxed", "canonicalize_header_simple",
    "generate_key", "lab_key", "parse_message", "publish", "revoke", "rotate",
    "show_whitespace", "sign", "sign_traced", "verify",
]
