"""The repository's root conftest, as in the design card's layout: it loads the lab's plugin
(harness/plugin.py: the `lanpeer` options, xdist workers bound to engines, the run log and the
report) for every run, whatever it collects. pyproject's addopts names it too (`-p`): its options
must be known before pytest parses the command line, which is before any conftest is read. It
imports nothing heavy: `pytest tests` must not import the Docker SDK or testcontainers
(tests/test_hygiene.py); the scenario wiring, which does, is scenarios/conftest.py."""

pytest_plugins = ["harness.plugin"]
