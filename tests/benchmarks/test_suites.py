"""Every benchmark runs in smoke mode (tiny sizes) and yields well-formed rows; no speed is asserted."""

from __future__ import annotations

import re

import pytest

from benchmarks.__main__ import ALL, main
from benchmarks.report import write_section

ROW = re.compile(r"^\| (?P<bench>[^|]+) \| (?P<side>[^|]+) \| (?P<batch>\d+) \| (?P<rate>[\d,]+|—) \| "
                 r"(?P<ratio>[\d.]+x)? \| (?P<secs>[\d.]*) \| (?P<mem>\d*) \| (?P<note>[^|]*) \|$")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ALL))
def test_benchmark_smoke_writes_well_formed_rows(name, tmp_path, capsys):
    out = tmp_path / "BENCH.md"
    main([name, "--smoke", "--device", "cpu", "--write", str(out)])
    text = out.read_text()
    assert "<!-- bench:cpu-smoke -->" in text and "Measured" in text and "Command:" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")]
    assert rows
    for line in rows:
        match = ROW.match(line)
        assert match, line
        assert match["rate"] == "—" or float(match["rate"].replace(",", "")) > 0, line
        if match["ratio"]:
            assert float(match["ratio"][:-1]) > 0, line


def test_write_section_replaces_only_its_own_block(tmp_path):
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\nprose stays\n")
    write_section(path, "cpu", "first")
    write_section(path, "gpu", "gpu table")
    write_section(path, "cpu", "second")
    text = path.read_text()
    assert "prose stays" in text and "gpu table" in text and "second" in text and "first" not in text
    assert text.count("<!-- bench:cpu -->") == 1
