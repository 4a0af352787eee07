"""The pictures of lesson 09 (labsupport.teach.plots_transport): the chain of trust, with a
broken link and the links below it, and the grid of outcomes under the downgrade attack."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from labsupport import checks, plots  # noqa: E402
from labsupport.dns.nameserver import DNSServer  # noqa: E402
from labsupport.dns.zone import ZoneSet  # noqa: E402
from labsupport.mail.delivery_items import DeliveryAttempt  # noqa: E402
from labsupport.teach.checks_transport import DefenceRun  # noqa: E402
from labsupport.teach.plots_transport import LINK_COLOURS, OUTCOME_COLOURS  # noqa: E402


def _texts(fig: matplotlib.figure.Figure) -> dict[str, str]:
    """Each text of the figure and its colour."""
    return {t.get_text(): to_hex(t.get_color()) for ax in fig.axes for t in ax.texts}


def test_a_secure_chain_is_green_from_the_anchor_down(zones: ZoneSet) -> None:
    server = DNSServer(zones)
    chain = checks.trust_chain(server, "mx1.northwind.test")
    fig = plots.chain_of_trust(chain)
    texts = _texts(fig)
    links = {t: c for t, c in texts.items() if t.startswith(("✔", "✘", "(not reached)"))}
    assert sorted(links) == sorted(f"✔ {link.how}" for link in chain.links)
    assert set(links.values()) == {LINK_COLOURS["ok"]}
    assert chain.anchor in texts and chain.key in texts and chain.data in texts
    assert "the lab serves no parent zones" in "".join(texts)
    assert fig.axes[0].get_title().startswith("The chain of trust of mx1.northwind.test A: "
                                              "secure")
    plt.close(fig)


def test_a_broken_key_set_greys_out_what_is_below(zones: ZoneSet) -> None:
    server = DNSServer(zones)
    assert server.dnssec is not None
    server.dnssec.corrupt("campus.test", "DNSKEY")
    chain = checks.trust_chain(server, "mx-a.campus.test")
    texts = _texts(plots.chain_of_trust(chain))
    anchor, keys, data = (link.how for link in chain.links)
    assert texts[f"✔ {anchor}"] == LINK_COLOURS["ok"]
    assert texts[f"✘ {keys}"] == LINK_COLOURS["fails"]
    assert texts[f"(not reached) {data}"] == LINK_COLOURS["unreached"]
    plt.close("all")


def _run(case: str, verdict: str, relay: bool, **flags: object) -> DefenceRun:
    attempt = DeliveryAttempt(verdict="delivered" if verdict.startswith("delivered")
                              else "deferred", summary="", item_id="X", domain="a.test",
                              mail_from="", recipients=("u@a.test",), at=0.0)
    return DefenceRun(verdict=verdict, summary="", case=case, recipient="u@a.test",
                      relay=relay, attempt=attempt, **flags)  # type: ignore[arg-type]


def test_the_defence_grid_colours_each_outcome() -> None:
    table = {
        "no defence": {"calm": _run("no defence", "delivered in the clear", False),
                       "relay": _run("no defence", "delivered in the clear", True)},
        "testing": {"calm": _run("testing", "delivered over TLS", False, tls=True),
                    "relay": _run("testing", "delivered in the clear, reported", True,
                                  reported=("starttls-not-supported",))},
        "DANE": {"calm": _run("DANE", "delivered over TLS", False, tls=True),
                 "relay": _run("DANE", "deferred (454 4.7.4)", True)},
    }
    fig = plots.defence_grid(table)
    ax = fig.axes[0]
    cells = {t.get_text(): t for t in ax.texts}
    assert set(cells) == {"delivered in the clear", "delivered over TLS",
                          "delivered in the clear, reported\nstarttls-not-supported",
                          "deferred (454 4.7.4)"}
    faces = [to_hex(p.get_facecolor()) for p in ax.patches]
    assert faces == [OUTCOME_COLOURS[k] for k in ("exposed", "exposed", "protected", "reported",
                                                  "protected", "protected")]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["calm", "relay"]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "no defence\n(mail to a.test)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 3 and legend[1] == "in the clear, but reported (TLS-RPT)"
    plt.close(fig)
