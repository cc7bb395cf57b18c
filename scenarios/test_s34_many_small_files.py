"""S34 Many-small-files game without `.eti`: every file arrives, one coherent chunk each."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S34")
def test_s34_many_small_files_without_archive(lab: Lab) -> None:
    charlie = lab.peer("charlie", fixture="fixture-charlie")
    source = charlie.manifest("bf1942")
    assert len(source) == 21 and not any(p.endswith(".eti") for p in source.files)
    client = lab.peer("client")
    client.connect(charlie)

    w = client.download("bf1942", install=False)
    assert w.outcome == "download-finished", w.terminal
    chunks = client.events("download-chunk-finished", since=w.start, until=w.end)
    assert sorted(c["path"] for c in chunks) == sorted(source.files), "each file exactly once"
    for c in chunks:
        assert (c["offset"], c["bytes"]) == (0, source.files[c["path"]][0]), c
    assert w.terminal["chunks"] == 21 and w.terminal["bytes"] == sum(
        size for size, _ in source.files.values()
    )
    assert_same(client.manifest("bf1942"), source, "bf1942")
