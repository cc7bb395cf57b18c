"""The nemesis schedule is a pure function of its seed: a failing seed replays exactly."""

from __future__ import annotations

import itertools

import pytest

from harness.schedule import FAULTS, schedule


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    one = schedule(7, 600, 5, killable=(0, 1, 2))
    assert one == schedule(7, 600, 5, killable=(0, 1, 2))
    assert one != schedule(8, 600, 5, killable=(0, 1, 2))


def test_faults_come_one_at_a_time_about_every_ten_seconds_within_the_run() -> None:
    steps = schedule(3, 900, 5, killable=(0, 1, 2))
    assert {s.fault for s in steps} == set(FAULTS), "a long run fires every kind"
    for step, following in itertools.pairwise(steps):
        gap = following.at - (step.at + step.hold)
        assert 5.0 <= gap <= 10.0 + 1e-6, "healed, then the next one within about ten seconds"
    assert all(s.at < 900 for s in steps) and all(3.0 <= s.hold <= 12.0 for s in steps)


def test_targets_are_valid_and_only_killable_peers_are_killed() -> None:
    for seed in range(40):
        for step in schedule(seed, 300, 5, killable=(0, 1)):
            assert set(step.targets) <= set(range(5)) and step.targets
            if step.fault in ("partition", "one-way-cut"):
                assert step.others and not set(step.targets) & set(step.others)
                assert set(step.targets) | set(step.others) == set(range(5))
            if step.fault == "kill":
                assert step.targets[0] in (0, 1)
            if step.fault == "loss":
                assert 0 < step.percent < 100
    assert "kill" not in {s.fault for s in schedule(5, 900, 5, killable=())}
    with pytest.raises(ValueError):
        schedule(1, 60, 1, killable=())
