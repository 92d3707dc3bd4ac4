"""Queue places and time estimates (pipeline/actors/eta.py): pure."""

from __future__ import annotations

import pytest

from pipeline.actors.eta import Pending, Rates, plan, remaining, size_class
from pipeline.state.rows import Throughput


def _sample(w: int, h: int, seconds: float, duration: float = 10.0, n: int = 5) -> Throughput:
    return Throughput(width=w, height=h, duration=duration, variations=n, seconds=seconds)


@pytest.mark.parametrize(("w", "h", "cls"), [
    (320, 240, 240), (640, 360, 360), (1280, 720, 720), (720, 1280, 720), (1920, 1080, 1080),
    (1080, 1920, 1080), (3840, 2160, 2160), (100, 50, 240), (16000, 9000, 4320),
])
def test_size_classes_go_by_the_shorter_side(w, h, cls):
    assert size_class(w, h) == cls


def test_rates_are_the_median_of_the_latest_renders_of_a_size():
    # 10 s × 5 variations in 25, 20 and 100 s: rates 2.0, 2.5 and 0.5 → median 2.0.
    rates = Rates.measure([_sample(1280, 720, 25), _sample(1280, 720, 20),
                           _sample(1280, 720, 100)])
    assert rates.by_class == {720: 2.0}
    assert rates.render_seconds(1280, 720, 30.0, 4) == pytest.approx(60.0)


def test_only_the_latest_ten_of_a_size_count():
    old = [_sample(640, 360, 100)] * 20
    new = [_sample(640, 360, 10)] * 10
    assert Rates.measure(new + old).by_class == {360: 5.0}


def test_an_unmeasured_size_borrows_the_nearest_scaled_by_pixels():
    rates = Rates.measure([_sample(1280, 720, 10)])  # 5 source-s·variations per s at 720
    # 1080p has 2.25× the pixels of 720p: 2.25× as long.
    assert rates.render_seconds(1920, 1080, 10.0, 5) == pytest.approx(22.5)
    assert rates.render_seconds(640, 360, 10.0, 5) == pytest.approx(10 * (360 / 720) ** 2)


def test_no_measurement_no_estimate():
    assert Rates.measure([]).render_seconds(1280, 720, 10.0, 5) is None
    assert Rates({720: 1.0}).render_seconds(1280, 720, None, 5) is None


def test_a_running_render_extrapolates_from_its_progress_once_under_way():
    assert remaining(Pending("a", estimate=100.0, progress=0.0, elapsed=30.0)) == 70.0
    assert remaining(Pending("a", estimate=100.0, progress=50.0, elapsed=20.0)) == 20.0
    assert remaining(Pending("a", estimate=10.0, progress=5.0, elapsed=30.0)) == 0.0
    assert remaining(Pending("a", estimate=None, progress=5.0, elapsed=3.0)) is None


def test_the_queue_is_played_forward_on_the_workers():
    running = [Pending("r", estimate=100.0, progress=50.0, elapsed=50.0)]  # 50 s left
    queued = [Pending("q1", 30.0), Pending("q2", 40.0), Pending("q3", 10.0)]
    one = plan(running, queued, workers=1)
    assert one["r"].position is None and one["r"].eta == 50.0
    assert [(one[q].position, one[q].starts_in, one[q].eta) for q in ("q1", "q2", "q3")] == [
        (1, 50.0, 80.0), (2, 80.0, 120.0), (3, 120.0, 130.0)]
    two = plan(running, queued, workers=2)
    # q1 takes the idle slot at once, q2 the one free at 30 s, q3 the running one's at 50 s.
    assert [(two[q].starts_in, two[q].eta) for q in ("q1", "q2", "q3")] == [
        (0.0, 30.0), (30.0, 70.0), (50.0, 60.0)]


def test_paused_or_unknown_work_keeps_places_but_gives_no_times():
    queued = [Pending("q1", 30.0), Pending("q2", None), Pending("q3", 10.0)]
    paused = plan([], queued, workers=1, paused=True)
    assert [(paused[q].position, paused[q].eta) for q in ("q1", "q2", "q3")] == [
        (1, None), (2, None), (3, None)]
    gap = plan([], queued, workers=1)
    # Nothing after an unknown estimate can be timed either.
    assert [(gap[q].starts_in, gap[q].eta) for q in ("q1", "q2", "q3")] == [
        (0.0, 30.0), (None, None), (None, None)]
