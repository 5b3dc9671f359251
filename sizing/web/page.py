"""The page: one server-rendered form (no script; GET and POST both work, so a quote's URL can be bookmarked), the
quote report embedded as ``sizing quote --format html`` writes it, and the estimate as tables built from
``sizing estimate --format json``. Rendered by Jinja with autoescaping: every user string is escaped."""
from __future__ import annotations

from dataclasses import dataclass

from ..quote.writers import CSS as REPORT_CSS


@dataclass(frozen=True)
class Field:
    name: str                  # the command line's long option name (the form's and the API's key)
    label: str
    hint: str = ""
    choices: tuple = ()        # a <select>; '' first means "not given"


FIELDSETS = (
    ("Model", (Field("model", "Zoo model"),
               Field("upload", "or upload a file", "YAML spec, HF config.json or ONNX"))),
    ("Train", (Field("samples", "Samples per epoch", "1.28e6"), Field("tokens", "or tokens per epoch", "2e11"),
               Field("epochs", "Epochs", "1"), Field("deadline", "Deadline", "24h, 14d"),
               Field("global-batch", "Global batch", "256"))),
    ("Fine-tune", (Field("finetune", "Method", choices=("", "full", "lora", "qlora")),
                   Field("lora-rank", "LoRA rank", "8"))),
    ("Serve", (Field("concurrency", "Concurrency", "requests in flight"),
               Field("prompt-tokens", "Prompt tokens", "1024"), Field("output-tokens", "Output tokens", "256"),
               Field("ttft-ms", "TTFT target, ms", "500"), Field("tpot-ms", "TPOT target, ms", "50"),
               Field("qps", "Requests per second", "other models"))),
    ("Money and hardware", (Field("budget", "Budget", "in the currency"),
                            Field("currency", "Currency", choices=("USD", "KRW")),
                            Field("fx", "Exchange rate", "KRW per USD, e.g. 1400"),
                            Field("lang", "Report language", choices=("en", "ko")),
                            Field("candidates", "Candidate devices", "h100, mi300x (default: all)"),
                            Field("horizon", "Owned-hardware horizon", "3y"),
                            Field("device", "Device for the estimate", "h100 (estimate view)"))),
)
FIELDS = {f.name: f for _, fs in FIELDSETS for f in fs}
SERVING = ("concurrency", "prompt-tokens", "output-tokens", "ttft-ms", "tpot-ms")

PAGE_CSS = """
body { max-width: 1320px; margin: 0 auto; padding: 12px 16px; font-size: 10.5pt; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; border-bottom: 2px solid #d9480f;
         margin-bottom: 10px; }
header h1 { margin: 0; font-size: 15pt; } header p { margin: 0; color: #555; }
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
<header><h1>sizing</h1><p>what to buy to train or serve a model, and what it costs</p></header>
<main{% if report or estimate %} class="answered"{% endif %}>
<form method="post" action="/" enctype="multipart/form-data">
{% if error %}<p class="error" role="alert">error: {{ error }}</p>{% endif %}
{% for legend, fields in fieldsets %}<fieldset><legend>{{ legend }}</legend><div class="grid">
{% for f in fields %}<div{% if f.name == error_field %} class="bad"{% endif %}>
<label for="f-{{ f.name }}">{{ f.label }}</label>
{% if f.name == "model" %}<select id="f-model" name="model"><option value=""></option>
{% for z in zoo %}<option{% if values.get("model") == z %} selected{% endif %}>{{ z }}</option>{% endfor %}</select>
{% elif f.name == "upload" %}<input id="f-upload" type="file" name="upload" accept=".yaml,.yml,.json,.onnx">
{% if uploaded %}<span class="hint">was: {{ uploaded }} (choose it again)</span>{% endif %}
{% elif f.choices %}<select id="f-{{ f.name }}" name="{{ f.name }}">
{% for c in f.choices %}<option{% if values.get(f.name, "") == c %} selected{% endif %}>{{ c }}</option>{% endfor %}</select>
{% else %}<input id="f-{{ f.name }}" name="{{ f.name }}" value="{{ values.get(f.name, "") }}" placeholder="{{ f.hint }}">
{% endif %}{% if f.name == error_field %}<span class="field-error">{{ error }}</span>{% endif %}
</div>{% endfor %}</div></fieldset>{% endfor %}
<div class="buttons"><button type="submit" name="view" value="quote">Quote</button>
<button class="second" type="submit" name="view" value="estimate">Estimate</button></div>
<p class="note">Filled fields are the options of <code>sizing quote</code> (or <code>sizing estimate</code>); empty
ones keep the command line's defaults.</p>
</form>
<section class="report" id="result">
{% if report %}<nav class="downloads" aria-label="downloads">{% for fmt, label in downloads %}
<a href="/download/{{ token }}.{{ fmt }}" download>{{ label }}</a>{% endfor %}</nav>
{{ report }}
{% elif estimate %}<h1>{{ title }}</h1>
{% for note in notes %}<p class="note">{{ note }}</p>{% endfor %}
{% for heading, table in estimate %}<h2>{{ heading }}</h2>
{% if table.head %}<div class="scroll"><table class="wide"><thead><tr>{% for h in table.head %}<th{% if loop.index0 in table.numeric %} class="num"{% endif %}>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in table.rows %}<tr>{% for c in row %}<td{% if loop.index0 in table.numeric %} class="num"{% endif %}>{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>
{% else %}<div class="scroll"><table class="kv"><tbody>{% for k, v in table.rows %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</tbody></table></div>{% endif %}
{% endfor %}
{% elif not error %}<p class="note">Choose a model and a job, then Quote for the hardware to buy with its cost, or
Estimate for the model's exact counts per layer (and, with a device, its roofline).</p>{% endif %}
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


def cell(v) -> str:
    """A figure as the page shows it: integers with separators, floats to 4 significant digits, shapes with x."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:.4g}"
    if isinstance(v, list):
        return " x ".join(cell(x) for x in v) if all(isinstance(x, int) for x in v) else "; ".join(map(str, v))
    return str(v)


def scalar(v) -> bool:
    return not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))


def key_values(d: dict, skip=()) -> Table:
    """The scalars of ``d`` and of its dicts one level down ('forward.macs'), as a two-column table."""
    rows = []
    for k, v in d.items():
        if k in skip:
            continue
        if isinstance(v, dict):
            rows += [(f"{k}.{k2}", cell(v2)) for k2, v2 in v.items() if scalar(v2)]
        elif scalar(v):
            rows.append((k, cell(v)))
    return Table(None, rows)


def rows_table(rows: list[dict]) -> Table:
    """A list of records as a table; the columns are the first record's scalar fields."""
    head = [k for k, v in rows[0].items() if scalar(v)]
    numeric = frozenset(i for i, k in enumerate(head) if isinstance(rows[0][k], (int, float, list))
                        and not isinstance(rows[0][k], bool))
    return Table(head, [[cell(r.get(k)) for k in head] for r in rows], numeric)


def estimate_tables(d: dict) -> list[tuple[str, Table]]:
    """The estimate's JSON (``sizing estimate --format json``) as the page's tables: totals, the layers, then the
    language model's figures, the prediction (its layers' roofline times) or the serving model."""
    out = [("Totals", key_values(d, skip=("layers", "warnings", "prediction", "inference", "language_model")))]
    found = [(title, d[key]) for key, title in (("prediction", "Prediction"), ("inference", "Serving")) if d.get(key)]
    out += [(f"{title} on {p.get('device', '')}", key_values(p, skip=("layers", "alternatives", "pruned", "assumptions")))
            for title, p in found]
    if d.get("language_model"):
        out.append(("Language model", key_values(d["language_model"])))
    if d.get("layers"):
        out.append(("Per layer", rows_table(d["layers"])))
    for _, p in found:
        if p.get("layers"):
            out.append(("Roofline per layer", rows_table(p["layers"])))
        if p.get("assumptions"):
            out.append(("Assumptions", Table(None, [(str(i + 1), str(a)) for i, a in enumerate(p["assumptions"])])))
    return out


def report_body(html: str) -> str:
    """What lies between <body> and </body> of a quote report (the page carries the report's CSS itself)."""
    return html.split("<body>", 1)[1].rsplit("</body>", 1)[0]


def render(values: dict, *, zoo: list[str], error: str | None = None, error_field: str | None = None,
           uploaded: str | None = None, report_html: str | None = None, token: str | None = None,
           estimate: dict | None = None, notes=(), lang: str = "en") -> str:
    from flask import render_template_string
    from markupsafe import Markup

    title = None
    if estimate is not None:
        title = f"Estimate: {estimate.get('model', '')}"
    elif report_html is not None:
        title = report_html.split("<title>", 1)[1].split("</title>", 1)[0]
        title = Markup(title)        # already escaped by the report's writer
    return render_template_string(
        TEMPLATE, css=Markup(REPORT_CSS + PAGE_CSS), fieldsets=FIELDSETS, values=values, zoo=zoo, error=error,
        error_field=error_field, uploaded=uploaded, title=title, lang=lang, token=token, downloads=DOWNLOADS,
        report=None if report_html is None else Markup(report_body(report_html)),
        estimate=None if estimate is None else estimate_tables(estimate), notes=notes)
