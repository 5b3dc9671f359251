"""Terminal output (issue 15): every table fits the terminal (80 columns piped, $COLUMNS honoured), `--wide`
restores what was left out, magnitudes read as SI / durations (never '6743089 E FLOPs' or '7.77e+03 ms'), and a
CSV estimate with --device or --inference carries the prediction."""
from __future__ import annotations

import csv
import io
import json
import re
import string

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from sizing.cli import main
from sizing.common.table import Column, fold, table
from sizing.common.units import duration, si

LLAMA = "tests/data/hf/llama-2-7b.json"
COMMANDS = {
    "estimate": ["estimate", "gpt2_small"],
    "estimate --device": ["estimate", "resnet50", "--device", "h100-sxm", "--samples", "1.28e6", "--epochs", "90"],
    "estimate --device, pruned": ["estimate", LLAMA, "--device", "a100-sxm-80gb", "--devices", "8", "--tokens", "1e9",
                                  "--batch", "8"],
    "estimate --inference": ["estimate", LLAMA, "--device", "h100-sxm", "--inference", "--concurrency", "16"],
    "hw list": ["hw", "list"],
    "hw show": ["hw", "show", "h100-sxm"],
    "check": ["check", "lenet5", "--steps", "1"],
}
# The bad forms: a count of four or more digits before an SI prefix ('6743089 E FLOPs'), an exponent before a
# time unit ('7.77e+03 ms'), and any 'e+NN' (Python's float repr leaking into a table).
BAD = re.compile(r"\b\d{4,} [kMGTPEZYRQ]\b|\b\d{4,} ?[kMGTPEZYRQ](FLOP|MAC)|\de[+-]?\d+ ?(ns|us|ms|s|min|h|days|years)\b"
                 r"|\de\+\d")


def run(args, columns=None):
    r = CliRunner().invoke(main, args, env={"COLUMNS": None if columns is None else str(columns)})
    assert r.exit_code == 0, r.output
    return r.stdout


@pytest.fixture(scope="module")
def outputs():
    return {name: {width: run(args, width) for width in (None, 120)} for name, args in COMMANDS.items()}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_line_fits_the_width(outputs, name):
    for columns, limit in ((None, 80), (120, 120)):
        text = outputs[name][columns]
        over = [line for line in text.splitlines() if len(line) > limit]
        assert not over, f"{name} at {limit} columns: {over[:3]}"
    assert max(map(len, outputs[name][120].splitlines())) > 80, f"{name}: 120 columns should use more than 80"


@pytest.mark.parametrize("name", COMMANDS)
def test_magnitudes_read_well(outputs, name):
    for text in outputs[name].values():
        assert not BAD.search(text), BAD.search(text).group()


def test_quote_magnitudes_read_well():
    """A 7B model on 2e12 tokens: about 9.2e22 FLOPs (6 N D = 6 x 6.74e9 x 2e12 = 8.1e22, plus attention), which
    the quote once printed as '92309 E FLOPs'."""
    md = run(["quote", LLAMA, "--tokens", "2e12", "--deadline", "30d", "--candidates", "h100-sxm,b200"])
    assert not BAD.search(md), BAD.search(md).group()
    total = re.search(r"= ([\d.]+) ZFLOPs", md)
    assert total and 8.1 <= float(total[1]) / 10 <= 8.1 * 1.2, total


def test_wide_restores_the_columns_left_out():
    """Piped, gpt2_small's per-layer table leaves out output shapes and the kept bytes and says so; --wide
    prints every layer's output shape as the JSON gives it, and says nothing is left out."""
    narrow, wide = run(["estimate", "gpt2_small"]), run(["estimate", "gpt2_small", "--wide"])
    layers = json.loads(run(["estimate", "gpt2_small", "--format", "json"]))["layers"]
    note = re.search(r"\(dropped to fit 80 columns: (.*?); --wide shows them\)", " ".join(narrow.split()))
    assert note and "output" in note.group(1) and "kept for bwd" in note.group(1), narrow
    assert "dropped" not in wide and "kept for bwd" in wide
    for layer in layers:
        shape = "x".join(map(str, layer["output_shape"]))
        row = next(line for line in wide.splitlines() if line.startswith(layer["name"] + " "))
        assert shape in row.split(), (layer["name"], row)
    assert max(map(len, wide.splitlines())) > 80

    listed = run(["hw", "list", "--wide"])
    head = listed.splitlines()[0].split()
    assert {"device", "kind", "year", "fp64", "int8", "TDP"} <= set(head) and "dropped" not in listed
    assert "fp64" not in run(["hw", "list"]).splitlines()[0]


def test_sort_key_is_never_left_out():
    head = run(["hw", "list", "--sort", "int8"]).splitlines()[0].split()
    assert "int8" in head and "fp64" not in head


def _csv(args):
    rows = list(csv.DictReader(io.StringIO(run(args + ["--format", "csv"]))))
    return rows[:-1], rows[-1]


def test_csv_with_device_carries_the_prediction():
    """The CSV's prediction columns hold what the JSON's prediction holds (the same run, another writer)."""
    args = COMMANDS["estimate --device"]
    layers, total = _csv(args)
    p = json.loads(run(args + ["--format", "json"]))["prediction"]
    assert total["name"] == "TOTAL"
    for key in ("step_seconds", "total_seconds", "device_hours", "mfu", "memory_per_device_bytes"):
        assert float(total[f"prediction.{key}"]) == pytest.approx(p[key]), key
    assert total["prediction.device"] == "h100-sxm" and total["prediction.layout"] == p["layout"]
    assert float(total["prediction.time_seconds.compute"]) == pytest.approx(p["time_seconds"]["compute"])
    by_name = {l["name"]: l for l in p["layers"]}
    assert len(layers) == len(by_name) > 100
    for row in layers:                                   # every layer row stays a layer row, with its time
        l = by_name[row["name"]]
        assert float(row["predicted_seconds"]) == pytest.approx(max(l["compute_s"], l["memory_s"]))
        assert row["predicted_bound"] == l["bound"] and row["prediction.step_seconds"] == ""


def test_csv_with_inference_carries_the_serving_figures():
    args = COMMANDS["estimate --inference"]
    layers, total = _csv(args)
    p = json.loads(run(args + ["--format", "json"]))["inference"]
    for key in ("ttft_s", "tpot_s", "tokens_per_s", "max_concurrency"):
        assert float(total[f"inference.{key}"]) == pytest.approx(p[key]), key
    assert int(total["inference.memory_bytes.total"]) == p["memory_bytes"]["total"]
    assert all(row["inference.ttft_s"] == "" for row in layers) and layers[0]["name"] != "TOTAL"


def test_the_bad_forms_are_caught():
    assert all(BAD.search(s) for s in ("6743089 E FLOPs", "7.77e+03 ms", "1.2e-05 s", "3e+21"))
    assert not any(BAD.search(s) for s in ("6.74 YFLOPs", "7.77 s", "xeon-6980P", "1,307.4", "2.00 GiB"))


def test_si_and_durations_by_hand():
    assert si(6743089 * 10 ** 18, "FLOPs") == "6.74 YFLOPs"          # 6.743089e24
    assert si(4089184256, "MACs") == "4.09 GMACs" and si(999) == "999"
    assert si(10 ** 33) == "1.00e33"
    assert [duration(s) for s in (7.77, 7770, 42 * 86400, 5400, 3 * 365.25 * 86400, 2.5e-7, 0)] == \
        ["7.77 s", "2.16 h", "42 days", "1.50 h", "3 years", "0.25 us", "0 s"]


@settings(max_examples=200, deadline=None)
@given(st.text(string.ascii_letters + string.digits + " ._-/x", max_size=60), st.integers(1, 30))
def test_fold_keeps_every_character_within_the_width(text, width):
    lines = fold(text, width)
    assert all(len(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.text(string.ascii_lowercase + " ", max_size=25), min_size=4, max_size=4),
                max_size=6), st.integers(20, 100))
def test_table_fits_when_its_narrowest_layout_does(rows, width):
    """Four foldable columns (fold width 3) with drop priorities: whatever the cells, every line fits."""
    columns = [Column("a", fold=3), Column("b", fold=3, drop=1), Column("c", "right", fold=3, drop=2),
               Column("d", fold=3)]
    text = table(rows, columns, width)
    assert all(len(line) <= width for line in text.splitlines()), text


def test_table_drops_the_highest_priority_first_and_says_so():
    rows = [["alpha", "b" * 30, "c" * 30, "d" * 30]]
    columns = [Column("a"), Column("b", drop=1), Column("c", drop=2), Column("d", drop=3)]
    text = table(rows, columns, 70)
    assert "b" * 30 in text and "c" * 30 in text and "d" * 30 not in text
    assert text.splitlines()[-1] == "(dropped to fit 70 columns: d; --wide shows them)"
    assert "d" * 30 in table(rows, columns, None)
