"""The page: one server-rendered form (no script; GET and POST both work, so a quote's URL can be bookmarked), the
quote report embedded as ``sizing quote --format html`` writes it, and the estimate as tables built from
``sizing estimate --format json``. Rendered by Jinja with autoescaping: every user string is escaped."""
from __future__ import annotations

from dataclasses import dataclass

from ..quote.text import LANGS
from ..quote.writers import CSS as REPORT_CSS


@dataclass(frozen=True)
class Field:
    name: str                  # the command line's long option name (the form's and the API's key)
    label: tuple[str, str]     # (English, Korean), as sizing/quote/text.py's STRINGS
    hint: tuple[str, str] | str = ""    # a placeholder: (English, Korean), or one for both (a number, an example)
    choices: tuple = ()        # a <select>; '' first means "not given"


FIELDSETS = (
    (("Model", "모델"), (
        Field("model", ("Zoo model", "내장 모델(zoo)")),
        Field("upload", ("or upload a file", "또는 파일 올리기"),
              ("YAML spec, HF config.json or ONNX", "YAML 명세, HF config.json 또는 ONNX")))),
    (("Train", "학습"), (
        Field("samples", ("Samples per epoch", "에폭당 샘플 수"), "1.28e6"),
        Field("tokens", ("or tokens per epoch", "또는 에폭당 토큰 수"), "2e11"),
        Field("epochs", ("Epochs", "에폭 수"), "1"),
        Field("deadline", ("Deadline", "기한"), "24h, 14d"),
        Field("global-batch", ("Global batch", "전체 배치"), "256"))),
    (("Fine-tune", "미세 조정"), (
        Field("finetune", ("Method", "방식"), choices=("", "full", "lora", "qlora")),
        Field("lora-rank", ("LoRA rank", "LoRA 랭크"), "8"))),
    (("Serve", "서빙"), (
        Field("concurrency", ("Concurrency", "동시 요청 수"), ("requests in flight", "처리 중인 요청")),
        Field("prompt-tokens", ("Prompt tokens", "프롬프트 토큰"), "1024"),
        Field("output-tokens", ("Output tokens", "출력 토큰"), "256"),
        Field("ttft-ms", ("TTFT target, ms", "첫 토큰 목표(TTFT), ms"), "500"),
        Field("tpot-ms", ("TPOT target, ms", "출력 토큰당 목표(TPOT), ms"), "50"),
        Field("qps", ("Requests per second", "초당 요청 수"), ("other models", "언어 모델 외")))),
    (("Money and hardware", "비용과 하드웨어"), (
        Field("budget", ("Budget", "예산"), ("in the currency", "선택한 통화로")),
        Field("currency", ("Currency", "통화"), choices=("USD", "KRW")),
        Field("fx", ("Exchange rate", "환율"), ("KRW per USD, e.g. 1400", "1달러당 원, 예: 1400")),
        Field("lang", ("Report language", "보고서 언어"), choices=("en", "ko")),
        Field("candidates", ("Candidate devices", "후보 장치"),
              ("h100, mi300x (default: all)", "h100, mi300x (기본: 전체)")),
        Field("horizon", ("Owned-hardware horizon", "보유 기간"), "3y"),
        Field("device", ("Device for the estimate", "추정용 장치"), ("h100 (estimate view)", "h100 (추정 보기)")))),
)
FIELDS = {f.name: f for _, fs in FIELDSETS for f in fs}
SERVING = ("concurrency", "prompt-tokens", "output-tokens", "ttft-ms", "tpot-ms")

# The page's own words, (English, Korean) as sizing/quote/text.py's STRINGS; {name} fields are escaped when filled
PAGE_TEXT = {
    "tagline": ("what to buy to train or serve a model, and what it costs",
                "모델을 학습하거나 서빙하려면 무엇을 사야 하고 비용은 얼마인지"),
    "other_lang": ("한국어", "English"),
    "error": ("error", "오류"),
    "was": ("was: {name} (choose it again)", "이전 파일: {name} (다시 선택하십시오)"),
    "quote": ("Quote", "견적"),
    "estimate": ("Estimate", "추정"),
    "options_note": ("Filled fields are the options of {quote} (or {estimate}); empty ones keep the command line's "
                     "defaults.", "채운 항목은 {quote}(또는 {estimate})의 옵션입니다. 빈 항목은 명령줄의 기본값을 "
                                  "따릅니다."),
    "intro": ("Choose a model and a job, then Quote for the hardware to buy with its cost, or Estimate for the "
              "model's exact counts per layer (and, with a device, its roofline).",
              "모델과 작업을 고른 뒤, 살 하드웨어와 그 비용은 견적을, 층별 정확한 연산량(장치를 주면 루프라인까지)은 "
              "추정을 누르십시오."),
    "downloads": ("downloads", "내려받기"),
    "estimate_title": ("Estimate: {model}", "추정: {model}"),
    "totals": ("Totals", "합계"),
    "prediction_on": ("Prediction on {device}", "{device} 학습 예측"),
    "serving_on": ("Serving on {device}", "{device} 서빙"),
    "language_model": ("Language model", "언어 모델"),
    "per_layer": ("Per layer", "층별"),
    "roofline_per_layer": ("Roofline per layer", "층별 루프라인"),
    "assumptions": ("Assumptions", "가정"),
    "yes": ("yes", "예"),
    "no": ("no", "아니오"),
}


def words(lang: str):
    """The page's words in ``lang``: ``t(key, **fields)`` for PAGE_TEXT (markup-safe, fields escaped) and
    ``pick(pair)`` for a field's label or hint."""
    from markupsafe import Markup, escape

    i = LANGS.index(lang)

    def t(key: str, **fields) -> Markup:
        return Markup(escape(PAGE_TEXT[key][i])).format(**fields)

    def pick(pair) -> str:
        return pair[i] if isinstance(pair, tuple) else pair
    return t, pick


PAGE_CSS = """
body { max-width: 1320px; margin: 0 auto; padding: 12px 16px; font-size: 10.5pt; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; border-bottom: 2px solid #d9480f;
         margin-bottom: 10px; }
header h1 { margin: 0; font-size: 15pt; } header p { margin: 0; color: #555; } header a.lang { margin-left: auto; }
main { display: grid; gap: 20px; grid-template-columns: minmax(0, 1fr); }
@media screen and (min-width: 1000px) { main { grid-template-columns: 380px minmax(0, 1fr); } }
@media screen and (max-width: 999px) { main.answered section.report { order: -1; } }
form fieldset { border: 1px solid #ddd; border-radius: 6px; margin: 0 0 8px; padding: 4px 10px 8px; }
legend { font-weight: 600; padding: 0 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 6px 10px; }
label { display: block; font-size: 9pt; color: #444; }
input, select { display: block; width: 100%; font: inherit; padding: 3px 5px; margin-top: 1px;
                border: 1px solid #aaa; border-radius: 4px; background: #fff; }
.bad input, .bad select { border-color: #c92a2a; background: #fff5f5; }
.field-error { color: #c92a2a; font-size: 8.5pt; }
.buttons { display: flex; gap: 8px; flex-wrap: wrap; }
button { font: inherit; padding: 6px 16px; border: 1px solid #d9480f; border-radius: 4px; background: #d9480f;
         color: #fff; cursor: pointer; }
button.second { background: #fff; color: #d9480f; }
p.error { border-left: 4px solid #c92a2a; background: #fff5f5; padding: 6px 10px; margin: 0 0 8px;
          overflow-wrap: anywhere; }
p.note { color: #555; font-size: 9pt; overflow-wrap: anywhere; }
nav.downloads { display: flex; gap: 6px 14px; flex-wrap: wrap; margin: 0 0 8px; }
nav.downloads a { padding: 2px 8px; border: 1px solid #bbb; border-radius: 4px; text-decoration: none; }
section.report { min-width: 0; overflow-wrap: anywhere; }
section.report svg { max-width: 100%; height: auto; }
.hint { color: #888; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% if title %}{{ title }} - {% endif %}sizing</title>
<style>{{ css }}</style></head>
<body>
<header><h1>sizing</h1><p>{{ t("tagline") }}</p>
<a class="lang" href="/?lang={{ other }}" lang="{{ other }}" hreflang="{{ other }}">{{ t("other_lang") }}</a></header>
<main{% if report or estimate %} class="answered"{% endif %}>
<form method="post" action="/" enctype="multipart/form-data">
{% if error %}<p class="error" role="alert">{{ t("error") }}: {{ error }}</p>{% endif %}
{% for legend, fields in fieldsets %}<fieldset><legend>{{ pick(legend) }}</legend><div class="grid">
{% for f in fields %}<div{% if f.name == error_field %} class="bad"{% endif %}>
<label for="f-{{ f.name }}">{{ pick(f.label) }}</label>
{% if f.name == "model" %}<select id="f-model" name="model"><option value=""></option>
{% for z in zoo %}<option{% if values.get("model") == z %} selected{% endif %}>{{ z }}</option>{% endfor %}</select>
{% elif f.name == "upload" %}<input id="f-upload" type="file" name="upload" accept=".yaml,.yml,.json,.onnx">
<span class="hint">{% if uploaded %}{{ t("was", name=uploaded) }}{% else %}{{ pick(f.hint) }}{% endif %}</span>
{% elif f.choices %}<select id="f-{{ f.name }}" name="{{ f.name }}">
{% for c in f.choices %}<option{% if values.get(f.name, "") == c %} selected{% endif %}>{{ c }}</option>{% endfor %}</select>
{% else %}<input id="f-{{ f.name }}" name="{{ f.name }}" value="{{ values.get(f.name, "") }}" placeholder="{{ pick(f.hint) }}">
{% endif %}{% if f.name == error_field %}<span class="field-error">{{ error }}</span>{% endif %}
</div>{% endfor %}</div></fieldset>{% endfor %}
<div class="buttons"><button type="submit" name="view" value="quote">{{ t("quote") }}</button>
<button class="second" type="submit" name="view" value="estimate">{{ t("estimate") }}</button></div>
<p class="note">{{ t("options_note", quote=code("sizing quote"), estimate=code("sizing estimate")) }}</p>
</form>
<section class="report" id="result">
{% if report %}<nav class="downloads" aria-label="{{ t("downloads") }}">{% for fmt, label in downloads %}
<a href="/download/{{ token }}.{{ fmt }}" download>{{ label }}</a>{% endfor %}</nav>
{{ report }}
{% elif estimate %}<h1>{{ title }}</h1>
{% for note in notes %}<p class="note">{{ note }}</p>{% endfor %}
{% for heading, table in estimate %}<h2>{{ heading }}</h2>
{% if table.head %}<div class="scroll"><table class="wide"><thead><tr>{% for h in table.head %}<th{% if loop.index0 in table.numeric %} class="num"{% endif %}>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in table.rows %}<tr>{% for c in row %}<td{% if loop.index0 in table.numeric %} class="num"{% endif %}>{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>
{% else %}<div class="scroll"><table class="kv"><tbody>{% for k, v in table.rows %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</tbody></table></div>{% endif %}
{% endfor %}
{% elif not error %}<p class="note">{{ t("intro") }}</p>{% endif %}
</section>
</main>
</body></html>
"""

DOWNLOADS = (("md", "Markdown"), ("html", "HTML"), ("json", "JSON"), ("csv", "CSV"))


@dataclass
class Table:
    head: list | None
    rows: list
    numeric: frozenset = frozenset()    # the columns of numbers (right-aligned)


def cell(v, yes_no=("yes", "no")) -> str:
    """A figure as the page shows it: integers with separators, floats to 4 significant digits, shapes with x,
    booleans as the page's language's ``yes_no``."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return yes_no[0] if v else yes_no[1]
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:.4g}"
    if isinstance(v, list):
        return " x ".join(cell(x) for x in v) if all(isinstance(x, int) for x in v) else "; ".join(map(str, v))
    return str(v)


def scalar(v) -> bool:
    return not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))


def key_values(d: dict, skip=(), yes_no=("yes", "no")) -> Table:
    """The scalars of ``d`` and of its dicts one level down ('forward.macs'), as a two-column table."""
    rows = []
    for k, v in d.items():
        if k in skip:
            continue
        if isinstance(v, dict):
            rows += [(f"{k}.{k2}", cell(v2, yes_no)) for k2, v2 in v.items() if scalar(v2)]
        elif scalar(v):
            rows.append((k, cell(v, yes_no)))
    return Table(None, rows)


def rows_table(rows: list[dict], yes_no=("yes", "no")) -> Table:
    """A list of records as a table; the columns are the first record's scalar fields."""
    head = [k for k, v in rows[0].items() if scalar(v)]
    numeric = frozenset(i for i, k in enumerate(head) if isinstance(rows[0][k], (int, float, list))
                        and not isinstance(rows[0][k], bool))
    return Table(head, [[cell(r.get(k), yes_no) for k in head] for r in rows], numeric)


def estimate_tables(d: dict, t) -> list[tuple[str, Table]]:
    """The estimate's JSON (``sizing estimate --format json``) as the page's tables, headed in the page's words
    ``t`` (``words``): totals, the layers, then the language model's figures, the prediction (its layers' roofline
    times) or the serving model. The keys are the JSON's own, in both languages."""
    yes_no = (str(t("yes")), str(t("no")))
    out = [(t("totals"), key_values(d, ("layers", "warnings", "prediction", "inference", "language_model"), yes_no))]
    found = [(key, d[key]) for key in ("prediction", "inference") if d.get(key)]
    out += [(t("prediction_on" if key == "prediction" else "serving_on", device=p.get("device", "")),
             key_values(p, ("layers", "alternatives", "pruned", "assumptions"), yes_no)) for key, p in found]
    if d.get("language_model"):
        out.append((t("language_model"), key_values(d["language_model"], (), yes_no)))
    if d.get("layers"):
        out.append((t("per_layer"), rows_table(d["layers"], yes_no)))
    for _, p in found:
        if p.get("layers"):
            out.append((t("roofline_per_layer"), rows_table(p["layers"], yes_no)))
        if p.get("assumptions"):
            out.append((t("assumptions"), Table(None, [(str(i + 1), str(a)) for i, a in enumerate(p["assumptions"])])))
    return out


def report_body(html: str) -> str:
    """What lies between <body> and </body> of a quote report (the page carries the report's CSS itself)."""
    return html.split("<body>", 1)[1].rsplit("</body>", 1)[0]


def render(values: dict, *, zoo: list[str], error: str | None = None, error_field: str | None = None,
           uploaded: str | None = None, report_html: str | None = None, token: str | None = None,
           estimate: dict | None = None, notes=(), lang: str = "en") -> str:
    """The page in ``lang`` (its own words; a quote report in the language it was written in)."""
    from flask import render_template_string
    from markupsafe import Markup, escape

    t, pick = words(lang)
    title = None
    if estimate is not None:
        title = t("estimate_title", model=estimate.get("model", ""))
    elif report_html is not None:
        title = report_html.split("<title>", 1)[1].split("</title>", 1)[0]
        title = Markup(title)        # already escaped by the report's writer
    return render_template_string(
        TEMPLATE, css=Markup(REPORT_CSS + PAGE_CSS), fieldsets=FIELDSETS, values=values, zoo=zoo, error=error,
        error_field=error_field, uploaded=uploaded, title=title, lang=lang, other=LANGS[1 - LANGS.index(lang)],
        token=token, downloads=DOWNLOADS, t=t, pick=pick, code=lambda text: Markup(f"<code>{escape(text)}</code>"),
        report=None if report_html is None else Markup(report_body(report_html)),
        estimate=None if estimate is None else estimate_tables(estimate, t), notes=notes)
