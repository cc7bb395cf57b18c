"""The report in a real browser: headless Chromium (Debian's package, installed on demand by
`scripts/setup.sh --browser`) opens a generated report from disk, runs its script and draws it.

The DOM Chromium dumps after loading proves the lanes and a known event are there and that the
page scrolled itself to the failure; the screenshot (kept under artifacts/report-browser/)
proves the failure line is drawn inside the visible part of the page.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from reportdata import timeline as sample

from harness.report import history, pages, timeline

ROOT = Path(__file__).parents[1]
FAILURE_RED = (0xC6, 0x28, 0x28)  # .failure's stroke in harness/report/pages.py
WIDTH, HEIGHT = 900, 700


@pytest.fixture(scope="module")
def chromium() -> str:
    setup = subprocess.run(
        [ROOT / "scripts" / "setup.sh", "--browser"], capture_output=True, text=True, check=False
    )
    assert setup.returncode == 0, setup.stderr[-2000:]
    found = shutil.which("chromium")
    assert found, "scripts/setup.sh --browser did not install chromium"
    return found


def _browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}",
            *args]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit non-interlaced PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, header = 8, b"", b""
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + size]
        header = body if kind == b"IHDR" else header
        data += body if kind == b"IDAT" else b""
        pos += 12 + size
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw, stride, rows = zlib.decompress(data), width * bpp, []
    prev = bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        filt, row = line[0], bytearray(line[1:])
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                row[i] = (row[i] + a) & 0xFF
            elif filt == 2:
                row[i] = (row[i] + b) & 0xFF
            elif filt == 3:
                row[i] = (row[i] + (a + b) // 2) & 0xFF
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(row if bpp == 3 else bytes(v for j, v in enumerate(row) if j % 4 != 3)))
        prev = row
    return width, height, rows


def test_chromium_draws_the_report(chromium: str, tmp_path: Path) -> None:
    out = ROOT / "artifacts" / "report-browser"
    out.mkdir(parents=True, exist_ok=True)
    run = pages.RunInfo("browser-test", "docker", "abc1234", "2026-11-25 10:00 UTC", "2")
    row = pages.Row("S99", "failed", 17.0, {"mib_per_s": 30}, "AssertionError: timed out")
    (out / "S99.html").write_text(pages.scenario(run, row, timeline.decode(sample())))
    (out / "index.html").write_text(pages.index(run, [row], history.parse(""), {"S99"}))

    page = (out / "S99.html").as_uri() + "#explanation"  # as the index links a failed one
    dom = _browse(chromium, tmp_path / "profile", "--dump-dom", page).stdout
    assert re.search(r'<body data-opened="failure" data-scrolled="[1-9]\d*"', dom), dom[:500]
    lanes = re.findall(r'<g class="lane" data-lane="(\w+)">', dom)
    assert lanes == ["lab", "survivor", "victim", "client"]
    client = dom[dom.index('data-lane="client"') :]
    assert re.search(r'<g class="mark k-bad"[^>]*>.*?<text[^>]*>download-source-excluded</text>',
                     client)  # fmt: skip
    index = _browse(chromium, tmp_path / "profile", "--dump-dom", (out / "index.html").as_uri())
    assert '<a href="S99.html#explanation">S99</a>' in index.stdout

    shot = out / "S99.png"
    _browse(chromium, tmp_path / "profile", f"--screenshot={shot}", page)
    width, height, rows = _pixels(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    red = bytes(FAILURE_RED)
    columns: dict[int, int] = {}
    for line in rows:
        for x in range(width):
            if line[3 * x : 3 * x + 3] == red:
                columns[x] = columns.get(x, 0) + 1
    assert columns and max(columns.values()) > 150, "the failure line is in view, lanes tall"
