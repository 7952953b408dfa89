"""Every measured number in the README's results must come from the committed report it names (issue 29, item 4).

The README's results are table rows that end in a cell naming their report(s) (`` `serve.md` ``), and the methods
table, whose paragraph names ``methods.md``. Each decimal number in such a row (0.9516, 83.35, 1.08x, 98.6 ms)
must appear in one of the named reports, written the same way or as a value in the report's markdown or JSON that
rounds to it. Whole numbers (8 clients, 120 steps) are not checked: they are settings as often as results."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")
REPORT = re.compile(r"`([\w.-]+\.md)`")


def _cited_rows(readme: str) -> list[tuple[str, list[str]]]:
    """(row, its reports) for each results row of the README."""
    rows: list[tuple[str, list[str]]] = []
    table_reports: list[str] = []  # the reports a paragraph names for the table under it
    for line in readme.splitlines():
        if not line.startswith("|"):
            table_reports = REPORT.findall(line) if line.strip() else table_reports
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        own = REPORT.findall(cells[-1]) if len(cells) > 1 else []
        reports = own or table_reports
        if reports and DECIMAL.search(" ".join(cells[:-1] if own else cells)):
            rows.append((" | ".join(cells[:-1] if own else cells), reports))
    return rows


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def _report_values(name: str) -> tuple[str, list[float]]:
    md = RESULTS / name
    assert md.is_file(), f"the README cites {name}, which is not under benchmarks/results/"
    text = md.read_text(encoding="utf-8")
    values = [float(t.replace(",", "")) for t in re.findall(r"-?\d[\d,]*\.?\d*", text) if t.replace(",", "")]
    side = md.with_suffix(".json")
    if side.is_file():
        values += _numbers(json.loads(side.read_text(encoding="utf-8")))
    return text, values


def _backed(token: str, text: str, values: list[float]) -> bool:
    if re.search(rf"(?<![\d.]){re.escape(token)}(?!\d)", text):
        return True
    places = len(token.split(".")[1])
    target = float(token)
    return any(round(v, places) == target or round(v * 100, places) == target for v in values)


def test_the_readme_has_cited_results_rows() -> None:
    rows = _cited_rows((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(rows) >= 8, rows  # the methods table and the results table both found
    assert any("methods.md" in reports for _, reports in rows)


def test_every_decimal_in_the_readmes_results_is_in_its_report() -> None:
    missing = []
    for row, reports in _cited_rows((ROOT / "README.md").read_text(encoding="utf-8")):
        found = [_report_values(name) for name in reports]
        for token in DECIMAL.findall(row):
            if not any(_backed(token, text, values) for text, values in found):
                missing.append(f"{token} in '{row[:80]}…' (not in {', '.join(reports)})")
    assert not missing, "README numbers without a report behind them:\n" + "\n".join(missing)
