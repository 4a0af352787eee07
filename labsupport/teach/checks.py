"""Check cells: teaching claims and exercise checks that speak in words.

Two kinds of check appear in the notebooks:

* :func:`claim` and :func:`claim_true` back a sentence of the lesson ("the first host a
  sender tries is mx1") with the lab's behaviour. A claim that holds prints a line that
  says so; one that stops being true raises :class:`~labsupport.core.errors.CheckFailed` with
  what was expected and what happened, so the notebook fails in CI.
* Exercise checks (``check_*``) take the student's answer, say whether it is right and
  give a hint when it is not. An answer that was not given yet (the answer cell raised
  ``NotImplementedError``, or the name is undefined) is reported as "not answered yet",
  not as an error. The expected answers are computed from the lab, never typed in.

Introduced in ``notebooks/00-start-here.ipynb``.

The checks live in one module per lesson, all re-exported here, so notebooks keep
calling ``checks.<name>``:

* :mod:`labsupport.teach.checks_core`: what several lessons share (the auth modules
  imported when first used, the reading of a "which letters?" answer); the verdict type
  and its helpers are in :mod:`labsupport.teach.verdicts`;
* :mod:`labsupport.teach.checks_dns`: lessons 00 and 01 (an address, the MX hosts'
  order, a domain's diagnosis, an MX fix);
* :mod:`labsupport.teach.checks_smtp`: lesson 02 (the SMTP dialogue) and lesson 08
  (replies and the troubleshooting lab's check cells);
* :mod:`labsupport.teach.checks_tls`: lesson 03 (STARTTLS and implicit TLS, IMAP);
* :mod:`labsupport.teach.checks_transport`: lesson 09 (the chain of trust by hand,
  deliveries against each defence, TLSA data, an MTA-STS policy, a broken chain);
* :mod:`labsupport.teach.checks_spf`: lesson 04 (SPF results, records and their fix);
* :mod:`labsupport.teach.checks_dkim`: lesson 05 (canonicalization, key rotation);
* :mod:`labsupport.teach.checks_dmarc`: lesson 06 (alignment, subdomain policies);
* :mod:`labsupport.teach.checks_capstone`: lesson 07 (:func:`receiver_report`,
  :class:`ReceiverReport`, the steps of securing a domain, the subdomain forgery).
* :mod:`labsupport.teach.checks_beyond`: lesson 10 (the forwarder-then-list journey, the
  lenient toy SMTP server, the smuggling, ARC and DATA octets exercises).
"""

from __future__ import annotations

from .checks_beyond import DATA_DRAFT as DATA_DRAFT
from .checks_beyond import JOURNEY_MESSAGE as JOURNEY_MESSAGE
from .checks_beyond import SMUGGLING_LETTERS as SMUGGLING_LETTERS
from .checks_beyond import ForwardedJourney as ForwardedJourney
from .checks_beyond import JourneyHop as JourneyHop
from .checks_beyond import LenientServer as LenientServer
from .checks_beyond import check_data_octets as check_data_octets
from .checks_beyond import check_lenient_variants as check_lenient_variants
from .checks_beyond import check_list_set as check_list_set
from .checks_beyond import forward_then_list as forward_then_list
from .checks_beyond import judge_data_octets as judge_data_octets
from .checks_beyond import judge_lenient_variants as judge_lenient_variants
from .checks_beyond import judge_list_set as judge_list_set
from .checks_beyond import lenient_survey as lenient_survey
from .checks_capstone import CAPSTONE_ATTACKER as CAPSTONE_ATTACKER
from .checks_capstone import CAPSTONE_STEPS as CAPSTONE_STEPS
from .checks_capstone import ReceiverOutcome as ReceiverOutcome
from .checks_capstone import ReceiverReport as ReceiverReport
from .checks_capstone import check_secure_step as check_secure_step
from .checks_capstone import check_subdomain_forgery as check_subdomain_forgery
from .checks_capstone import judge_secure_step as judge_secure_step
from .checks_capstone import judge_subdomain_forgery as judge_subdomain_forgery
from .checks_capstone import receiver_report as receiver_report
from .checks_dkim import DKIM_CHANGES as DKIM_CHANGES
from .checks_dkim import DKIM_EXERCISE_MESSAGE as DKIM_EXERCISE_MESSAGE
from .checks_dkim import check_key_rotation as check_key_rotation
from .checks_dkim import check_relaxed_only as check_relaxed_only
from .checks_dkim import dkim_survival as dkim_survival
from .checks_dkim import judge_key_rotation as judge_key_rotation
from .checks_dkim import judge_relaxed_only as judge_relaxed_only
from .checks_dmarc import DMARC_PAIRS as DMARC_PAIRS
from .checks_dmarc import DMARC_RECORD_CASES as DMARC_RECORD_CASES
from .checks_dmarc import alignment_of as alignment_of
from .checks_dmarc import check_relaxed_pairs as check_relaxed_pairs
from .checks_dmarc import check_subdomain_record as check_subdomain_record
from .checks_dmarc import dmarc_scratch_zones as dmarc_scratch_zones
from .checks_dmarc import judge_relaxed_pairs as judge_relaxed_pairs
from .checks_dmarc import judge_subdomain_record as judge_subdomain_record
from .checks_dmarc import relaxed_pairs as relaxed_pairs
from .checks_dns import check_address as check_address
from .checks_dns import check_diagnosis as check_diagnosis
from .checks_dns import check_mx_fix as check_mx_fix
from .checks_dns import check_try_order as check_try_order
from .checks_dns import judge_address as judge_address
from .checks_dns import judge_diagnosis as judge_diagnosis
from .checks_dns import judge_mx_fix as judge_mx_fix
from .checks_dns import judge_try_order as judge_try_order
from .checks_smtp import check_commands_to_354 as check_commands_to_354
from .checks_smtp import check_diagnoses as check_diagnoses
from .checks_smtp import check_lab_pairing as check_lab_pairing
from .checks_smtp import check_partly_accepted as check_partly_accepted
from .checks_smtp import check_reply_actions as check_reply_actions
from .checks_smtp import check_ticket_fixed as check_ticket_fixed
from .checks_smtp import judge_commands_to_354 as judge_commands_to_354
from .checks_smtp import judge_partly_accepted as judge_partly_accepted
from .checks_smtp import judge_reply_actions as judge_reply_actions
from .checks_spf import SPF_OUTSIDERS as SPF_OUTSIDERS
from .checks_spf import check_spf_fix as check_spf_fix
from .checks_spf import check_spf_result as check_spf_result
from .checks_spf import judge_spf_fix as judge_spf_fix
from .checks_spf import judge_spf_result as judge_spf_result
from .checks_spf import put_spf_record as put_spf_record
from .checks_spf import spf_intended as spf_intended
from .checks_spf import spf_record_of as spf_record_of
from .checks_spf import spf_scratch_zones as spf_scratch_zones
from .checks_tls import check_imap_message_id as check_imap_message_id
from .checks_tls import check_round_trips as check_round_trips
from .checks_tls import check_stolen_password as check_stolen_password
from .checks_tls import check_verifying_context as check_verifying_context
from .checks_tls import judge_imap_message_id as judge_imap_message_id
from .checks_tls import judge_round_trips as judge_round_trips
from .checks_tls import judge_stolen_password as judge_stolen_password
from .checks_tls import judge_verifying_context as judge_verifying_context
from .checks_transport import DEFENCE_CASES as DEFENCE_CASES
from .checks_transport import ChainLink as ChainLink
from .checks_transport import DefenceRun as DefenceRun
from .checks_transport import TrustChain as TrustChain
from .checks_transport import break_for_exercise as break_for_exercise
from .checks_transport import check_broken_chain as check_broken_chain
from .checks_transport import check_sts_policy as check_sts_policy
from .checks_transport import check_tlsa_data as check_tlsa_data
from .checks_transport import compare_defences as compare_defences
from .checks_transport import failing_rrset as failing_rrset
from .checks_transport import judge_broken_chain as judge_broken_chain
from .checks_transport import judge_sts_policy as judge_sts_policy
from .checks_transport import judge_tlsa_data as judge_tlsa_data
from .checks_transport import policy_with_mode as policy_with_mode
from .checks_transport import served_mode as served_mode
from .checks_transport import trust_chain as trust_chain
from .checks_transport import try_delivery as try_delivery
from .verdicts import FAIL as FAIL
from .verdicts import PASS as PASS
from .verdicts import TODO as TODO
from .verdicts import Verdict as Verdict
from .verdicts import answer_of as answer_of
from .verdicts import claim as claim
from .verdicts import claim_true as claim_true
from .verdicts import report as report
