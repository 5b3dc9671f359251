"""The whole cost of ownership (sizing/quote/tco.py): network, storage, rack, installation, support and tax lines,
each checked against an independent route (a closed form written here, a published switch count, exact Decimal
arithmetic) and through the command line (json, csv, md in English and Korean)."""
from __future__ import annotations

import csv
import io
import json
import math
from decimal import ROUND_HALF_UP, Decimal

import pytest
from click.testing import CliRunner

from sizing.cli import main
from sizing.quote.tco import (NIC_GBPS, SWITCH_RADIX, fat_tree, nics_per_node, parse_tax_rate, support_years,
    YEAR_S)

# ResNet-50 on ImageNet for 90 epochs: 2 h needs several 8-GPU nodes of H100, 14 days one device
CLUSTER = ["quote", "resnet50", "--samples", "1.28e6", "--epochs", "90", "--deadline", "2h", "--candidates", "h100-sxm"]
SINGLE = CLUSTER[:-3] + ["14d", "--candidates", "h100-sxm"]
NETWORK = {"nic", "switch", "switch_leaf", "switch_spine", "switch_aggregation", "switch_core", "optics"}
CLUSTER_ONLY = NETWORK | {"storage", "rack", "installation"}


def run(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def cluster_json():
    return json.loads(run(CLUSTER + ["--format", "json", "--tax-rate", "7.25"]))


def pick(d):
    return d["options"][d["pick"]]


def test_a_cluster_gets_network_storage_rack_and_installation(cluster_json):
    o = pick(cluster_json)
    kinds = [i["item"] for i in o["line_items"]]
    assert o["nodes"] >= 2
    assert {"nic", "optics", "storage", "rack", "installation", "support", "tax"} <= set(kinds)
    assert any(k.startswith("switch") for k in kinds)
    assert kinds[-1] == "tax"                              # on every line above it
    texts = [a["key"] for a in cluster_json["assumptions"]]
    assert {"as_network", "as_storage", "as_rack", "as_install", "as_support", "as_tax"} <= set(texts)


def test_one_node_gets_no_cluster_lines_and_says_so():
    d = json.loads(run(SINGLE + ["--format", "json"]))
    o = pick(d)
    assert o["nodes"] == 1
    kinds = {i["item"] for i in o["line_items"]}
    assert not kinds & CLUSTER_ONLY and "support" in kinds and "tax" not in kinds
    network = next(a for a in d["assumptions"] if a["key"] == "as_network")
    assert "A single server or workstation has no network" in network["text"]
    assert any(a["key"] == "as_tax_none" and "No tax or VAT" in a["text"] for a in d["assumptions"])


def two_tier(ports, k):
    """An independent count: fill leaves of k/2 node ports each, then spines of k ports for the leaves' uplinks."""
    leaves, left = 0, ports
    while left > 0:
        leaves, left = leaves + 1, left - k // 2
    uplinks = leaves * (k // 2)
    spines = uplinks // k + (uplinks % k > 0)
    return leaves, spines


@pytest.mark.parametrize("ports", [65, 100, 256, 1000, 1024, 2047, 2048])
def test_leaf_spine_counts_follow_the_closed_form(ports):
    f = fat_tree(ports, 64)
    leaves, spines = two_tier(ports, 64)
    assert f.tiers == (leaves, spines)
    assert f.links == ports + leaves * 32                  # node to leaf, leaf to spine
    assert f.tiers[0] * 32 >= ports > (f.tiers[0] - 1) * 32  # the fewest leaves with a free down port each


@pytest.mark.parametrize("ports, switches", [(1024, 48), (2048, 96), (32768, 2560), (65536, 5120)])
def test_switch_counts_match_a_published_sizing(ports, switches):
    """64-port 400 Gb/s switches for 8 x 400 Gb/s per H100 node: tech-talk-cto 'H100 Freakonomics' sheet (Aug
    2024): 128 nodes 48 switches, 256 nodes 96, 4,096 nodes 2,560, 8,192 nodes 5,120; a full fat tree of L tiers
    has (2L - 1) P / k switches."""
    f = fat_tree(ports, 64)
    assert sum(f.tiers) == switches
    if ports in (2048, 65536):                             # full trees: 2 and 3 tiers
        assert sum(f.tiers) == (2 * len(f.tiers) - 1) * ports // 64


def test_small_clusters_take_one_switch_and_huge_ones_more_tiers():
    assert fat_tree(16, 64).tiers == (1,) and fat_tree(64, 64).tiers == (1,)
    assert len(fat_tree(2049, 64).tiers) == 3 and len(fat_tree(65536, 64).tiers) == 3
    four = fat_tree(65537, 64)                            # past 2 (k/2)^3 ports: a fourth tier
    assert four.tiers == (2049, 2049, 2049, 1025) and four.links == 65537 + 3 * 32 * 2049
    full = fat_tree(2 * 32 ** 4, 64)                      # a full 4-tier tree: (2L - 1) P / k switches
    assert sum(full.tiers) == 7 * 2 * 32 ** 4 // 64


@pytest.mark.parametrize("per_node, exposed_gb", [(8, 0.0), (8, 3.0), (8, 40.0), (8, 1e4), (4, 5.0), (1, 9.0)])
def test_nics_per_node_is_the_fewest_that_keep_the_step(per_node, exposed_gb):
    """A step of 1 s compute and ``exposed_gb`` GB per device over the network, 90% hidden: the rule picks the
    fewest of 1, 2, 4, ... per_node NICs whose step stays within 1% of the step at 50 GB/s per device."""
    def step(gbs):
        return 1.0 + max(0.0, exposed_gb / gbs - 0.9)
    base = step(50.0)
    counts = [c for c in (1, 2, 4, 8) if c <= per_node]
    expected = next((c for c in counts if step(c * NIC_GBPS / 8 / per_node) <= base * 1.01), per_node)
    got = nics_per_node(step, per_node, 50.0)
    assert got == expected
    assert step(got * 50.0 / per_node) <= base * 1.01
    if got > 1:                                            # half as many would slow the step
        assert step(got // 2 * 50.0 / per_node) > base * 1.01


def test_the_cluster_quote_buys_the_nics_the_rule_gives(cluster_json):
    o = pick(cluster_json)
    nic = next(i for i in o["line_items"] if i["item"] == "nic")
    per_node = nic["quantity"] // o["nodes"]
    assert nic["quantity"] % o["nodes"] == 0 and per_node in (1, 2, 4, 8)
    ports = nic["quantity"]
    switches = [i for i in o["line_items"] if i["item"].startswith("switch")]
    if ports <= SWITCH_RADIX:
        assert [s["item"] for s in switches] == ["switch"] and switches[0]["quantity"] == 1
        links = ports
    else:
        counts = [s["quantity"] for s in switches]
        half = SWITCH_RADIX // 2
        if len(counts) == 2:
            assert counts == list(two_tier(ports, SWITCH_RADIX))
        else:                   # a full-bisection tree of L tiers holds (2L - 1) P / k switches (P a multiple of k/2)
            tiers = next(n for n in range(3, 8) if ports <= 2 * half ** n)
            assert len(counts) == tiers and counts[0] == -(-ports // half)
            if ports % half ** (tiers - 1) == 0:
                assert sum(counts) == (2 * tiers - 1) * ports // SWITCH_RADIX
        links = ports + half * sum(counts[:-1])
    assert next(i for i in o["line_items"] if i["item"] == "optics")["quantity"] == 2 * links


def test_tax_is_the_rate_times_every_line_above_exactly(cluster_json):
    o = pick(cluster_json)
    lines = o["line_items"]
    cents = [Decimal(str(i["total"])) * 100 for i in lines]
    taxable = sum(cents[:-1])
    expected = (Decimal("7.25") / 100 * taxable).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert cents[-1] == expected and lines[-1]["name"] == "7.25%"
    assert sum(cents) == Decimal(str(o["purchase"])) * 100


@pytest.mark.parametrize("value", ["abc", "-1", "101", "nan", "inf", "1e3"])
def test_invalid_tax_rate_is_one_line_exit_2(value):
    result = CliRunner().invoke(main, CLUSTER + ["--tax-rate", value])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --tax-rate:"), result.stderr


def test_tax_rate_parsing():
    assert parse_tax_rate(None) is None
    assert parse_tax_rate("10%") == Decimal(10) and parse_tax_rate(" 7.5 ") == Decimal("7.5")
    assert parse_tax_rate("0") == 0


def test_support_years_are_the_horizon_after_the_first():
    assert [support_years(y * YEAR_S) for y in (0.5, 1, 1.5, 3, 5)] == [0, 0, 1, 2, 4]


def test_totals_add_up_in_json_and_csv(cluster_json):
    for o in cluster_json["options"]:
        cents = sum(Decimal(str(i["total"])) * 100 for i in o["line_items"])
        assert cents == Decimal(str(o["purchase"])) * 100
        assert Decimal(str(o["tco"])) == Decimal(str(o["purchase"])) + Decimal(str(o["horizon_energy"]))
        for i in o["line_items"]:
            assert Decimal(str(i["unit_price"])) * i["quantity"] == Decimal(str(i["total"]))
    rows = list(csv.DictReader(io.StringIO(run(CLUSTER + ["--format", "csv", "--tax-rate", "7.25"]).lstrip("\ufeff"))))
    items = [r for r in rows if r["option"] == "1"]
    body, total = items[:-1], items[-1]
    assert math.isclose(sum(float(r["total"]) for r in body), float(total["total"]), abs_tol=1e-6)
    assert sum(Decimal(r["total"]) for r in body) == Decimal(total["total"])
    assert len(body) == len(pick(cluster_json)["line_items"])


def test_korean_output_has_the_lines_in_korean():
    md = run(CLUSTER + ["--tax-rate", "10", "--lang", "ko", "--currency", "KRW", "--fx", "1400"])
    for korean in ("네트워크 어댑터", "광 트랜시버", "공유 스토리지", "랙 (랙당 40 kW)", "설치 및 통합", "지원 및 유지보수",
                   "세금/부가가치세 (위 항목의 10%)", "스위치"):
        assert korean in md, korean
    for english in ("Network adapters", "Optical transceivers", "Shared storage", "Installation and integration",
                    "Support and maintenance", "Tax / VAT", "A cluster of two or more nodes"):
        assert english not in md, english


def test_the_quote_nics_keep_the_step_and_half_of_them_would_not():
    """Re-predict the pick's layout (sizing/predict/training.py) at its NICs and at half of them, independently of
    the quote: its NICs keep the step within 1% of one NIC per device; half would not (when it has more than one)."""
    from dataclasses import replace

    from sizing.hardware.devices import load_hwdb
    from sizing.model.estimate import estimator
    from sizing.predict.training import evaluate
    from sizing.predict.workload import Workload
    from sizing.quote.build import build_quote

    none = dict.fromkeys(("tokens", "qps", "latency_ms", "batch", "seq_len", "precision", "budget", "fx", "prices",
                          "horizon", "pue", "kwh_price", "node_cost", "max_devices", "progress"))
    q = build_quote("resnet50", samples="1.28e6", epochs="90", deadline="2h", currency="USD", candidates="h100-sxm",
                    hwdb_files=(), **none)
    o, pred = q.pick, q.pick.prediction
    nics = next(i for i in o.items if i.item == "nic").quantity // o.nodes
    est = estimator("resnet50")(pred.layout.micro_batch)
    s = est.settings
    work = Workload(batch=s["batch"], dtype=s["dtype"], optimizer=s["optimizer"], samples=1_280_000, epochs=90)

    device = load_hwdb(())[o.device_id]

    def step(per_node_gbs):
        f = replace(pred.factors, network_gbs=per_node_gbs / o.per_node)
        return evaluate(est, pred.layout, work, device, f).step_seconds
    assert math.isclose(step(o.per_node * 50.0), pred.step_seconds, rel_tol=1e-9)
    assert step(nics * 50.0) <= pred.step_seconds * 1.01
    if nics > 1:
        assert step(nics // 2 * 50.0) > pred.step_seconds * 1.01


def test_a_serving_fleet_of_whole_node_replicas_gets_one_nic_per_node_and_no_storage():
    d = json.loads(run(["quote", "resnet50", "--qps", "200000", "--latency-ms", "50", "--candidates", "h100-sxm",
                        "--format", "json", "--tax-rate", "10"]))
    o = pick(d)
    kinds = {i["item"]: i for i in o["line_items"]}
    assert o["nodes"] >= 2 and o["tensor_parallel"] <= o["devices_per_node"]
    assert kinds["nic"]["quantity"] == o["nodes"] and "storage" not in kinds
    assert "rack" in kinds and "installation" in kinds and "tax" in kinds
    cents = [Decimal(str(i["total"])) * 100 for i in o["line_items"]]
    assert sum(cents) == Decimal(str(o["purchase"])) * 100


def test_a_language_model_serving_quote_takes_the_tax_rate():
    d = json.loads(run(["quote", "gpt2_small", "--concurrency", "64", "--prompt-tokens", "512", "--output-tokens",
                        "128", "--tpot-ms", "40", "--candidates", "h100-sxm", "--format", "json",
                        "--tax-rate", "5"]))
    o = pick(d)
    assert o["line_items"][-1]["item"] == "tax" and o["line_items"][-1]["name"] == "5%"
