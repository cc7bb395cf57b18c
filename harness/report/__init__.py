"""The run report: static HTML pages drawn from a run's timelines, outcomes and RUNLOG.md.

Pure: every function here takes data and returns an HTML or SVG string; the pytest plugin
(`harness.reporter`) gathers the data and writes the files.
"""
