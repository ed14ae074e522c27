"""The latency estimator that survives a busy machine, checked with a fake clock (no model, no timing)."""

from __future__ import annotations

import pytest

from nas_core.metrics.hardware import NOISY_SPREAD, estimate_latency, interleaved_latencies


class FakeClock:
    """A clock that only moves when a fake forward pass 'runs' for its scripted duration."""

    def __init__(self) -> None:
        self.t = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.t

    def runner(self, name: str, durations):
        it = iter(durations)

        def run() -> None:
            self.calls.append(name)
            self.t += next(it)

        return run


def test_a_load_burst_in_one_round_does_not_move_the_estimate_but_shows_as_spread():
    clock = FakeClock()
    quiet, busy = [0.001] * 4, [0.040] * 4  # 1 ms per call; one round with another process hogging the CPU
    fns = {"batch": clock.runner("batch", quiet + busy + quiet + quiet + quiet),
           "single": clock.runner("single", [0.0005] * 20)}
    est = interleaved_latencies(fns, repeats=20, rounds=5, clock=clock)
    assert est["batch"].seconds == pytest.approx(0.001)  # min of round medians, not the mean (8.8 ms)
    assert est["batch"].round_medians[1] == pytest.approx(0.040)
    assert est["batch"].spread == pytest.approx(39.0)
    assert est["batch"].noisy
    assert est["single"].seconds == pytest.approx(0.0005) and not est["single"].noisy


def test_rounds_take_turns_between_the_measurements():
    clock = FakeClock()
    fns = {"a": clock.runner("a", [0.001] * 6), "b": clock.runner("b", [0.002] * 6)}
    interleaved_latencies(fns, repeats=6, rounds=3, clock=clock)
    assert clock.calls == ["a", "a", "b", "b"] * 3  # interleaved round by round, not all of a then all of b


def test_a_single_stall_inside_a_round_is_ignored_by_the_median():
    clock = FakeClock()
    fns = {"m": clock.runner("m", [0.001, 0.001, 0.5, 0.001] * 2)}
    est = interleaved_latencies(fns, repeats=8, rounds=2, clock=clock)["m"]
    assert est.seconds == pytest.approx(0.001) and est.spread == pytest.approx(0.0)


def test_estimate_latency_spread_and_threshold():
    e = estimate_latency([0.010, 0.012, 0.011])
    assert e.seconds == 0.010 and e.spread == pytest.approx(0.2) and not e.noisy
    assert estimate_latency([0.01, 0.01 * (1 + NOISY_SPREAD + 0.01)]).noisy
    with pytest.raises(ValueError):
        estimate_latency([])


def test_the_cpu_clock_is_read_around_the_same_calls_and_reported_beside_the_wall_clock():
    """A busy machine stretches wall time (another process holds the core) but not this process's
    CPU time: the wall figure of a stalled round rises, the CPU figure stays the model's own cost."""
    wall = FakeClock()
    cpu = {"t": 0.0}

    def run_once(dur_wall: float, dur_cpu: float):
        def f():
            wall.t += dur_wall
            cpu["t"] += dur_cpu
        return f

    calls = iter([run_once(0.004, 0.001)] * 4 + [run_once(0.001, 0.001)] * 4)
    est = interleaved_latencies({"m": lambda: next(calls)()}, repeats=8, rounds=2, clock=wall,
                                cpu_clock=lambda: cpu["t"])["m"]
    assert est.seconds == pytest.approx(0.001) and est.spread == pytest.approx(3.0)
    assert est.cpu_seconds == pytest.approx(0.001)
    assert interleaved_latencies({"m": run_once(0.001, 0.001)}, repeats=2, clock=wall)["m"].cpu_seconds is None
