"""Reply codes and enhanced status codes, explained (RFC 5321 section 4.2, RFC 3463).

:func:`explain_reply` says what a reply code (``354``), an enhanced status code
(``5.7.1``) or a whole reply line means; :func:`reply_code_table` gives the tables a
notebook shows. Every entry names the RFC it comes from, and says nothing more.

:func:`decode` goes further for troubleshooting: it finds the reply in whatever was pasted
(a reply line, a multi-line reply, a bounce message or a mail program quoting the server,
Python's ``smtplib`` exceptions) and says what the sending side does next, who has to act,
and which common misreadings (:data:`MYTHS`) the reply invites. :func:`decoder` is the same
as a small ipywidgets explorer; the exercise check is
:func:`labsupport.teach.checks.judge_reply_actions`.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``; the decoder, the myths and the exercise
in ``notebooks/08-troubleshooting.ipynb``.

The code lives in parts, all re-exported here: :mod:`labsupport.mail.replycodes_tables`
holds the RFC references, :class:`ReplyCodeError` and the tables of reply codes and
enhanced status codes; :mod:`labsupport.mail.replycodes_explain` holds
:func:`explain_reply`, :class:`CodeTable` and :func:`reply_code_table`;
:mod:`labsupport.mail.replycodes_decoded` the RFC references of decoding,
:data:`CATEGORIES`, :class:`Myth`, :data:`MYTHS`, :func:`myth_table` and :class:`Decoded`;
:mod:`labsupport.mail.replycodes_actions` what the sending side does and who acts;
:mod:`labsupport.mail.replycodes_parse` finding the reply in what was pasted; and
:mod:`labsupport.mail.replycodes_decode` :func:`decode`, :func:`action_category`,
:func:`decoded_html`, :data:`EXAMPLES` and :func:`normalise_action`.
"""

from __future__ import annotations

from .replycodes_decode import EXAMPLES as EXAMPLES
from .replycodes_decode import action_category as action_category
from .replycodes_decode import decode as decode
from .replycodes_decode import decoded_html as decoded_html
from .replycodes_decode import normalise_action as normalise_action
from .replycodes_decoded import CATEGORIES as CATEGORIES
from .replycodes_decoded import MYTHS as MYTHS
from .replycodes_decoded import RFC_AFTER_DATA as RFC_AFTER_DATA
from .replycodes_decoded import RFC_BOUNCE as RFC_BOUNCE
from .replycodes_decoded import RFC_DSN as RFC_DSN
from .replycodes_decoded import RFC_MAIL_TRANSACTION as RFC_MAIL_TRANSACTION
from .replycodes_decoded import RFC_RETRY as RFC_RETRY
from .replycodes_decoded import Decoded as Decoded
from .replycodes_decoded import Myth as Myth
from .replycodes_decoded import myth_table as myth_table
from .replycodes_explain import CodeTable as CodeTable
from .replycodes_explain import explain_reply as explain_reply
from .replycodes_explain import reply_code_table as reply_code_table
from .replycodes_tables import ENHANCED_CLASSES as ENHANCED_CLASSES
from .replycodes_tables import ENHANCED_CODES as ENHANCED_CODES
from .replycodes_tables import ENHANCED_SUBJECTS as ENHANCED_SUBJECTS
from .replycodes_tables import REPLY_CLASSES as REPLY_CLASSES
from .replycodes_tables import REPLY_CODES as REPLY_CODES
from .replycodes_tables import REPLY_SUBJECTS as REPLY_SUBJECTS
from .replycodes_tables import RFC_AUTH as RFC_AUTH
from .replycodes_tables import RFC_BANNER_554 as RFC_BANNER_554
from .replycodes_tables import RFC_CLOSING as RFC_CLOSING
from .replycodes_tables import RFC_ENHANCED as RFC_ENHANCED
from .replycodes_tables import RFC_ENHANCED_IN_REPLIES as RFC_ENHANCED_IN_REPLIES
from .replycodes_tables import RFC_ENHANCED_STRUCTURE as RFC_ENHANCED_STRUCTURE
from .replycodes_tables import RFC_HELO_FALLBACK as RFC_HELO_FALLBACK
from .replycodes_tables import RFC_IMPLICIT_TLS as RFC_IMPLICIT_TLS
from .replycodes_tables import RFC_REPLIES as RFC_REPLIES
from .replycodes_tables import RFC_REPLY_CLASSES as RFC_REPLY_CLASSES
from .replycodes_tables import RFC_REPLY_CODES as RFC_REPLY_CODES
from .replycodes_tables import RFC_STARTTLS as RFC_STARTTLS
from .replycodes_tables import RFC_TRACE as RFC_TRACE
from .replycodes_tables import RFC_XCLIENT as RFC_XCLIENT
from .replycodes_tables import ReplyCodeError as ReplyCodeError
