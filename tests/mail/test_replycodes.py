"""labsupport.mail.replycodes: decoding whole replies, the myths, the explorer and the exercise.

The tables and explain_reply() are tested in test_smtp.py (where notebook 02 uses them);
this file covers what notebooks/08-troubleshooting.ipynb adds on top of them.
"""

from __future__ import annotations

import re
import smtplib

import pytest

from labsupport.core.errors import CheckFailed, LabError
from labsupport.mail.replycodes import (
    CATEGORIES,
    EXAMPLES,
    MYTHS,
    Decoded,
    Myth,
    ReplyCodeError,
    action_category,
    decode,
    decoded_html,
    explain_reply,
    myth_table,
    normalise_action,
)
from labsupport.teach.checks import Verdict, check_reply_actions, judge_reply_actions


def claims(decoded: Decoded) -> set[str]:
    return {myth.claim for myth in decoded.myths}


def myth_about(word: str) -> Myth:
    """The one myth whose claim contains ``word``."""
    found = [m for m in MYTHS if word in m.claim]
    assert len(found) == 1, word
    return found[0]


# -- the kinds of input -------------------------------------------------------------------


def test_a_bare_code_as_number_or_text() -> None:
    for given in (550, "550", " 550 ", b"550"):
        decoded = decode(given)
        assert (decoded.code, decoded.enhanced, decoded.text) == (550, None, "")
        assert decoded.code_meaning is not None
        assert decoded.code_meaning.startswith("550: Requested action not taken")
        assert decoded.enhanced_meaning is None
        assert decoded.headline == "550"


def test_an_enhanced_code_alone_decides_by_its_class() -> None:
    decoded = decode("5.7.1")
    assert (decoded.code, decoded.enhanced, decoded.category) == (None, "5.7.1", "give up")
    assert decoded.enhanced_meaning is not None
    assert decoded.enhanced_meaning.startswith("5.7.1: Delivery not authorized")
    assert any("Only an enhanced code" in note for note in decoded.notes)
    assert decode("4.2.2 mailbox full").category == "retry later"
    assert decode("4.2.2 mailbox full").text == "mailbox full"
    assert decode("2.0.0").category == "done"


def test_a_reply_line_splits_into_code_enhanced_code_and_text() -> None:
    decoded = decode("550 5.7.1 <carol@elsewhere.test>: Relay access denied")
    assert decoded.code == 550
    assert decoded.enhanced == "5.7.1"
    assert decoded.text == "<carol@elsewhere.test>: Relay access denied"
    assert decoded.context == ""
    assert decoded.reply == "550 5.7.1 <carol@elsewhere.test>: Relay access denied"


def test_a_multi_line_reply_joins_its_text_and_drops_repeated_codes() -> None:
    decoded = decode("550-5.7.1 first\r\n550 5.7.1 second")
    assert (decoded.code, decoded.enhanced) == (550, "5.7.1")
    assert decoded.text == "first\nsecond"
    assert decoded.notes == ()
    ehlo = decode("250-mx.campus.test\r\n250-PIPELINING\r\n250 SIZE 10240000")
    assert (ehlo.code, ehlo.text) == (250, "mx.campus.test\nPIPELINING\nSIZE 10240000")


def test_odd_multi_line_replies_are_flagged_or_refused() -> None:
    cut = decode("550-5.7.1 first line only")
    assert any("more lines follow" in note for note in cut.notes)
    glued = decode("250 first\n250 second")
    assert any("more than one reply" in note for note in glued.notes)
    with pytest.raises(ReplyCodeError, match=r"different codes \(250 and 251\)"):
        decode("250-first\r\n251 second")


def test_a_reply_quoted_by_exim() -> None:
    decoded = decode("SMTP error from remote mail server after RCPT TO:<bob@x>: 550 5.1.1 "
                     "<bob@x>: Recipient address rejected: User unknown")
    assert (decoded.code, decoded.enhanced) == (550, "5.1.1")
    assert decoded.text == "<bob@x>: Recipient address rejected: User unknown"
    assert decoded.context == "SMTP error from remote mail server after RCPT TO:<bob@x>:"


def test_a_reply_quoted_by_exim_over_two_lines_in_a_bounce() -> None:
    bounce = ("This message was created automatically by mail delivery software.\n\n"
              "  bob@campus.test\n"
              "    SMTP error from remote mail server after RCPT TO:<bob@campus.test>:\n"
              "    550 5.1.1 <bob@campus.test>: Recipient address rejected: User unknown\n"
              "\n------ This is a copy of the message, including all the headers. ------\n"
              "Received: from [203.0.113.5] by mx.example.test with esmtp; 2011\n")
    decoded = decode(bounce)
    assert (decoded.code, decoded.enhanced) == (550, "5.1.1")
    assert decoded.text == "<bob@campus.test>: Recipient address rejected: User unknown"
    assert decoded.context == \
        "SMTP error from remote mail server after RCPT TO:<bob@campus.test>:"


def test_a_postfix_bounce_wrapped_over_lines() -> None:
    bounce = ("<bob@campus.test>: host mx.campus.test[192.0.2.25] said: 550 5.1.1\n"
              "    <bob@campus.test>: Recipient address rejected: User unknown in local\n"
              "    recipient table (in reply to RCPT TO command)\n"
              "Final-Recipient: rfc822; bob@campus.test\n")
    decoded = decode(bounce)
    assert (decoded.code, decoded.enhanced) == (550, "5.1.1")
    assert decoded.text == ("<bob@campus.test>: Recipient address rejected: User unknown in "
                            "local recipient table")
    assert decoded.context == ("<bob@campus.test>: host mx.campus.test[192.0.2.25] said: … "
                               "in reply to RCPT TO command")


def test_a_multi_line_reply_quoted_on_wrapped_lines() -> None:
    quoted = ("host mx.campus.test[192.0.2.25] said: 550-5.7.1 Unauthenticated email from\n"
              "    northwind.test is not accepted due to 550-5.7.1 the domain's DMARC\n"
              "    policy. 550 5.7.1 Contact the domain's administrator. (in reply to end\n"
              "    of DATA command)")
    decoded = decode(quoted)
    assert (decoded.code, decoded.enhanced) == (550, "5.7.1")
    assert decoded.text == ("Unauthenticated email from northwind.test is not accepted due "
                            "to the domain's DMARC policy. Contact the domain's "
                            "administrator.")
    assert decoded.context.endswith("in reply to end of DATA command")


def test_a_reply_quoted_without_an_enhanced_code() -> None:
    decoded = decode("Remote host said: 554 Transaction failed\nGiving up on 192.0.2.1.")
    assert (decoded.code, decoded.enhanced, decoded.text) == (554, None, "Transaction failed")
    assert decoded.context == "Remote host said:"


def test_numbers_around_the_reply_are_not_taken_for_it() -> None:
    decoded = decode("host mx.campus.test[192.0.2.250]:2525 said on 2011-03-08: "
                     "451 4.7.1 Greylisted")
    assert (decoded.code, decoded.enhanced, decoded.text) == (451, "4.7.1", "Greylisted")


def test_a_delivery_status_notification_field() -> None:
    decoded = decode("Diagnostic-Code: smtp; 550 5.1.1 <bob@x>... User unknown")
    assert (decoded.code, decoded.enhanced, decoded.context) == (550, "5.1.1",
                                                                 "Diagnostic-Code: smtp;")
    status = decode("Status: 4.4.3")
    assert (status.code, status.enhanced, status.category) == (None, "4.4.3", "retry later")


def test_replies_as_pythons_smtplib_prints_them() -> None:
    data = decode(str(smtplib.SMTPDataError(554, b"5.7.1 first\n5.7.1 second")))
    assert (data.code, data.enhanced, data.text) == (554, "5.7.1", "first\nsecond")
    refused = decode(str(smtplib.SMTPRecipientsRefused(
        {"bob@x": (550, b"5.1.1 <bob@x>: Recipient address rejected")})))
    assert (refused.code, refused.enhanced) == (550, "5.1.1")
    assert (refused.text, refused.context) == ("<bob@x>: Recipient address rejected", "bob@x")
    sender = decode(str(smtplib.SMTPSenderRefused(553, b"5.1.8 bad sender", "a@b")))
    assert (sender.code, sender.enhanced, sender.text, sender.context) == \
        (553, "5.1.8", "bad sender", "a@b")
    auth = decode(str(smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication failed")))
    assert (auth.code, auth.enhanced, auth.category) == (535, "5.7.8", "give up")
    plain = decode("(550, 'no such user')")
    assert (plain.code, plain.enhanced, plain.text) == (550, None, "no such user")
    odd_bytes = decode("(550, b'\\xff bad')")
    assert odd_bytes.code == 550 and odd_bytes.text.endswith(" bad")


# -- what the sender does, and who acts -----------------------------------------------------


@pytest.mark.parametrize("reply, category", [
    ("220 mx.campus.test ESMTP", "done"),
    ("250 2.0.0 Ok: queued as 4B2C1", "done"),
    ("235 2.7.0 Authentication successful", "done"),
    ("354 End data with <CR><LF>.<CR><LF>", "continue"),
    ("334 VXNlcm5hbWU6", "continue"),
    ("421 4.7.0 closing", "retry later"),
    ("451 4.7.1 Greylisted", "retry later"),
    ("452 4.2.2 Mailbox full", "retry later"),
    ("550 5.1.1 User unknown", "give up"),
    ("552 5.2.2 Mailbox full", "give up"),
    ("554 No SMTP service here", "give up"),
    ("571 Blocked", "give up"),
])
def test_the_category_follows_the_class(reply: str, category: str) -> None:
    assert action_category(reply) == category
    assert decode(reply).category == category
    assert category in CATEGORIES


def test_action_words_say_what_rfc_5321_says_per_class() -> None:
    assert decode(250).action.startswith("Done")
    assert "RFC 5321 section 4.2.5" in decode(250).action
    data = decode(354).action
    assert "send the rest" in data and "<CRLF>.<CRLF>" in data
    auth = decode("334 VXNlcm5hbWU6").action
    assert "AUTH" in auth and "RFC 4954 section 4" in auth
    later = decode("451 4.7.1 Greylisted").action
    assert later.startswith("Retry later") and "RFC 5321 section 4.5.4.1" in later
    assert "30 minutes" in later and "4-5" in later
    assert "closes the connection" in decode(421).action
    assert "closes the connection" not in decode(451).action
    give_up = decode("550 5.1.1 no such user").action
    assert give_up.startswith("Give up")
    assert "RFC 3464" in give_up and "RFC 5321 section 6.1" in give_up


def test_the_reply_code_decides_when_the_enhanced_class_disagrees() -> None:
    decoded = decode("250 5.7.1 odd")
    assert decoded.category == "done"
    assert any("RFC 2034 section 4" in note and "does not agree" in note
               for note in decoded.notes)
    assert "should match the reply's first digit" in explain_reply("250 5.7.1")
    assert not any("does not agree" in note for note in decode("550 5.7.1 x").notes)


def test_other_odd_replies_get_notes() -> None:
    assert any("3xx replies carry no enhanced status code" in note
               for note in decode("354 2.0.0 go ahead").notes)
    assert any("allows only 0 to 5" in note for note in decode("571 Blocked").notes)
    assert any("'Username:'" in note for note in decode("334 VXNlcm5hbWU6").notes)
    assert not any("base64" in note for note in decode("334 not base64!").notes)


@pytest.mark.parametrize("reply, who", [
    ("250 2.0.0 ok", "nobody"),
    ("354 go ahead", "the sending client"),
    ("550 5.1.1 User unknown", "the sender: addressing errors"),
    ("552 5.2.2 Mailbox full", "the recipient"),
    ("554 5.3.4 Message too big for system", "destination system's administrator"),
    ("550 5.7.1 Relay access denied", "the sender, the recipient's side, or both"),
    ("535 5.7.8 Authentication credentials invalid", "the sender: log in"),
    ("530 5.7.0 Authentication required", "the sender: log in"),
    ("501 Syntax error in parameters", "the sending software"),
    ("550 Access denied", "not said by the code alone"),
])
def test_who_acts_follows_the_enhanced_subject(reply: str, who: str) -> None:
    assert who in decode(reply).who_acts


def test_after_a_4xx_the_queue_acts_first_then_the_subjects_owner() -> None:
    who = decode("451 4.4.3 Temporary lookup failure").who_acts
    assert who.startswith("nobody at once: the sending queue retries")
    assert "destination or of a system on the way" in who
    assert decode("451 local error").who_acts.startswith("nobody at once")


# -- the myths ---------------------------------------------------------------------------


def test_every_myth_is_sourced_in_rfcs() -> None:
    assert len(MYTHS) >= 8
    for myth in MYTHS:
        assert myth.claim and myth.truth and myth.sources and myth.about
        for source in myth.sources:
            assert re.fullmatch(r"RFC \d{3,4}( section \d+(\.\d+)*)?", source), source
    assert len({m.claim for m in MYTHS}) == len(MYTHS)


def test_the_required_myths_are_there() -> None:
    assert "RFC 5321 section 4.2.1" in myth_about("DNS failure").sources
    assert "4.4.3" in myth_about("DNS failure").truth
    assert "354" in myth_about("3xx").truth and "334" in myth_about("3xx").truth
    assert "RFC 5321 section 4.5.4.1" in myth_about("4xx").sources
    assert "5.1.1" in myth_about("550").truth and "5.7.1" in myth_about("550").truth
    assert "RFC 5321 section 4.2" in myth_about("decoration").sources
    assert "transient" in myth_about("421").truth
    assert "RFC 3463 section 3.8" in myth_about("blacklisted").sources
    assert "No SMTP service here" in myth_about("554").truth
    assert "RFC 5321 section 3.1" in myth_about("554").sources


def test_decode_attaches_the_myths_that_apply() -> None:
    relay = claims(decode("550 5.7.1 Relay access denied"))
    assert {myth_about("550").claim, myth_about("blacklisted").claim,
            myth_about("DNS failure").claim, myth_about("decoration").claim} <= relay
    assert claims(decode("354 go ahead")) == {myth_about("3xx").claim}
    closing = claims(decode("421 4.7.0 closing"))
    assert {myth_about("421").claim, myth_about("4xx").claim} <= closing
    assert myth_about("550").claim not in closing
    assert myth_about("DNS failure").claim in claims(decode("451 4.4.3 lookup failure"))
    assert myth_about("554").claim in claims(decode("554 No SMTP service here"))
    assert myth_about("Mailbox full").claim in claims(decode("452 4.2.2 full"))
    assert myth_about("decoration").claim not in claims(decode("550 no such user"))
    assert claims(decode(550)) == {myth_about("DNS failure").claim, myth_about("550").claim}


def test_every_myth_is_shown_by_some_example_of_the_explorer() -> None:
    shown = set().union(*(claims(decode(line)) for _label, line in EXAMPLES))
    assert shown == {m.claim for m in MYTHS}


def test_myth_table_renders_as_text_and_html() -> None:
    table = myth_table()
    assert len(table.rows) == len(MYTHS)
    text = str(table)
    page = table._repr_html_()
    for myth in MYTHS:
        assert myth.claim in text
    assert "&lt;CRLF&gt;.&lt;CRLF&gt;" in page and "<CRLF>" not in page


# -- rendering ------------------------------------------------------------------------------


def test_decoded_renders_as_text() -> None:
    text = str(decode("SMTP error from remote mail server after RCPT TO:<bob@x>: "
                      "550 5.1.1 <bob@x>: User unknown"))
    assert text.startswith("Decoded reply: 550 5.1.1\n")
    assert "the server's words: <bob@x>: User unknown" in text
    assert "quoted by: SMTP error from remote mail server" in text
    assert "what the sender does: Give up" in text
    assert "who acts: the sender" in text
    assert "✘ 550 always means that the user does not exist." in text


def test_decoded_renders_as_escaped_html() -> None:
    page = decode("550 5.1.1 <bob@x>: <b>User</b> unknown")._repr_html_()
    assert "<table>" in page and "Myths this reply invites" in page
    assert "&lt;bob@x&gt;: &lt;b&gt;User&lt;/b&gt; unknown" in page
    assert "<b>User</b>" not in page
    assert "Myths" not in decode("235")._repr_html_()


def test_decoded_html_shows_the_error_sentence_instead_of_raising() -> None:
    assert decoded_html("354 go ahead").startswith("<div><table>")
    page = decoded_html("<script>hello</script>")
    assert "holds no SMTP reply" in page and "<script>" not in page


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, message", [
    ("", "nothing to decode"),
    ("   \r\n ", "nothing to decode"),
    ("hello", "holds no SMTP reply"),
    ("600", "holds no SMTP reply"),
    ("99", "holds no SMTP reply"),
    ("2500", "holds no SMTP reply"),
    ("6.1.1", "holds no SMTP reply"),
    ("199", "no 1yz replies"),
    ("X.7.1", "X in place of the class"),
    ("\x00\x01", "holds no SMTP reply"),
    (700, "holds no SMTP reply"),
    (-550, "holds no SMTP reply"),
    (199, "no 1yz replies"),
    (None, "not a NoneType"),
    (5.5, "not a float"),
    ([550], "not a list"),
    (True, "not a bool"),
    ("5" * 200_001, "far more than a reply"),
])
def test_bad_input_raises_a_reply_code_error_with_a_sentence(bad: object, message: str) -> None:
    with pytest.raises(ReplyCodeError, match=message) as raised:
        decode(bad)  # type: ignore[arg-type]
    assert isinstance(raised.value, LabError)
    assert str(raised.value).endswith(".")


def test_decode_never_raises_anything_else_on_random_input() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    alphabet = st.sampled_from(list("0123456789 .-\r\n\t(),'\"b\\xX:<>@;") + ["550", "5.7.1",
                                                                              "\u00e9", "\x00"])
    texts = st.one_of(st.text(), st.lists(alphabet, max_size=30).map("".join))

    @hypothesis.settings(max_examples=100, deadline=None, derandomize=True, database=None)
    @hypothesis.given(st.one_of(texts, st.binary(), st.integers()))
    def never_raises_anything_else(given: object) -> None:
        try:
            decoded = decode(given)  # type: ignore[arg-type]
        except ReplyCodeError as error:
            assert str(error)
        else:
            assert decoded.category in CATEGORIES
            assert str(decoded) and decoded._repr_html_()

    never_raises_anything_else()


# -- the exercise ------------------------------------------------------------------------------

REPLIES = ["451 4.7.1 Greylisted, try again later", "354 End data with <CR><LF>.<CR><LF>",
           "550 5.1.1 User unknown", "250 2.0.0 Ok: queued"]
RIGHT = {REPLIES[0]: "retry later", REPLIES[1]: "continue", REPLIES[2]: "give up",
         REPLIES[3]: "done"}


def test_judge_right_answers_in_any_spelling() -> None:
    assert judge_reply_actions(RIGHT, REPLIES).right
    relaxed = {REPLIES[0]: "Try again later", REPLIES[1]: "send the rest",
               REPLIES[2]: "Bounce.", REPLIES[3]: "OK"}
    assert judge_reply_actions(relaxed, REPLIES).right
    assert judge_reply_actions(lambda: {REPLIES[0]: "retry", REPLIES[1]: "CONTINUE",
                                        REPLIES[2]: "fail", REPLIES[3]: "done"}, REPLIES).right
    in_order = ["retry-later", "continue", "give_up", "done"]
    assert judge_reply_actions(in_order, REPLIES).right
    verdict = judge_reply_actions(RIGHT, REPLIES)
    assert verdict.message.startswith("right: ")
    assert f"{REPLIES[0]!r}: retry later" in verdict.message


def test_judge_with_labelled_replies() -> None:
    replies = {"a": "421 4.7.0 closing", "b": "554 No SMTP service here"}
    assert judge_reply_actions({"a": "retry later", "b": "give up"}, replies).right
    assert judge_reply_actions({"421 4.7.0 closing": "retry", "b": "give up"}, replies).right
    wrong = judge_reply_actions({"a": "give up", "b": "give up"}, replies)
    assert wrong.status == "wrong"
    assert "'a (421 4.7.0 closing)': not 'give up'" in wrong.message
    assert "first digit of 421 (4)" in wrong.message


def test_judge_wrong_answers_name_the_reply_and_point_at_the_class_digit() -> None:
    verdict = judge_reply_actions({**RIGHT, REPLIES[0]: "give up"}, REPLIES)
    assert verdict.status == "wrong"
    assert f"{REPLIES[0]!r}: not 'give up'" in verdict.message
    assert "Hint: look at the first digit of 451 (4)" in verdict.message
    assert "RFC 5321 section 4.2.1" in verdict.message
    assert REPLIES[2] not in verdict.message  # only the wrong one is named
    enhanced_only = judge_reply_actions({"4.2.2": "give up"}, ["4.2.2"])
    assert "the class of 4.2.2 (4)" in enhanced_only.message


def test_judge_unknown_words_missing_entries_and_bad_shapes() -> None:
    unknown = judge_reply_actions({**RIGHT, REPLIES[1]: "maybe"}, REPLIES)
    assert unknown.status == "wrong"
    assert "'maybe' is not one of done, continue, retry later, give up" in unknown.message
    missing = judge_reply_actions({REPLIES[0]: "retry later"}, REPLIES)
    assert missing.status == "wrong" and f"no answer for {REPLIES[1]!r}" in missing.message
    for shape in ("retry later", 42, ["done"]):
        assert "should be a dict" in judge_reply_actions(shape, REPLIES).message


def test_judge_unanswered() -> None:
    def placeholder() -> dict[str, str]:
        raise NotImplementedError

    for answer in (placeholder, None, ...):
        verdict = judge_reply_actions(answer, REPLIES)
        assert verdict.status == "unanswered" and "not answered yet" in verdict.message


def test_check_reply_actions_reports(capsys: pytest.CaptureFixture[str]) -> None:
    check_reply_actions(RIGHT, REPLIES)
    assert capsys.readouterr().out.startswith("✔ right:")
    with pytest.raises(CheckFailed, match="not 'done'"):
        check_reply_actions({**RIGHT, REPLIES[2]: "done"}, REPLIES)


def test_normalise_action() -> None:
    assert normalise_action(" Retry-Later! ") == "retry later"
    assert normalise_action("retyr later") == "retry later"  # a slip
    assert normalise_action("GIVE_UP") == "give up"
    assert normalise_action("hard bounce") == "give up"
    assert normalise_action("deferred") == "retry later"
    assert normalise_action("none") is None
    assert normalise_action("banana") is None


def test_judge_returns_a_verdict() -> None:
    assert isinstance(judge_reply_actions(RIGHT, REPLIES), Verdict)


# -- the explorer ------------------------------------------------------------------------------


def test_the_explorer_builds_and_reacts() -> None:
    pytest.importorskip("ipywidgets")
    from labsupport.teach.widgets import reply_decoder as decoder

    panel = decoder()
    (box, pick), view = panel.children[0].children, panel.children[1]
    assert box.value == EXAMPLES[1][1]
    assert "Decoded reply: 550 5.7.1" in view.value
    assert panel.decoded().code == 550
    box.value = "421 4.7.0 closing"  # what typing does (continuous_update is off)
    assert "Decoded reply: 421 4.7.0" in view.value and panel.decoded().code == 421
    labels = [label for label, _value in pick.options]
    assert len(labels) == len(EXAMPLES) + 1
    pick.value = dict(EXAMPLES)["AUTH challenge: 334"]
    assert box.value == "334 VXNlcm5hbWU6"
    assert "Decoded reply: 334" in view.value and "Username:" in view.value
    box.value = "nonsense"
    assert "holds no SMTP reply" in view.value and panel.decoded() is None
    assert decoder("354 go").decoded().category == "continue"
