"""One lab run as every pytest process of it sees it: the run id and the backend chosen.

The xdist controller (or a plain, undistributed pytest) makes it once, in
`scenarios/conftest.py`, and hands it to its workers in `workerinput`; each process keeps it
in `config.stash` under `LAB_RUN`. Nothing travels through environment variables. This module
imports nothing heavy: the run log reads it in runs that never touch Docker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest

WORKERINPUT_KEY = "lanpeer_run"


@dataclass(frozen=True)
class LabRun:
    run_id: str  # the `lanpeer.run` label, and the directory of this run's timelines
    backend: str  # "docker" or "local"
    why: str  # how the backend was chosen, for pytest's header line

    def to_workerinput(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_workerinput(cls, data: dict[str, str]) -> LabRun:
        return cls(**data)


LAB_RUN = pytest.StashKey[LabRun]()
