"""Hostile input and faults (issue 16, first classes): nothing unsafe reaches a CSV, a terminal or Markdown;
nothing the user has is overwritten without --force; work-free graphs, huge amounts and usage errors each end in
one `error:` line with exit 2, never an internal error."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from sizing.cli import main
from sizing.common.text import csv_cell, markdown, terminal

ESC = "\x1b]0;pwned\x07"


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def one_line_error(r, *fragments):
    assert r.exit_code == 2, r.output
    line, = r.stderr.splitlines()
    assert line.startswith("error: ") and all(f in line for f in fragments), line
    assert "\x1b" not in line


def spec_file(tmp_path, name="m", layer="fc", extra=()):
    path = tmp_path / "spec.yaml"
    layers = [{"op": "linear", "name": layer, "out_features": 4}, *extra]
    path.write_text(json.dumps({"name": name, "input": [8], "layers": layers}))
    return str(path)


def test_the_escapes_by_hand():
    assert terminal(f"a{ESC}b\nc") == "a\\x1b]0;pwned\\x07b\\nc"
    assert [csv_cell(v) for v in ("=1+1", "+x", "-y", "@z", "\tq", "ok", -5)] == \
        ["'=1+1", "'+x", "'-y", "'@z", "'\tq", "ok", -5]
    assert markdown("![t](http://x/y.png) [click](https://e.com) <b>|") == \
        "!\\[t\\](http\\://x/y.png) \\[click\\](https\\://e.com) \\<b\\>\\|"


def test_csv_formula_injection_is_neutralised(tmp_path):
    r = invoke("estimate", spec_file(tmp_path, layer="=HYPERLINK(1)"), "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[1][0] == "'=HYPERLINK(1)"
    hw = hw_file(tmp_path, "@SUM(A1)", "+cmd")
    r = invoke("hw", "list", "--hwdb", hw, "--format", "csv")
    assert r.exit_code == 0, r.output
    row = next(row for row in csv.reader(io.StringIO(r.stdout)) if row[0] == "evil")
    assert row[1] == "'@SUM(A1)" and row[2] == "'+cmd"


def hw_file(tmp_path, vendor, model):
    path = tmp_path / "hw.yaml"
    path.write_text(json.dumps({"devices": [{"id": "evil", "vendor": vendor, "model": model, "kind": "gpu",
                                             "memory_gb": 8, "memory_bw_gbs": 100, "peak_tflops": {"fp32": 1},
                                             "sources": {"record": "test"}}]}))
    return path


def test_terminal_escapes_are_shown_not_run(tmp_path):
    """Names in specs are validated printable; hardware files, file names and messages are escaped."""
    one_line_error(invoke("estimate", spec_file(tmp_path, name=f"m{ESC}")), "printable", "\\x1b")
    hw = hw_file(tmp_path, f"Evil{ESC}", f"X\nforged line{ESC}")
    for args in (("hw", "list", "--hwdb", hw, "--wide"), ("hw", "show", "evil", "--hwdb", hw)):   # piped,
        # hw list leaves out the device-name column to fit 80 columns: --wide shows it
        r = invoke(*args)
        assert r.exit_code == 0, r.output
        assert "\x1b" not in r.stdout and "\\x1b]0;pwned" in r.stdout and "forged line" in r.stdout
        assert not any(line.startswith("forged line") for line in r.stdout.splitlines())
    missing = tmp_path / f"no\nwarning: forged{ESC}.yaml"
    one_line_error(invoke("estimate", missing), "\\nwarning: forged")


def test_markdown_injection_stays_text(tmp_path):
    path = spec_file(tmp_path, name="![t](http://evil/p.png) [click](http://evil)")
    r = invoke("quote", path, "--samples", "1e4", "--deadline", "1h", "--candidates", "h100-sxm", "--format", "md")
    assert r.exit_code == 0, r.output
    assert "](http://" not in r.stdout and "\\[click\\]" in r.stdout


def test_emit_yaml_keeps_an_existing_file_without_force(tmp_path):
    target = tmp_path / "out.yaml"
    target.write_text("mine")
    one_line_error(invoke("estimate", "mnist_mlp", "--emit-yaml", target), "exists; add --force")
    assert target.read_text() == "mine"
    r = invoke("estimate", "mnist_mlp", "--emit-yaml", target, "--force")
    assert r.exit_code == 0 and target.read_text().startswith("# Written by")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_quote_output_is_checked_before_the_work_and_never_clobbered(tmp_path):
    args = ["quote", "mnist_mlp", "--samples", "1e4", "--deadline", "1h", "--candidates", "h100-sxm"]
    one_line_error(invoke(*args, "-o", tmp_path / "missing" / "q.md"), "does not exist")
    one_line_error(invoke(*args, "-o", tmp_path), "is a directory")
    out = tmp_path / "q.md"
    assert invoke(*args, "-o", out).exit_code == 0
    first = out.read_text()
    one_line_error(invoke(*args, "-o", out), "exists; add --force")
    assert out.read_text() == first
    if os.path.exists("/dev/full"):
        one_line_error(invoke(*args, "-o", "/dev/full", "--force"), "cannot write")


def test_a_graph_without_work_and_huge_amounts_are_refused(tmp_path):
    path = tmp_path / "views.yaml"
    path.write_text(json.dumps({"name": "views", "input": [4, 4], "layers": [{"op": "flatten"}]}))
    one_line_error(invoke("estimate", path, "--device", "h100-sxm", "--samples", "100"), "no work to time")
    one_line_error(invoke("quote", path, "--samples", "100", "--deadline", "1h"), "no work to time")
    for option in ("--budget", "--node-cost", "--kwh-price"):
        one_line_error(invoke("quote", "mnist_mlp", "--samples", "100", "--deadline", "1h", option, "1e26"),
                       option, "past the limit")


def test_usage_errors_are_one_line():
    one_line_error(invoke("estimate"), "Missing argument 'SPEC'", "sizing estimate --help")
    one_line_error(invoke("estimate", "mnist_mlp", "--batch", "abc"), "--batch")
    one_line_error(invoke("estimate", "mnist_mlp", "--no-such-option"), "--no-such-option")
    one_line_error(invoke("no-such-command"), "no-such-command")
    assert invoke("--help").exit_code == 0 and invoke("estimate", "--help").exit_code == 0


def test_files_that_are_not_files(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    one_line_error(invoke("estimate", fifo), "not a regular file")           # and does not block
    config = json.loads(Path("tests/data/hf/gpt2.json").read_text())
    text = json.dumps(config).replace('"n_embd": 768', '"n_embd": ' + "7" * 5000)
    big = tmp_path / "config.json"
    big.write_text(text)
    one_line_error(invoke("estimate", big), "invalid JSON", "4300 digits")


def test_tiny_rotary_share_rotates_nothing(tmp_path):
    """GPT-NeoX rotary_pct 0.001: transformers' int(head_dim x rotary_pct) = 0 dimensions, so no rotary at all."""
    config = json.loads(Path("tests/data/hf/pythia-160m.json").read_text())
    config["rotary_pct"] = 0.001
    path = tmp_path / "neox.json"
    path.write_text(json.dumps(config))
    tiny = json.loads(invoke("estimate", path, "--format", "json").stdout)
    full = json.loads(invoke("estimate", "tests/data/hf/pythia-160m.json", "--format", "json").stdout)
    assert not [l for l in tiny["layers"] if "rotary" in l["name"]]
    assert tiny["params"] == full["params"] and tiny["forward"]["flops"] < full["forward"]["flops"]


def test_hostile_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    consts = [helper.make_tensor(n, TensorProto.INT64, [], [v]) for n, v in (("s", 0), ("l", 10 ** 9), ("d", 1))]
    graph = helper.make_graph([helper.make_node("Range", ["s", "l", "d"], ["r"], name="huge")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("r", TensorProto.INT64, None)], initializer=consts)
    path = tmp_path / "range.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert path.stat().st_size < 200
    one_line_error(invoke("estimate", path), "Range node 'huge'", "1,000,000,000 elements")
    graph = helper.make_graph([helper.make_node("", ["x"], ["z"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    empty = tmp_path / "empty.onnx"
    onnx.save(helper.make_model(graph), str(empty))
    r = invoke("estimate", empty)
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1


def test_check_refuses_what_this_machine_cannot_hold(tmp_path):
    """A 10^10-parameter linear layer: refused up front with the memory it would need, not a MemoryError."""
    path = tmp_path / "huge.yaml"
    path.write_text(json.dumps({"name": "huge", "input": [100000], "layers": [{"op": "linear",
                                                                               "out_features": 100000}]}))
    one_line_error(invoke("check", path), "sizing check needs about", "available")


def test_a_bench_profile_beyond_physics_is_not_trusted(tmp_path):
    """A profile claiming 99,999 TFLOP/s on this CPU is corrupt (re-measured), not used."""
    from sizing.hardware.bench.measure import this_machine
    from sizing.hardware.bench.profile import check_profile, physical_bound_tflops, profile_model
    from sizing.hardware.devices import Device, to_yaml
    machine = this_machine()
    bound = physical_bound_tflops(machine, "fp32")
    assert bound is not None and 0 < bound < 99_999
    def profile(tflops):
        path = tmp_path / f"local-{tflops}.yaml"
        path.write_text(to_yaml([Device(id="local", vendor="x", model=profile_model(machine), kind="cpu",
                                        memory_bw_gbs=10, peak_tflops={"fp32": tflops},
                                        sources={"record": "test"})]))
        return check_profile(str(path), machine)
    device, problem = profile(99_999)
    assert device is None and "more than this machine's" in problem
    device, problem = profile(round(bound / 10, 3))
    assert device is not None and problem is None


def test_a_corrupt_bench_profile_blocks_nothing_else():
    from sizing.hardware.devices import local_profile_path
    path = local_profile_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("garbage: [\n")
    assert invoke("hw", "list").exit_code == 0
    assert invoke("estimate", "mnist_mlp", "--device", "h100-sxm", "--samples", "1000").exit_code == 0


def test_check_plans_the_calls_not_only_the_flops():
    """A tiny block repeated 10^12 times: the instance is cut so its layer calls fit the time budget, not run
    for hours (the FLOPs alone said it was small)."""
    from sizing.execute.reduce import CALL_SECONDS, TIME_BUDGET_S, plan
    from sizing.model.estimate import load_graph
    spec = {"name": "rep", "input": [4], "blocks": {"b": {"layers": [{"op": "linear", "out_features": 4},
                                                                    {"op": "relu"}]}},
            "layers": [{"block": "b", "repeat": 10 ** 12}, {"op": "linear", "out_features": 2}]}
    import yaml
    path = Path(os.environ["XDG_CACHE_HOME"]).parent / "rep.yaml"
    path.write_text(yaml.safe_dump(spec))
    instance = plan(lambda **size: load_graph(str(path), **size), None, None, 3, False)
    calls = sum(n.repeat for n in instance.graph.nodes)
    assert calls * CALL_SECONDS * 4 <= TIME_BUDGET_S and calls > 1000
