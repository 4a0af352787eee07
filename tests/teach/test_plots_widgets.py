"""labsupport.teach.plots and labsupport.teach.widgets: pictures and explorers of MX selection."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from labsupport.dns.mx import mx_hosts  # noqa: E402
from labsupport.dns.zone import ZoneSet  # noqa: E402
from labsupport.teach.plots import first_choice_counts, mx_diagram, mx_spread  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_first_choice_is_balanced_for_equal_preferences(world: ZoneSet) -> None:
    result, counts = first_choice_counts("campus.test", world, trials=1000, seed=0)
    assert result.verdict == "mx"
    assert set(counts) == {"mx-a.campus.test", "mx-b.campus.test"}
    assert sum(counts.values()) == 1000
    for host, count in counts.items():
        assert 400 <= count <= 600, f"{host} came first {count} times out of 1000"
    assert first_choice_counts("campus.test", world, 1000, seed=0)[1] == counts  # repeatable


def test_first_choice_is_always_the_primary_for_northwind(world: ZoneSet) -> None:
    _result, counts = first_choice_counts("northwind.test", world, trials=1000, seed=3)
    assert dict(counts) == {"mx1.northwind.test": 1000}


def test_first_choice_of_a_domain_without_usable_hosts(world: ZoneSet) -> None:
    for domain in ("parked.test", "oldsite.example"):
        _result, counts = first_choice_counts(domain, world, trials=50)
        assert not counts


def test_mx_spread_is_a_bar_chart(world: ZoneSet) -> None:
    fig = mx_spread("campus.test", world, trials=200, seed=1)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    heights = sorted(bar.get_height() for bar in ax.patches)
    assert len(heights) == 2 and sum(heights) == 200
    assert "campus.test" in ax.get_title()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert any("mx-a.campus.test" in label and "preference 10" in label for label in labels)


def test_mx_spread_draws_into_given_axes(world: ZoneSet) -> None:
    fig, ax = plt.subplots()
    assert mx_spread("northwind.test", world, trials=10, ax=ax) is fig
    assert [bar.get_height() for bar in ax.patches] == [10]  # mx2 never comes first


def test_mx_diagram_marks_problems(world: ZoneSet) -> None:
    fig = mx_diagram(mx_hosts("careless.test", world))
    assert isinstance(fig, Figure)
    drawn = texts(fig)
    assert "careless.test" in drawn and "mail.careless.test" in drawn
    assert any("[alias]" in t for t in drawn)
    assert fig.axes[0].get_title(loc="left") == "Mail for careless.test: mx"


def test_mx_diagram_without_hosts_says_why(world: ZoneSet) -> None:
    fig = mx_diagram(mx_hosts("parked.test", world))
    assert any(t.startswith("null-mx: ") for t in texts(fig))


def test_mx_diagram_draws_into_given_axes(world: ZoneSet) -> None:
    result = mx_hosts("northwind.test", world)
    assert isinstance(mx_diagram(result), Figure)
    fig, ax = plt.subplots()
    assert mx_diagram(result, ax=ax) is fig
    assert "mx2.northwind.test" in [t.get_text() for t in ax.texts]


def test_mx_explorer_follows_the_combobox(world: ZoneSet,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ipywidgets")
    from labsupport.teach.widgets import mx_explorer

    panel = mx_explorer(world, ["northwind.test", "parked.test", "careless.test"])
    first = panel.result()
    assert first.domain == "northwind.test" and first.verdict == "mx"
    combobox, again, trace = panel.children[0].children
    combobox.value = "parked.test"
    assert panel.result().verdict == "null-mx"
    combobox.value = "bad..name"  # typed by hand: a verdict, not an exception
    assert panel.result().verdict == "invalid-name"
    combobox.value = "careless.test"
    before = panel.result()
    again.click()
    assert panel.result() is not before and panel.result().problems == ["alias"]
    trace.value = False
    assert panel.result().verdict == "mx"
    capsys.readouterr()


def test_mx_explorer_starts_on_the_given_value(world: ZoneSet) -> None:
    pytest.importorskip("ipywidgets")
    from labsupport.teach.widgets import mx_explorer

    panel = mx_explorer(world, ["northwind.test", "campus.test"], value="campus.test")
    assert panel.result().domain == "campus.test"
