"""`sizing web` (sizing/web/): the page, the API and the downloads answer what the command line answers for the same
options (each compared with a run of the CLI itself), every refusal is the CLI's one line, and the page holds up in
a real browser (Debian's headless chromium) at a desktop and a phone width."""
from __future__ import annotations

import html
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import yaml

flask = pytest.importorskip("flask", reason="sizing web needs Flask (pip install -e '.[web]')")

from click.testing import CliRunner

from sizing.cli import estimate, main, quote
from sizing.common.yamlsafe import MAX_FILE_BYTES
from sizing.model.estimate import zoo_names
from sizing.web.app import Memo, create_app
from sizing.web.page import FIELDS

ZOO = Path(__file__).resolve().parents[1] / "sizing" / "zoo"
HF = Path(__file__).resolve().parent / "data" / "hf"
TRAIN = {"model": "lenet5", "samples": "60000", "deadline": "1h", "candidates": "h100-sxm"}


@pytest.fixture(scope="module")
def client():
    return create_app({"estimate": estimate, "quote": quote}).test_client()


def cli(*args) -> str:
    """stdout of the command line itself (its stderr apart)."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def cli_error(*args) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line
    return line[len("error: "):]


def argv(options: dict) -> list[str]:
    """The command line's arguments for the same options the web is given (model first)."""
    out = [options["model"]]
    for k, v in options.items():
        if k != "model":
            out += [f"--{k}"] if v is True else [f"--{k}", str(v)]
    return out


def error_of(response) -> str:
    """The one-line message of an API error, or of the page's error paragraph (unescaped)."""
    if response.mimetype == "application/json":
        return response.get_json()["error"]
    found = re.search(r'<p class="error" role="alert">(?:error|오류): (.*?)</p>', response.get_data(as_text=True))
    assert found, response.get_data(as_text=True)[:500]
    return html.unescape(found.group(1))


# ---------------------------------------------------------------------------------------------------------------
# The page

def test_the_form_has_every_field_the_zoo_and_nothing_from_outside(client):
    r = client.get("/")
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and r.mimetype == "text/html"
    for name in FIELDS:
        assert f'name="{name}"' in page, name
    for z in zoo_names():
        assert f"<option>{z}</option>" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page   # no CDN, no script
    assert 'enctype="multipart/form-data"' in page and 'method="post"' in page


def test_every_form_field_reaches_the_command_and_its_error_lands_next_to_it(client):
    """For each field, a bad value: the page answers 400 with the command line's own message for the same option,
    marks that field, and keeps every value typed."""
    lm = {"model": "gpt2_small", "concurrency": "8", "candidates": "h100-sxm"}
    cases = {"samples": (TRAIN, "x"), "tokens": ({**TRAIN, "samples": ""}, "1.5"), "epochs": (TRAIN, "0"),
             "deadline": (TRAIN, "soon"), "global-batch": (TRAIN, "-3"), "finetune": (TRAIN, "half"),
             "lora-rank": ({**TRAIN, "finetune": "lora"}, "x"), "concurrency": (lm, "many"),
             "prompt-tokens": (lm, "x"), "output-tokens": (lm, "x"), "ttft-ms": (lm, "x"), "tpot-ms": (lm, "x"),
             "qps": ({"model": "lenet5", "candidates": "h100-sxm"}, "fast"), "budget": (TRAIN, "lots"),
             "currency": (TRAIN, "XYZ"), "fx": ({**TRAIN, "currency": "KRW"}, "x"), "lang": (TRAIN, "fr"),
             "candidates": (TRAIN, "nosuch-gpu"), "horizon": (TRAIN, "forever"), "model": (TRAIN, "resnet5")}
    assert set(cases) | {"upload", "device"} == set(FIELDS)
    for field, (base, bad) in cases.items():
        values = {**base, field: bad}
        r = client.get("/", query_string=values)
        page = r.get_data(as_text=True)
        message = error_of(r)
        assert r.status_code == 400, field
        if field != "model":
            assert message == cli_error("quote", *argv({k: v for k, v in values.items() if v})), field
        assert f'<div class="bad">\n<label for="f-{field}">' in page, (field, message)
        for k, v in values.items():
            if v and k not in ("model", "finetune", "currency", "lang"):
                assert f'name="{k}" value="{html.escape(v)}"' in page, (field, k)
    r = client.get("/", query_string={"model": "lenet5", "view": "estimate", "device": "nosuch-gpu"})
    assert r.status_code == 400 and '<div class="bad">\n<label for="f-device">' in r.get_data(as_text=True)
    assert error_of(r) == cli_error("estimate", "lenet5", "--device", "nosuch-gpu")


def test_a_quote_by_get_or_post_embeds_the_clis_html_report(client, tmp_path):
    out = tmp_path / "q.html"
    cli("quote", *argv(TRAIN), "-o", str(out))
    body = out.read_text().split("<body>", 1)[1].rsplit("</body>", 1)[0]
    for r in (client.get("/", query_string=TRAIN), client.post("/", data={**TRAIN, "view": "quote"})):
        page = r.get_data(as_text=True)
        assert r.status_code == 200 and body in page
        for fmt in ("md", "html", "json", "csv"):
            assert re.search(rf'href="/download/[0-9a-f]{{32}}\.{fmt}" download', page)
        assert 'name="samples" value="60000"' in page       # the form keeps the question


@pytest.mark.parametrize("fmt, media", [("md", "text/markdown"), ("html", "text/html"), ("json", "application/json"),
                                        ("csv", "text/csv")])
def test_downloads_are_the_clis_output_with_their_media_types(client, tmp_path, fmt, media):
    options = {**TRAIN, "lang": "ko", "currency": "KRW", "fx": "1400", "budget": "2e8", "horizon": "2y"}
    page = client.get("/", query_string=options).get_data(as_text=True)
    link = re.search(rf'href="(/download/[0-9a-f]{{32}}\.{fmt})"', page).group(1)
    r = client.get(link)
    out = tmp_path / f"quote.{fmt}"
    cli("quote", *argv(options), "-o", str(out))
    assert r.status_code == 200 and r.mimetype == media
    assert r.headers["Content-Disposition"] == f'attachment; filename="quote.{fmt}"'
    assert r.get_data() == out.read_bytes()


def test_downloads_of_unknown_quotes_or_formats_are_404(client):
    r = client.get("/download/" + "0" * 32 + ".md")
    assert r.status_code == 404 and "no longer kept" in error_of(r)
    assert client.get("/download/" + "0" * 32 + ".pdf").status_code == 404


def test_the_estimate_view_shows_every_layer_and_the_roofline(client):
    options = {"model": "lenet5", "device": "h100-sxm", "samples": "60000"}
    d = json.loads(cli("estimate", *argv(options), "--format", "json"))
    page = client.get("/", query_string={**options, "view": "estimate"}).get_data(as_text=True)
    assert "<h2>Per layer</h2>" in page and "<h2>Roofline per layer</h2>" in page
    for layer in d["layers"]:
        assert f"<td>{layer['name']}</td>" in page
    assert f"<td>{d['params']:,}</td>" in page and d["prediction"]["bound"] in page
    assert f"<h2>Prediction on {d['prediction']['device']}</h2>" in page


def test_the_estimate_view_turns_serving_fields_into_inference(client):
    options = {"model": "gpt2_small", "device": "h100-sxm", "concurrency": "4", "output-tokens": "32"}
    page = client.get("/", query_string={**options, "view": "estimate"}).get_data(as_text=True)
    d = json.loads(cli("estimate", *argv({**options, "inference": True}), "--format", "json"))
    assert "<h2>Serving on h100-sxm</h2>" in page and "<h2>Language model</h2>" in page
    assert f"<td>{d['params']:,}</td>" in page


HANGUL = re.compile(r"[\uac00-\ud7a3]")


def test_the_page_text_has_a_korean_version_of_every_entry_with_the_same_fields():
    """Each of the page's words, labels and hints has a Korean version that is Korean (Hangul in it; the link to the
    other language excepted, which names English) and takes the same {fields} as the English."""
    import string

    from sizing.web.page import FIELDSETS, PAGE_TEXT

    pairs = {**{k: v for k, v in PAGE_TEXT.items() if k != "other_lang"},
             **{f"legend {i}": legend for i, (legend, _) in enumerate(FIELDSETS)},
             **{f"label {f.name}": f.label for f in FIELDS.values()},
             **{f"hint {f.name}": f.hint for f in FIELDS.values() if isinstance(f.hint, tuple)}}
    for key, (en, ko) in pairs.items():
        assert HANGUL.search(ko) and not HANGUL.search(en), key
        fields = [{name for _, name, _, _ in string.Formatter().parse(x) if name} for x in (en, ko)]
        assert fields[0] == fields[1], key
    assert PAGE_TEXT["other_lang"] == ("한국어", "English")


def test_the_page_in_korean_labels_every_field_and_frames_errors_in_korean(client):
    """lang=ko: the blank form, an answered estimate and a refusal are in Korean (html lang, every legend, label,
    placeholder and button), with no English label left; the refusal is still the command line's own line."""
    from sizing.web.page import FIELDSETS, PAGE_TEXT

    blank = client.get("/", query_string={"lang": "ko"})
    english = client.get("/").get_data(as_text=True)
    bad = {**TRAIN, "lang": "ko", "samples": "x"}
    refused = client.get("/", query_string=bad)
    answered = client.get("/", query_string={"model": "lenet5", "lang": "ko", "view": "estimate"})
    assert blank.status_code == 200 and refused.status_code == 400 and answered.status_code == 200
    for page in (blank.get_data(as_text=True), refused.get_data(as_text=True), answered.get_data(as_text=True)):
        assert '<html lang="ko">' in page
        for legend, fields in FIELDSETS:
            assert f"<legend>{legend[1]}</legend>" in page and f"<legend>{legend[0]}</legend>" not in page
            for f in fields:
                assert f'<label for="f-{f.name}">{f.label[1]}</label>' in page, f.name
                assert f'<label for="f-{f.name}">{f.label[0]}</label>' in english, f.name
                if isinstance(f.hint, tuple):         # a placeholder; under the file input, a hint
                    assert (f'placeholder="{html.escape(f.hint[1])}"' in page
                            or f'<span class="hint">{html.escape(f.hint[1])}</span>' in page), f.name
        assert '<button type="submit" name="view" value="quote">견적</button>' in page
        assert PAGE_TEXT["tagline"][1] in page and PAGE_TEXT["tagline"][0] not in page
        assert '<a class="lang" href="/?lang=en" lang="en" hreflang="en">English</a>' in page
    page = refused.get_data(as_text=True)
    assert '<p class="error" role="alert">오류: ' in page and error_of(refused) == cli_error("quote", *argv(bad))
    assert '<div class="bad">\n<label for="f-samples">에폭당 샘플 수</label>' in page
    page = answered.get_data(as_text=True)
    assert "<title>추정: lenet5 - sizing</title>" in page and "<h2>합계</h2>" in page and "<h2>층별</h2>" in page
    assert '<a class="lang" href="/?lang=ko" lang="ko" hreflang="ko">한국어</a>' in english
    assert "<h2>Totals</h2>" in client.get("/", query_string={"model": "lenet5", "view": "estimate"}).get_data(
        as_text=True)


def test_unknown_form_fields_and_views_are_refused(client):
    r = client.get("/", query_string={**TRAIN, "sample": "3"})
    assert r.status_code == 400 and error_of(r).startswith("unknown field 'sample'")
    r = client.get("/", query_string={**TRAIN, "samples": "<script>alert(1)</script>"})
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    r = client.get("/", query_string={**TRAIN, "view": "pdf"})
    assert r.status_code == 400 and error_of(r) == "view: 'pdf' is not one of quote, estimate"


# ---------------------------------------------------------------------------------------------------------------
# Uploads

def _upload(client, name: str, data: bytes, **fields):
    from io import BytesIO
    return client.post("/", data={**fields, "upload": (BytesIO(data), name)}, content_type="multipart/form-data")


def test_upload_of_a_yaml_spec_quotes_as_the_cli_does_on_that_file(client, tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    spec = (ZOO / "lenet5.yaml").read_text().replace("name: lenet5", "name: <b>my net</b>", 1)
    assert "<b>my net</b>" in spec
    r = _upload(client, "my net.yaml", spec.encode(), samples="60000", deadline="1h", candidates="h100-sxm")
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "&lt;b&gt;my net&lt;/b&gt;" in page and "<b>my net</b>" not in page        # escaped
    assert "my_net.yaml" in page and str(private) not in page
    assert list(private.iterdir()) == []                                                # deleted after
    (tmp_path / "my_net.yaml").write_text(spec)
    monkeypatch.chdir(tmp_path)
    link = re.search(r'href="(/download/[0-9a-f]{32}\.json)"', page).group(1)
    assert json.loads(client.get(link).get_data()) == json.loads(
        cli("quote", "my_net.yaml", "--samples", "60000", "--deadline", "1h", "--candidates", "h100-sxm",
            "--format", "json"))


def test_upload_of_an_hf_config_and_of_an_onnx_file(client, tmp_path):
    r = _upload(client, "config.json", (HF / "gpt2.json").read_bytes(), view="estimate")
    d = json.loads(cli("estimate", str(HF / "gpt2.json"), "--format", "json"))
    assert r.status_code == 200 and f"<td>{d['params']:,}</td>" in r.get_data(as_text=True)
    from test_onnx import resnet_onnx
    path = resnet_onnx(pytest.importorskip("onnx"), tmp_path / "tiny.onnx")
    r = _upload(client, "tiny.onnx", Path(path).read_bytes(), view="estimate")
    d = json.loads(cli("estimate", path, "--format", "json"))
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and f"<td>{d['params']:,}</td>" in page and "<td>b2down</td>" in page


def test_bad_uploads_are_one_line(client):
    r = _upload(client, "model.txt", b"layers: []", view="estimate")
    assert r.status_code == 400 and error_of(r).startswith("upload: 'model.txt' is not a .yaml")
    r = _upload(client, "bad.yaml", b"input: [1\n", view="estimate")
    assert r.status_code == 400 and error_of(r).startswith("bad.yaml:") and "sizing-web-" not in error_of(r)
    assert 'was: bad.yaml (choose it again)' in r.get_data(as_text=True)
    r = _upload(client, "big.yaml", b"#" * (MAX_FILE_BYTES + 1))
    assert r.status_code == 413 and str(MAX_FILE_BYTES) in error_of(r)


# ---------------------------------------------------------------------------------------------------------------
# The API

def test_api_quote_is_the_clis_json(client):
    body = {"model": "lenet5", "samples": 6e4, "epochs": 2, "deadline": "1h", "candidates": "h100-sxm",
            "lang": "ko", "currency": "KRW", "fx": 1400, "global_batch": 128}
    r = client.post("/api/quote", json=body)
    assert r.status_code == 200 and r.mimetype == "application/json"
    expected = cli("quote", "lenet5", "--samples", "60000", "--epochs", "2", "--deadline", "1h", "--candidates",
                   "h100-sxm", "--lang", "ko", "--currency", "KRW", "--fx", "1400", "--global-batch", "128",
                   "--format", "json")
    assert r.get_data(as_text=True).rstrip("\n") == expected.rstrip("\n")
    assert r.get_json()["lang"] == "ko" and r.get_json()["currency"] == "KRW"


@pytest.mark.parametrize("options", [
    {"model": "lenet5", "qps": "1000", "latency-ms": "20", "candidates": "h100-sxm"},
    {"model": "gpt2_small", "concurrency": "8", "prompt-tokens": "512", "output-tokens": "64", "ttft-ms": "500",
     "tpot-ms": "50", "candidates": "h100-sxm"},
    {"model": "gpt2_small", "finetune": "lora", "lora-rank": "4", "tokens": "1e8", "deadline": "1d",
     "candidates": "h100-sxm"},
], ids=["serve", "serve-lm", "finetune"])
def test_api_quote_serving_and_finetuning_are_the_clis_json(client, options):
    r = client.post("/api/quote", json=options)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json() == json.loads(cli("quote", *argv(options), "--format", "json"))


def test_api_estimate_is_the_clis_json(client):
    options = {"model": "resnet18", "device": "h100-sxm", "samples": "1.28e6", "epochs": "3", "inference": False}
    r = client.post("/api/estimate", json=options)
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.get_data(as_text=True) == cli("estimate", "resnet18", "--device", "h100-sxm", "--samples", "1.28e6",
                                           "--epochs", "3", "--format", "json")


def test_api_takes_an_inline_spec_and_an_inline_hf_config(client, tmp_path):
    spec = yaml.safe_load((ZOO / "mnist_mlp.yaml").read_text())
    r = client.post("/api/estimate", json={"model": spec, "batch": 32})
    d = json.loads(cli("estimate", str(ZOO / "mnist_mlp.yaml"), "--batch", "32", "--format", "json"))
    got = r.get_json()
    assert r.status_code == 200 and got["source"] == "spec.yaml"
    assert {k: v for k, v in got.items() if k != "source"} == {k: v for k, v in d.items() if k != "source"}
    config = json.loads((HF / "qwen2.5-0.5b.json").read_text())
    r = client.post("/api/estimate", json={"model": config, "seq_len": 256})
    d = json.loads(cli("estimate", str(HF / "qwen2.5-0.5b.json"), "--seq-len", "256", "--format", "json"))
    assert r.status_code == 200 and r.get_json()["params"] == d["params"] > 0


def test_the_docs_examples_answer_what_the_docs_say(client):
    """Every call docs/web.md shows, sent as written: the bookmarkable URL is a quote page, each curl body answers
    the command line's JSON for the same options (the options written out here again), and the error example
    answers the error it prints (up to its '...')."""
    from urllib.parse import urlsplit

    doc = (Path(__file__).resolve().parents[1] / "docs" / "web.md").read_text()
    calls = re.findall(r"curl -s -X POST http://127\.0\.0\.1:8765(/api/\w+).*?-d '(.*?)'", doc, re.S)
    assert len(calls) == 4, calls
    for i, (path, body) in enumerate(calls):
        r = client.post(path, data=body)
        if i == 0:          # a full quote (every candidate): its terms as asked (API = CLI: the tests above)
            got = r.get_json()
            assert r.status_code == 200 and (got["model"], got["lang"], got["currency"], got["fx_per_usd"]) == (
                "resnet50", "ko", "KRW", "1400") and got["workload"]["samples"] == 1280000 and got["options"]
        elif i == 1:
            assert r.status_code == 200 and r.get_json() == json.loads(cli(
                "estimate", "gpt2_small", "--device", "h100", "--inference", "--concurrency", "32", "--prompt-tokens",
                "512", "--format", "json"))
        elif i == 3:
            printed = re.search(r"\n(\{\"error\": .*\})\n", doc).group(1)
            assert r.status_code == 400 and r.get_json()["error"].startswith(
                json.loads(printed)["error"].split("...")[0])
        else:
            assert r.status_code == 200 and r.get_json()["params"] == 784 * 10 + 10      # one linear, 784 -> 10
    url = urlsplit(re.search(r"`(http://127\.0\.0\.1:8765/\?[^`]+)`", doc).group(1))
    page = client.get(f"/?{url.query}")
    assert page.status_code == 200 and "<h1>Hardware quote: resnet50</h1>" in page.get_data(as_text=True)


@pytest.mark.parametrize("body, expected", [
    ({"model": "lenet5", "samples": "x", "deadline": "1h"}, "--samples: 'x' is not a number"),
    ({"model": "lenet5", "sampels": 6e4}, "unknown key 'sampels'; did you mean 'samples'?; valid keys: model, "),
    ({"samples": 6e4, "deadline": "1h"}, "model: choose a zoo model"),
    ({"model": "/etc/passwd", "samples": 6e4}, "model: '/etc/passwd' is not a zoo model"),
    ({"model": "lenet5", "output": "/tmp/x.md"}, "unknown key 'output'"),
    ({"model": "lenet5", "hwdb": "/etc/passwd"}, "unknown key 'hwdb'"),
    ({"model": "lenet5", "samples": [1]}, "samples: give a number or a string, got list"),
    ({"model": "lenet5", "samples": 6e4, "deadline": "1h", "max-devices": 10 ** 7}, "--max-devices: 10,000,000 is past"),
    ({"model": 3}, "model: give a zoo name, a spec object or an HF config object, got int"),
], ids=["bad-number", "unknown-key", "no-model", "path", "output", "hwdb", "list", "max-devices", "model-type"])
def test_api_quote_errors_are_400_with_one_line(client, body, expected):
    r = client.post("/api/quote", json=body)
    assert r.status_code == 400 and r.mimetype == "application/json"
    assert r.get_json()["error"].startswith(expected) and "\n" not in r.get_json()["error"]


def test_api_errors_are_the_clis_lines(client):
    r = client.post("/api/quote", json={"model": "lenet5", "samples": 6e4, "finetune": "half"})
    assert r.get_json()["error"] == cli_error("quote", "lenet5", "--samples", "60000", "--finetune", "half")
    r = client.post("/api/estimate", json={"model": "lenet5", "devices": 0, "device": "h100"})
    assert r.get_json()["error"] == cli_error("estimate", "lenet5", "--devices", "0", "--device", "h100")
    r = client.post("/api/estimate", json={"model": "lenet5", "inference": True, "device": "h100"})
    assert r.status_code == 400
    assert r.get_json()["error"] == cli_error("estimate", "lenet5", "--inference", "--device", "h100")
    r = client.post("/api/estimate", json={"model": "lenet5", "inference": "maybe"})
    assert r.get_json()["error"] == "inference: give true or false, got 'maybe'"


@pytest.mark.parametrize("options", [
    {"model": "gpt2_small", "concurrency": 4},
    {"model": "lenet5", "devices": 8, "deadline": "1h"},
    {"model": "lenet5", "device": "h100", "devices": 8, "deadline": "1h"},
    {"model": "gpt2_small", "finetune": "lora", "inference": True},
    {"model": "lenet5", "lora-rank": 4},
    {"model": "gpt2_small", "device": "h100", "inference": True, "ttft-ms": -1},
    {"model": "lenet5", "device": "nosuch-gpu", "samples": 60000},
    {"model": "gpt2_small", "device": "h100", "tokens": 1e9, "deadline": "1s", "max-devices": 8},
], ids=["serving-without-inference", "planner-without-device", "devices-and-deadline", "finetune-inference",
        "rank-without-finetune", "negative-ttft", "unknown-device", "unknown-key"])
def test_api_estimate_refuses_what_the_cli_refuses_with_its_line(client, options):
    """The estimate's orchestration (sizing.predict.plan.estimate_answer) refuses over the web with the command
    line's own line, each refusal in its own place in the flow."""
    r = client.post("/api/estimate", json=options)
    assert r.status_code == 400
    if "max-devices" in options:                      # a quote's option: not one of the estimate's keys
        assert r.get_json()["error"].startswith("unknown key 'max-devices'")
        return
    assert r.get_json()["error"] == cli_error("estimate", *argv({k: v for k, v in options.items()}))


@pytest.mark.parametrize("data, expected", [(b"{", "the body is not JSON"), (b"[1]", "the body must be a JSON object"),
                                            (b"", "the body must be a JSON object")])
def test_api_bodies_that_are_not_objects(client, data, expected):
    r = client.post("/api/estimate", data=data, content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"].startswith(expected)


def test_http_errors_are_one_line_json_for_the_api_and_a_page_otherwise(client):
    r = client.post("/api/quote", data=b" " * (MAX_FILE_BYTES + 1), content_type="application/json")
    assert r.status_code == 413 and r.get_json() == {
        "error": f"the request is over {MAX_FILE_BYTES} bytes, the limit for a spec and for a body"}
    r = client.get("/api/quote")
    assert r.status_code == 405 and r.get_json() == {"error": "GET /api/quote is not allowed; use POST"}
    r = client.post("/api/nothing")
    assert r.status_code == 404 and r.get_json()["error"].startswith("no page /api/nothing")
    r = client.get("/nothing")
    assert r.status_code == 404 and r.mimetype == "text/html" and error_of(r).startswith("no page /nothing")
    assert "Traceback" not in r.get_data(as_text=True)


def test_an_internal_error_is_one_line_without_a_traceback(monkeypatch):
    app = create_app({"estimate": estimate, "quote": quote})
    from sizing.quote import build

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(build, "build_quote", broken)
    app.logger.disabled = True
    r = app.test_client().post("/api/quote", json={"model": "lenet5", "samples": 1, "deadline": "1h"})
    assert r.status_code == 500
    assert r.get_json() == {"error": "internal error: ZeroDivisionError: division by zero (please report it)"}


# ---------------------------------------------------------------------------------------------------------------
# The server, the command and the cache

def test_an_answer_past_the_time_bound_is_refused_in_one_line(monkeypatch):
    """The web's backstop: an estimate or quote still running after ANSWER_TIMEOUT_S is refused with one line (the
    computation here waits on an event the test sets afterwards, so it cannot finish in time)."""
    from sizing.predict import plan
    from sizing.quote import build
    from sizing.web import app as web_app

    gate = threading.Event()
    original = plan.estimate_answer

    def slow(*a, **k):
        gate.wait(10)
        return original(*a, **k)
    monkeypatch.setattr(web_app, "ANSWER_TIMEOUT_S", 0.2)
    monkeypatch.setattr(plan, "estimate_answer", slow)
    monkeypatch.setattr(build, "build_quote", lambda *a, **k: gate.wait(10))
    c = create_app({"estimate": estimate, "quote": quote}).test_client()
    for path, body in (("/api/estimate", {"model": "lenet5"}), ("/api/quote", TRAIN)):
        r = c.post(path, json=body)
        assert r.status_code == 400 and r.get_json()["error"].startswith(
            "the answer took longer than 0.2 s and was given up; ask for less"), path
    r = c.get("/", query_string={"model": "lenet5", "view": "estimate"})
    assert r.status_code == 400 and "took longer than 0.2 s" in error_of(r)
    gate.set()


def test_the_estimate_runs_in_process_and_shows_the_device_note(client, monkeypatch):
    """No child process: the estimate is the library call (subprocess refused here), and what a family name was
    taken to mean, which the command line says on stderr, is a note on the page."""
    def refuse(*a, **k):
        raise AssertionError("no child process")
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    page = client.get("/", query_string={"model": "resnet18", "device": "h100", "view": "estimate"})
    text = page.get_data(as_text=True)
    stderr = CliRunner().invoke(main, ["estimate", "resnet18", "--device", "h100"]).stderr.strip()
    assert stderr.startswith("note: 'h100' names a family")
    notes = [html.unescape(x) for x in re.findall(r'<p class="note">(.*?)</p>', text)]
    assert page.status_code == 200 and stderr in notes


def test_device_local_without_a_bench_profile_is_refused_not_measured(client, tmp_path, monkeypatch):
    """The command line would measure the machine for minutes (sizing bench); the web refuses in one line, next to
    the device field, and measures nothing."""
    from sizing.hardware.bench import profile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(profile, "run_bench", lambda *a, **k: pytest.fail("the web measured the machine"))
    r = client.post("/api/estimate", json={"model": "lenet5", "device": "local"})
    assert r.status_code == 400 and r.get_json()["error"] == (
        "--device local: no bench profile of this machine yet; run `sizing bench` on the command line first (the "
        "web app does not measure the machine)")
    r = client.get("/", query_string={"model": "lenet5", "device": "local", "view": "estimate"})
    assert r.status_code == 400 and '<div class="bad">\n<label for="f-device">' in r.get_data(as_text=True)
    assert list(tmp_path.iterdir()) == []


def test_memo_computes_one_answer_for_concurrent_identical_requests():
    memo, calls, gate = Memo(size=2, slots=2), [], threading.Event()

    def make():
        calls.append(1)
        gate.wait(5)
        return len(calls)
    threads = [threading.Thread(target=memo.get, args=("k", make)) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(5)
    assert calls == [1] and memo.get("k", make) == 1
    for key in ("a", "b"):
        memo.get(key, lambda key=key: key)
    assert memo.peek("k") is None and memo.peek("b") == "b"       # the oldest answer goes first
    with pytest.raises(ValueError):
        memo.get("bad", lambda: int("x"))
    assert memo.peek("bad") is None


def test_sizing_web_without_flask_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "flask", None)
    result = CliRunner().invoke(main, ["web"])
    assert result.exit_code == 2 and result.stderr == "error: sizing web needs Flask: pip install -e '.[web]'\n"


def test_another_host_warns_and_a_taken_port_is_one_line():
    from sizing.common.errors import SizingError
    from sizing.web import serve

    said = []
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        with pytest.raises(SizingError, match=r"--host 0.0.0.0 --port \d+: cannot listen there"):
            serve("0.0.0.0", taken.getsockname()[1], False, {"estimate": estimate, "quote": quote}, said.append)
    assert len(said) == 1 and said[0].startswith("warning: --host 0.0.0.0:") and "development server" in said[0]
    said.clear()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SizingError):
            serve("127.0.0.1", taken.getsockname()[1], False, {"estimate": estimate, "quote": quote}, said.append)
    assert said == []


# ---------------------------------------------------------------------------------------------------------------
# A real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MEASURE = ("<script>parent.document.body.setAttribute('data-measured', document.documentElement.scrollWidth + ' ' + "
           "window.innerWidth + ' ' + document.querySelectorAll('section.report svg').length + ' ' + "
           "getComputedStyle(document.querySelector('label')).wordBreak)</script>")


@pytest.fixture(scope="module")
def server():
    from werkzeug.serving import make_server
    srv = make_server("127.0.0.1", 0, create_app({"estimate": estimate, "quote": quote}), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def chromium(url: str, *extra) -> str:
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1366,900",
                          "--virtual-time-budget=3000", "--user-data-dir=" + tempfile.mkdtemp(prefix="chromium-"),
                          "--dump-dom", *extra, url], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-500:]
    return run.stdout


def measured(page_html: str, width: int, folder: Path) -> tuple[int, int, int, str]:
    """(scrollWidth, innerWidth, charts, a label's word-break) of the page shown ``width`` px wide: a copy of its
    HTML with a measuring
    script appended, in an iframe of that width (headless chromium's window is at least 500 px wide), written to a
    file next to the test, never into the product's page."""
    copy = page_html.replace("</body>", MEASURE + "</body>")
    harness = folder / f"harness-{width}.html"
    harness.write_text(f'<!DOCTYPE html><html><body style="margin:0"><iframe style="border:0;width:{width}px;'
                       f'height:900px" srcdoc="{html.escape(copy)}"></iframe></body></html>')
    found = re.search(r'data-measured="(\d+) (\d+) (\d+) ([a-z-]+)"', chromium(harness.as_uri()))
    assert found, "the measuring script did not run"
    return (*map(int, found.groups()[:3]), found.group(4))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_quote_appears_in_a_browser_from_its_bookmarkable_url(server):
    """chromium loads the quote's URL (the form submitted by GET): the report is there, charts and all."""
    from urllib.parse import urlencode

    dom = chromium(f"{server}/?{urlencode({**TRAIN, 'view': 'quote'})}")
    assert "<h1>Hardware quote: lenet5</h1>" in dom and "<svg" in dom and 'href="/download/' in dom


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_browser_fills_the_form_and_submits_it(server, tmp_path):
    """chromium fills the blank form (a copy of the page with a filling script, its action the server's) and
    clicks Quote: the browser's own multipart POST comes back as the quote, the form keeping what was typed."""
    from urllib.request import urlopen

    fill = {"samples": "60000", "deadline": "1h", "candidates": "h100-sxm", "lang": "ko"}
    script = (f"<script>const f = document.forms[0]; f.action = '{server}/'; f.elements['model'].value = 'lenet5';"
              + "".join(f"f.elements['{k}'].value = '{v}';" for k, v in fill.items())
              + "f.querySelector('button[value=quote]').click();</script>")
    harness = tmp_path / "form.html"
    harness.write_text(urlopen(server + "/").read().decode().replace("</body>", script + "</body>"))
    dom = chromium(harness.as_uri())
    assert "<h1>하드웨어 견적: lenet5</h1>" in dom and 'href="/download/' in dom and '<html lang="ko">' in dom
    assert 'name="samples" value="60000"' in dom and 'name="deadline" value="1h"' in dom


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("width", [1366, 390])
def test_the_form_and_the_quote_fit_the_width_without_horizontal_scroll(server, tmp_path, width):
    from urllib.parse import urlencode
    from urllib.request import urlopen

    from urllib.error import HTTPError

    ko_quote = {**TRAIN, "lang": "ko", "currency": "KRW", "fx": "1400"}
    for query, charts, lang in (({}, 0, "en"), ({"lang": "ko"}, 0, "ko"), (ko_quote, 2, "ko"),
                                ({**ko_quote, "samples": "x" * 60}, 0, "ko"),
                                ({"model": "lenet5", "lang": "ko", "view": "estimate", "device": "h100-sxm"}, 0, "ko")):
        try:
            page = urlopen(f"{server}/?{urlencode(query)}").read().decode()
        except HTTPError as e:                  # the refusal's page (400) is measured too
            page = e.read().decode()
        scroll, inner, shown, breaks = measured(page, width, tmp_path)
        assert inner == width and scroll <= inner, (query, scroll, inner)
        assert shown >= charts, (query, shown)
        assert breaks == ("keep-all" if lang == "ko" else "normal"), (query, breaks)    # Korean keeps words whole
