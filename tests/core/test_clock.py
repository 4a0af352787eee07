"""labsupport.core.clock: the lab's own time, against a fake real-time source."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labsupport.core.clock import LabClock


class FakeTime:
    """A real-time source that moves only when told."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def real() -> FakeTime:
    return FakeTime()


@pytest.fixture
def clock(real: FakeTime) -> LabClock:
    return LabClock(realtime=real)


def test_follows_real_time(clock: LabClock, real: FakeTime) -> None:
    assert clock.time() == 1_000_000.0
    real.now += 5
    assert clock.time() == 1_000_005.0
    assert not clock.frozen


def test_advance_moves_forward_and_keeps_running(clock: LabClock, real: FakeTime) -> None:
    clock.advance(3600)
    assert clock.time() == 1_003_600.0
    real.now += 1
    assert clock.time() == 1_003_601.0


def test_advance_refuses_to_go_back(clock: LabClock) -> None:
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    assert clock.time() == 1_000_000.0


def test_set_jumps_and_keeps_running(clock: LabClock, real: FakeTime) -> None:
    clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    assert clock.now() == datetime(2030, 1, 1, tzinfo=UTC)
    real.now += 10
    assert clock.now() == datetime(2030, 1, 1, 0, 0, 10, tzinfo=UTC)
    clock.set(0)  # set() may go back
    assert clock.time() == 0.0


def test_freeze_unfreeze(clock: LabClock, real: FakeTime) -> None:
    clock.freeze()
    assert clock.frozen
    real.now += 100
    assert clock.time() == 1_000_000.0
    clock.advance(60)  # advancing a frozen clock moves it, and it stays frozen
    assert clock.time() == 1_000_060.0 and clock.frozen
    clock.set(5.0)
    assert clock.time() == 5.0 and clock.frozen
    clock.unfreeze()
    assert not clock.frozen and clock.time() == 5.0
    real.now += 2
    assert clock.time() == 7.0


def test_freeze_at_a_time(clock: LabClock) -> None:
    clock.freeze(at=0)
    assert clock.time() == 0.0
    assert clock.now() == datetime(1970, 1, 1, tzinfo=UTC)
    clock.freeze(at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    assert clock.now().isoformat() == "2026-11-28T12:00:00+00:00"


def test_reset_is_back_to_real_time(clock: LabClock, real: FakeTime) -> None:
    clock.advance(500)
    clock.freeze()
    clock.reset()
    assert not clock.frozen and clock.time() == real.now


def test_listeners_hear_every_change(clock: LabClock) -> None:
    heard: list[float] = []
    clock.on_change(heard.append)
    clock.advance(10)
    clock.set(100)
    clock.freeze(at=200)
    clock.advance(1)
    clock.reset()
    assert heard == [1_000_010.0, 100.0, 200.0, 201.0, 1_000_000.0]
    with pytest.raises(ValueError):
        clock.advance(-5)
    assert len(heard) == 5  # a refused change is not announced


def test_now_is_aware_utc_and_repr_says_the_state(clock: LabClock) -> None:
    assert clock.now().tzinfo == UTC
    assert repr(clock).endswith(" running>")
    clock.freeze(at=0)
    assert repr(clock) == "<LabClock 1970-01-01T00:00:00+00:00 frozen>"

