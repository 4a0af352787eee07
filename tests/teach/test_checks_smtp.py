"""Exercise checks of notebooks/02-smtp-dialogue.ipynb, against the running lab."""

from __future__ import annotations

import labsupport
from labsupport.teach.checks import judge_commands_to_354, judge_partly_accepted

MESSAGE = "From: student@northwind.test\r\nSubject: exercise\r\n\r\nHello.\r\n"


def _mx(lab: labsupport.Lab) -> tuple[str, int]:
    return "127.0.0.1", lab.smtp.port("mx")


def test_354_right_and_nothing_delivered(clean_lab: labsupport.Lab) -> None:
    before = clean_lab.mail.count()
    answer = ["EHLO student.example", "MAIL FROM:<s@northwind.test>",
              "RCPT TO:<bob@northwind.test>", "DATA"]
    verdict = judge_commands_to_354(answer, *_mx(clean_lab))
    assert verdict.right and "354" in verdict.message
    assert clean_lab.mail.count() == before


def test_354_wrong_answers(clean_lab: labsupport.Lab) -> None:
    no_rcpt = judge_commands_to_354(["EHLO x.example", "MAIL FROM:<s@northwind.test>", "DATA"],
                                    *_mx(clean_lab))
    assert no_rcpt.status == "wrong" and "refused 'DATA'" in no_rcpt.message
    no_data = judge_commands_to_354(["EHLO x.example"], *_mx(clean_lab))
    assert no_data.status == "wrong" and "not 354" in no_data.message
    shape = judge_commands_to_354("EHLO x.example", *_mx(clean_lab))
    assert shape.status == "wrong" and "list of command lines" in shape.message


def test_354_unanswered(clean_lab: labsupport.Lab) -> None:
    def placeholder() -> list[str]:
        raise NotImplementedError("your answer here")

    assert judge_commands_to_354(placeholder, *_mx(clean_lab)).status == "unanswered"
    assert judge_commands_to_354(lambda: undefined_name, *_mx(clean_lab)).status == "unanswered"  # noqa: F821


def test_partly_accepted(clean_lab: labsupport.Lab) -> None:
    right = judge_partly_accepted(["bob@northwind.test", "nobody@northwind.test"],
                                  *_mx(clean_lab), MESSAGE)
    assert right.right and "bob@northwind.test was accepted" in right.message
    assert len(clean_lab.mail.messages("bob@northwind.test")) == 1
    both = judge_partly_accepted(["bob@northwind.test", "alice@northwind.test"],
                                 *_mx(clean_lab), MESSAGE)
    assert both.status == "wrong" and "'accepted'" in both.message
    neither = judge_partly_accepted(["x@northwind.test", "y@northwind.test"],
                                    *_mx(clean_lab), MESSAGE)
    assert neither.status == "wrong"
    assert judge_partly_accepted(["only@northwind.test"], *_mx(clean_lab), MESSAGE).status == \
        "wrong"
    assert judge_partly_accepted(None, *_mx(clean_lab), MESSAGE).status == "unanswered"
