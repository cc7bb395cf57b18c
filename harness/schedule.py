"""A seeded nemesis schedule: which fault, on which peers, when, for how long.

Pure: the same seed, length and peer roles give the same schedule, so a failing nemesis run
(`./lab nemesis --seed S`) replays the same faults in the same order at the same offsets. The
faults run one at a time (each healed before the next), so what a fault caused can be told
from the events in its window.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FAULTS = ("partition", "one-way-cut", "loss", "rate-cap", "pause", "kill")


@dataclass(frozen=True)
class Step:
    """One fault: start `at` seconds into the run, hold it `hold` seconds, then heal."""

    at: float
    fault: str
    targets: tuple[int, ...]  # peer indexes; for a cut, side a
    others: tuple[int, ...] = ()  # for a cut, side b
    hold: float = 0.0
    percent: float = 0.0  # loss
    mbit: float = 0.0  # rate cap


def schedule(
    seed: int,
    seconds: float,
    peers: int,
    killable: tuple[int, ...],
    every: float = 10.0,
) -> list[Step]:
    """Faults about every `every` seconds for `seconds`, over `peers` peers; only `killable`
    ones are ever SIGKILLed (and restarted). Holds run from 3 s to 12 s, so some pauses and
    cuts outlast the peers' stale timeout (8 s) and some do not."""
    if peers < 2:
        raise ValueError("a nemesis needs at least two peers")
    rng = random.Random(seed)
    steps: list[Step] = []
    t = rng.uniform(2.0, every / 2)
    while t < seconds:
        fault = rng.choice(FAULTS if killable else FAULTS[:-1])
        hold = round(rng.uniform(3.0, 12.0), 1)
        everyone = list(range(peers))
        if fault in ("partition", "one-way-cut"):
            rng.shuffle(everyone)
            cut = rng.randint(1, peers - 1)
            step = Step(
                t, fault, tuple(sorted(everyone[:cut])), tuple(sorted(everyone[cut:])), hold
            )
        elif fault == "loss":
            victims = tuple(sorted(rng.sample(everyone, rng.randint(1, peers))))
            step = Step(t, fault, victims, hold=hold, percent=float(rng.choice((2, 5, 10, 20))))
        elif fault == "rate-cap":
            step = Step(
                t, fault, (rng.randrange(peers),), hold=hold, mbit=float(rng.choice((8, 40, 100)))
            )
        elif fault == "kill":
            step = Step(t, fault, (rng.choice(killable),), hold=hold)
        else:
            step = Step(t, fault, (rng.randrange(peers),), hold=hold)
        steps.append(step)
        t = round(t + hold + rng.uniform(every / 2, every), 1)
    return steps
