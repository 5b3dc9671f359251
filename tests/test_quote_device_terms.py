"""The quote states, for each recommended device, the age of the price it uses and the database's discontinued and
licence flags (sizing/quote/build.py device_terms), in English and Korean."""
from __future__ import annotations

import datetime
import json

import pytest
from click.testing import CliRunner

from sizing.cli import main
from sizing.quote.build import price_age


@pytest.mark.parametrize("price_date, on, want", [
    ("2022-10", "2026-12-02", ("years", 4)),
    ("2022-10-12", "2026-10-01", ("years", 4)),
    ("2026-05", "2026-12-02", ("months", 7)),
    ("2024", "2026-01-15", ("years", 2)),          # a year-only date counts from its January
    ("2025-12-20", "2026-12-01", ("years", 1)),
    ("2026-12", "2026-12-31", ("months", 0)),
])
def test_price_age_in_whole_months(price_date, on, want):
    y, m = int(price_date[:4]), int(price_date[5:7] or 1) if len(price_date) > 4 else 1
    d = datetime.date.fromisoformat(on)
    months = (d.year - y) * 12 + d.month - m                   # independent: calendar months between the two
    assert want == (("years", months // 12) if months >= 12 else ("months", months))
    assert price_age(price_date, on) == want


def quote(*args):
    r = CliRunner().invoke(main, ["quote", "mnist_mlp", "--samples", "1e5", "--deadline", "1h", *args])
    assert r.exit_code == 0, r.output
    return r.stdout


def test_the_pick_states_its_price_age_and_discontinued_flag():
    out = json.loads(quote("--candidates", "tesla-p40", "--format", "json"))
    lines = {a["key"]: a for a in out["assumptions"]}
    today = datetime.date.today()
    months = (today.year - 2016) * 12 + today.month - 9                    # the P40's price is of 2016-09
    assert lines["price_age_years"]["params"] == {"device": "tesla-p40", "date": "2016-09", "n": months // 12}
    assert "End-of-life" in lines["dev_discontinued"]["source"]
    assert "dev_licence" not in lines


@pytest.mark.parametrize("lang, age, licence", [
    ("en", "rtx-4090: price of 2022-10-12", "rtx-4090: licence terms apply"),
    ("ko", "rtx-4090: 2022-10-12 기준 가격으로", "rtx-4090: 사용 허가 조건이 있습니다"),
])
def test_a_geforce_pick_carries_the_driver_licence_in_both_languages(lang, age, licence):
    md = quote("--candidates", "rtx-4090", "--format", "md", "--lang", lang)
    assert age in md and licence in md and "No Datacenter Deployment" in md
    assert "geforce-license" in md                                       # the licence's source is cited


@pytest.mark.parametrize("lang, said", [("en", "rented only, never sold (tpu-v5e)"), ("ko", "임대만 되는 장치입니다 (tpu-v5e)")])
def test_a_rented_only_device_is_not_reported_as_a_missing_price(lang, said):
    """A cloud_only device (hwdb/README.md) has no purchase price by nature: the quote says it is rented only and
    keeps the 'give prices' finding for devices on sale that lack one (the H100 NVL has a cloud rate but no price); a
    discontinued device without a price is said to be discontinued."""
    out = json.loads(quote("--candidates", "tpu-v5e,h100-nvl,a100-pcie-40gb", "--precision", "bf16", "--format",
                           "json", "--lang", lang))
    found = {m["key"]: m for m in out["findings"]}
    assert found["rented_only"]["params"]["devices"] == "tpu-v5e" and said in found["rented_only"]["text"]
    assert found["unpriced"]["params"]["devices"] == "h100-nvl"
    assert found["discontinued_unpriced"]["params"]["devices"] == "a100-pcie-40gb"
    status = {o["device"]: o["status"] for o in out["options"] if o["meets_target"]}
    assert status == {"tpu-v5e": "rented_only", "h100-nvl": "unpriced", "a100-pcie-40gb": "discontinued"}


def test_the_options_table_says_why_a_price_is_missing():
    """The table's status column tells a rented-only or discontinued device from one on sale without a price."""
    md = quote("--candidates", "tpu-v5e,h100-nvl,a100-pcie-40gb", "--precision", "bf16", "--format", "md")
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "rented only" in rows["tpu-v5e"] and "discontinued" in rows["a100-pcie-40gb"]
    assert "no price" in rows["h100-nvl"] and "no price" not in rows["tpu-v5e"] + rows["a100-pcie-40gb"]
