"""The lab world read back from DNS (labsupport.dns.world) and drawn as a map
(labsupport.teach.world_map), as notebook 00 shows it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from labsupport import plots  # noqa: E402
from labsupport.dns.world import describe_zone, lab_world  # noqa: E402
from labsupport.dns.zone import ZoneSet  # noqa: E402
from labsupport.teach.world_map import PATH_COLOUR  # noqa: E402


def test_every_mail_domain_is_an_organisation_and_the_name_server_is_not(world: ZoneSet) -> None:
    found = lab_world(world)
    domains = [o.domain for o in found.organisations]
    assert "lab.test" not in domains
    assert sorted(domains) == sorted(d for d in world.mail_domains() if d != "lab.test")
    assert found.name_server == ("ns.lab.test", "192.0.2.53")


def test_kinds_and_descriptions_come_from_the_zone_files(world: ZoneSet) -> None:
    found = lab_world(world)
    kinds = {o.domain: o.kind for o in found.organisations}
    assert kinds["phisher.example"] == "attacker"
    assert {d for d, k in kinds.items() if k == "broken"} == {
        "careless.test", "oldsite.example", "homebrew.example"}
    assert found.organisation("northwind.test").description == \
        "Northwind Traders, the well-run company"
    # a broken set-up is described by its lesson, never by an empty line
    assert "no longer exists" in found.organisation("oldsite.example").description


def test_mail_hosts_are_what_a_sender_finds(world: ZoneSet) -> None:
    found = lab_world(world)
    northwind = found.organisation("northwind.test")
    assert northwind.mail_hosts == ["mx1.northwind.test", "mx2.northwind.test"]
    assert northwind.submission == ("192.0.2.30",)
    assert northwind.outbound[0] == "192.0.2.10"
    assert found.organisation("parked.test").mx.verdict == "null-mx"
    assert found.organisation("tinyshop.test").mx.verdict == "implicit-mx"
    assert found.organisation("newco.test").mx.records == ()
    campus = found.organisation("campus.test")
    assert [name for name, _ in campus.subdomains] == ["lists.campus.test"]


def test_the_world_follows_live_edits(zones: ZoneSet) -> None:
    zones.set("newco.test", "MX", "10 mx.newco.test.")
    zones.set("mx.newco.test", "A", "198.51.100.72")
    newco = lab_world(zones).organisation("newco.test")
    assert newco.mail_hosts == ["mx.newco.test"]
    assert newco.mx.hosts[0].addresses == ("198.51.100.72",)


def test_an_unknown_domain_is_named_with_the_known_ones(world: ZoneSet) -> None:
    with pytest.raises(KeyError, match="not a domain of the lab world; it has alumni.example"):
        lab_world(world).organisation("example.com")


def test_a_zone_file_without_a_header_describes_nothing(tmp_path: Path) -> None:
    bare = tmp_path / "bare.test.zone"
    bare.write_text("$ORIGIN bare.test.\n@ 3600 IN A 192.0.2.1\n")
    assert describe_zone(bare) == ("", "organisation")
    assert describe_zone(tmp_path / "missing.zone") == ("", "organisation")
    headed = tmp_path / "x.test.zone"
    headed.write_text("; x.test -- BROKEN ON PURPOSE.\n;\n; Lesson: a thing is wrong. More.\n")
    assert describe_zone(headed) == ("a thing is wrong", "broken")


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _path_arrows(fig: Figure) -> int:
    """How many arrows are drawn in the path's colour."""
    patches = [getattr(child, "arrow_patch", None) for ax in fig.axes for child in ax.texts]
    return sum(1 for patch in patches if patch is not None
               and matplotlib.colors.to_hex(patch.get_edgecolor()) == PATH_COLOUR)


def test_the_map_shows_every_organisation_and_the_path(world: ZoneSet) -> None:
    found = lab_world(world)
    fig = plots.world_map(found, sender="northwind.test", recipient="campus.test")
    texts = _texts(fig)
    for org in found.organisations:
        assert org.domain in texts
    assert "Alice's laptop" in texts and "Carol's mailbox" in texts
    assert any(t.startswith("3  SMTP to") for t in texts)
    assert _path_arrows(fig) == 4  # laptop -> submission -> outbound -> MX -> mailbox
    plt.close(fig)


def test_the_map_without_a_path_has_no_green_arrows(world: ZoneSet) -> None:
    fig = plots.world_map(lab_world(world), sender=None, recipient=None)
    assert _path_arrows(fig) == 0
    assert "Alice's laptop" not in _texts(fig)
    plt.close(fig)
