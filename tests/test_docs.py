"""The documentation states the conventions the code applies: the tables must not drift apart."""
from __future__ import annotations

import pathlib
import re

from sizing.model.memory import OPTIMIZERS
from sizing.model.ops import REGISTRY
from sizing.model.ops.elementwise import ACTIVATIONS, GELU

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _table_rows(text: str, first_cell: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0] and not set(cells[0]) <= set("-"):
            rows[cells[0]] = cells[1:]
    return rows


def test_activation_table_matches_code():
    rows = _table_rows((ROOT / "docs/conventions.md").read_text(), "op")
    for name, (fwd, bwd, keeps, _) in ACTIVATIONS.items():
        assert rows[name][:3] == [str(fwd), str(bwd), keeps.rstrip("s")], name
    for approx, (fwd, bwd, _) in GELU.items():
        assert rows[f"gelu (approximate='{approx}')"][:2] == [str(fwd), str(bwd)]


def test_optimizer_table_matches_code():
    rows = _table_rows((ROOT / "docs/conventions.md").read_text(), "optimizer")
    for name, (states, flops, _) in OPTIMIZERS.items():
        assert rows[name][:2] == [str(flops), str(states)], name


def test_spec_doc_lists_every_op():
    text = (ROOT / "docs/spec.md").read_text()
    listed = set(re.findall(r"[a-z][a-z0-9_]+", "\n".join(l.split("|")[1] for l in text.splitlines()
                                                       if l.startswith("| ") and l.count("|") > 3)))
    missing = sorted(set(REGISTRY) - listed)
    assert not missing, f"ops missing from docs/spec.md: {missing}"


def test_ci_runs_the_readme_quick_start():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```")[1].strip().splitlines()
    assert len(block) == 2, "the quick start is exactly two commands"
    ci = (ROOT / ".ci/run").read_text().splitlines()
    for command in block:
        assert command in ci, f"CI does not run the README command: {command}"


def _readme_commands():
    """The `sizing ...` commands README.md shows, a synopsis's placeholders filled (SPEC: a zoo model, lenet5 for a
    check; CONFIG: a shipped test config) and its [optional] parts left out; fragments that name no model (`sizing estimate
    --format json`), the measuring `sizing bench` and the server `sizing web` are not run here."""
    import re
    text = (ROOT / "README.md").read_text().replace("\n  ", " ")
    out = []
    for span in re.findall(r"`(sizing [^`]+)`", text):
        words = re.sub(r"\[[^\]]*\]", "", span).split()[1:]
        if words[0] in ("bench", "web") or len(words) < 2 or words[1].startswith("--"):
            continue
        tokens = "--tokens" in words or "--concurrency" in words
        checks = words[0] == "check" or "--check" in words          # a real training run: the zoo's smallest CNN
        spec = "lenet5" if checks else "gpt2_small" if tokens else "resnet50"
        out.append([{"SPEC": spec, "CONFIG": "tests/data/hf/llama-2-7b.json"}.get(w, w) for w in words])
    return out


def test_every_readme_example_runs(tmp_path, monkeypatch):
    """Each command README.md shows runs as written (with its placeholders filled) and exits 0."""
    from click.testing import CliRunner
    from sizing.cli import main
    commands = _readme_commands()
    assert len(commands) >= 6, commands
    monkeypatch.chdir(ROOT)
    for words in commands:
        words = [str(tmp_path / w) if w.endswith((".html", ".md", ".csv", ".json")) and "/" not in w else w
                 for w in words]
        r = CliRunner().invoke(main, words)
        assert r.exit_code == 0, (words, r.output[-500:])
