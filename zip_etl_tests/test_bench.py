"""`zip-etl bench` at a tiny scale against the test database: it runs every measurement of every
shape and writes a report section holding every row (the figures themselves mean nothing here)."""

import re

import pytest

from zip_etl.cli.main import main
from zip_etl_tools.bench.command import MEMORY_LABELS, RATIO_LABELS, ROW_LABELS
from zip_etl_tools.bench.shapes import SHAPES


@pytest.mark.slow
def test_bench_at_a_tiny_scale_reports_every_row(zip_etl_environment, tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nkept\n\n<!-- zip-etl bench: begin -->\nold\n<!-- zip-etl bench: end -->\n\nkept too\n")

    assert main(["bench", "--scale", "0.0005", "--workers", "1", "--seed-sample", "5", "--output", str(report)]) == 0

    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and text.rstrip().endswith("kept too")
    section = text.split("<!-- zip-etl bench: begin -->")[1].split("<!-- zip-etl bench: end -->")[0]
    assert "old" not in section.split("\n")
    assert "Load average (1, 5, 15 min) before:" in section
    shapes = re.split(r"^### (?=many-small|few-large|skewed)", section, flags=re.M)[1:]
    assert [s.split(":")[0] for s in shapes] == list(SHAPES)
    for name, body in zip(SHAPES, shapes):
        for label in ROW_LABELS + RATIO_LABELS + MEMORY_LABELS.get(name, []):
            assert label in body, f"{name}: no row {label!r}"
        table_rows = [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
        assert all("nan" not in line and "inf" not in line for line in table_rows), table_rows
        # every measured row has its time and its load average; at this scale the data floor takes
        # a few milliseconds, which the seconds column rounds to 0.00, so the time is read per row
        for label in ROW_LABELS:
            row = next(line for line in table_rows if line.startswith(f"| {label}"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            seconds, per_row = (float(cells[i].replace(",", "")) for i in (1, 2))
            assert seconds >= 0 and per_row > 0 and re.fullmatch(r"\d+\.\d\d", cells[6]), row
