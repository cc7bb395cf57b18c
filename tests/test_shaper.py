"""The shaper's measurement: one-way delay, jitter and loss from round trips."""

from __future__ import annotations

import random

import pytest

from harness.shaper import shape_of


def test_a_round_trip_through_a_symmetric_link_halves_into_its_one_way_shape() -> None:
    rng = random.Random(5)
    sent, rtts = 20_000, []
    for _ in range(sent):
        if rng.random() < 0.2 or rng.random() < 0.2:  # lost going or coming back
            continue
        rtts.append(max(0.0, rng.gauss(30, 10)) + max(0.0, rng.gauss(30, 10)))
    shape = shape_of(sent, rtts)
    assert shape.delay_ms == pytest.approx(30, rel=0.02)
    assert shape.jitter_ms == pytest.approx(10, rel=0.03)
    assert shape.loss_percent == pytest.approx(20, rel=0.03)


def test_too_few_round_trips_measure_nothing() -> None:
    with pytest.raises(ValueError):
        shape_of(10, [5.0, 6.0, 7.0])


def test_what_the_path_itself_costs_is_taken_off() -> None:
    rng = random.Random(9)
    base = [0.4 + rng.gauss(0, 0.1) for _ in range(5000)]
    shaped = [0.4 + rng.gauss(0, 0.1) + rng.gauss(30, 10) + rng.gauss(30, 10) for _ in range(5000)]
    shape = shape_of(5000, shaped, base)
    assert shape.delay_ms == pytest.approx(30, rel=0.02)
    assert shape.jitter_ms == pytest.approx(10, rel=0.03)
    assert shape_of(5000, shaped).delay_ms > shape.delay_ms  # without it, the path counts
    stalls = shaped[:4900] + [500.0] * 100  # a busy host's rare stalls move neither figure
    assert shape_of(5000, stalls, base).delay_ms == pytest.approx(30, rel=0.03)
    assert shape_of(5000, stalls, base).jitter_ms == pytest.approx(10, rel=0.06)
