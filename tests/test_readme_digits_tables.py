"""The README's issue-13 result tables say what the committed records say.

Every measured cell of the digits reproduction tables (the full-budget LeNet table, the 3-epoch
table, the "Which USPS" table, the first-epoch table of the other methods and the MNIST-M table)
is recomputed here from ``benchmarks/results/digits_tllib/**/record.json`` with the report's own
selection code (:func:`benchmarks.selection_protocols.protocol_accuracies`) and compared with the
README text, digit for digit, as are the seed counts the rows state. A README edit that forgets a
record, or a record that replaces another, fails here instead of leaving a stale number.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.report.tables import format_cell, value_cell
from benchmarks.selection_protocols import BEST_ON_TEST, protocol_accuracies

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "digits_tllib"
TASKS = {"MNIST→USPS": "m2u", "USPS→MNIST": "u2m", "MNIST→MNIST-M": "m2mm"}
METHODS = {"source-only": "source_only", "DANN": "dann", "CDAN": "cdan", "MCC": "mcc"}
PROTOCOLS = ("last", "im", BEST_ON_TEST)  # the README's "last", "IM pick", "best on test" columns


def _table(header: str) -> list[list[str]]:
    """The body rows of the README table whose header line is ``header``, as stripped cells."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert header in lines, f"README table header not found: {header}"
    start = lines.index(header) + 2  # skip the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, f"README table under {header!r} has no rows"
    return rows


def _number(cell: str) -> str:
    """A value cell without bold marks or footnote superscripts: '**92.3 ± 0.9**' → '92.3 ± 0.9'."""
    return re.sub(r"[*⁰¹²³⁴⁵⁶⁷⁸⁹]", "", cell).strip()


def _records(folder: Path) -> list[dict]:
    paths = sorted(folder.glob("seed*/record.json"))
    assert paths, f"no records under {folder.relative_to(ROOT)}"
    return [json.loads(p.read_text()) for p in paths]


def _protocol_cells(records: list[dict]) -> list[str]:
    runs = [protocol_accuracies(r) for r in records]
    return [format_cell(value_cell([run[p] for run in runs], "std")) for p in PROTOCOLS]


def _last(record: dict) -> str:
    return f"{protocol_accuracies(record)['last']:.1f}"


def _seed_count(budget_cell: str) -> int:
    match = re.search(r"(\d+) seeds", budget_cell)
    return int(match.group(1)) if match else 1


FULL = "| task | method | budget (epochs of 20) | last | IM pick | best on test | published (TLLib, best on test) |"
THREE = "| task | method | last | IM pick | best on test | published (TLLib) | seed 0: epoch 3 → 20 |"
COPIES = "| task | method | USPS copy | last | IM pick | best on test | published (TLLib) |"
FIRST_EPOCH = "| method (suite entry) | M→U epoch 1 | TLLib M→U | U→M epoch 1 | TLLib U→M |"
MNISTM = "| task | method | precision | seeds | last | IM pick | best on test | published (Table 2) |"


@pytest.mark.parametrize("row", _table(FULL), ids=lambda r: f"{r[0]}-{r[1]}")
def test_full_budget_table_matches_records(row):
    task, method, budget, *values = row
    records = _records(RESULTS / "digits_tllib" / TASKS[task] / METHODS[method])
    assert len(records) == _seed_count(budget), f"{task} {method}: README says {budget!r}, {len(records)} records"
    assert all(r["epochs_run"] == 20 for r in records)
    assert [_number(v) for v in values[:3]] == _protocol_cells(records)


@pytest.mark.parametrize("row", _table(THREE), ids=lambda r: f"{r[0]}-{r[1]}")
def test_three_epoch_table_matches_records(row):
    task, method, *values = row
    folder = Path(TASKS[task]) / METHODS[method]
    records = _records(RESULTS / "digits_tllib_3epochs" / folder)
    assert len(records) == 3 and all(r["epochs_run"] == 3 for r in records)
    assert [_number(v) for v in values[:3]] == _protocol_cells(records)
    seed0_full = json.loads((RESULTS / "digits_tllib" / folder / "seed0" / "record.json").read_text())
    assert values[4] == f"{_last(records[0])} → {_last(seed0_full)}"


@pytest.mark.parametrize("row", _table(COPIES), ids=lambda r: f"{r[0]}-{r[1]}-{r[2][:3]}")
def test_usps_copy_table_matches_records(row):
    task, method, copy, *values = row
    entry = TASKS[task] + ("_libsvm" if copy.startswith("LIBSVM") else "")
    records = _records(RESULTS / "digits_tllib_3epochs" / entry / METHODS[method])
    assert len(records) == 3
    assert [_number(v) for v in values[:3]] == _protocol_cells(records)


@pytest.mark.parametrize("row", _table(FIRST_EPOCH), ids=lambda r: r[0][:30])
def test_first_epoch_table_matches_records(row):
    entry = re.search(r"\(`([a-z_]+)`\)", row[0]).group(1)
    for task, cell in (("m2u", row[1]), ("u2m", row[3])):
        folder = RESULTS / "digits_tllib_1epoch" / task / entry
        if cell == "not run":
            assert not folder.exists()
            continue
        (record,) = _records(folder)
        assert record["epochs_run"] == 1 and cell == _last(record)


@pytest.mark.parametrize("row", _table(MNISTM), ids=lambda r: f"{r[1]}-{r[2]}")
def test_mnistm_table_matches_records(row):
    task, method, precision, seeds, *values = row
    suite = "mnistm_ganin_fp32" if "float32" in precision else "mnistm_ganin"
    records = _records(RESULTS / suite / TASKS[task] / METHODS[method])
    assert sorted(r["seed"] for r in records) == [int(s) for s in seeds.split(",")]
    assert [_number(v) for v in values[:3]] == _protocol_cells(records)
