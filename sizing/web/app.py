"""The Flask app: the page (GET or POST /), the API (POST /api/quote, /api/estimate), downloads of a computed quote
(GET /download/<token>.<fmt>), and error handlers that answer every failure with one line, never a traceback."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import replace

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from ..common.errors import SizingError
from ..common.yamlsafe import MAX_FILE_BYTES
from . import options as opt
from .page import FIELDS, SERVING, render

ANSWER_TIMEOUT_S = 120         # a quote or estimate past this is refused (each takes seconds)
CACHED = 64                    # answers kept, for downloads and repeated questions
MEDIA = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8",
         "json": "application/json", "csv": "text/csv; charset=utf-8"}


class Memo:
    """Answers by request key: one computation per key at a time (concurrent identical requests wait for the
    first), at most ``slots`` computations at once (the rest queue), the last ``size`` answers kept. A quote's
    JSON and HTML reports are kept under its token + '.json' / '.html', written once for all its requests."""

    def __init__(self, size: int, slots: int):
        self.size, self.lock, self.slots = size, threading.Lock(), threading.BoundedSemaphore(slots)
        self.done: OrderedDict = OrderedDict()
        self.running: dict = {}

    def get(self, key: str, make):
        with self.lock:
            if key in self.done:
                self.done.move_to_end(key)
                return self.done[key]
            cell = self.running.get(key)
            owner = cell is None
            if owner:
                cell = self.running[key] = {"event": threading.Event()}
        if owner:
            try:
                with self.slots:
                    cell["value"] = make()
            except Exception as e:        # noqa: BLE001 - handed to every waiter, raised there
                cell["error"] = e
            finally:
                with self.lock:
                    del self.running[key]
                    if "value" in cell:
                        self.done[key] = cell["value"]
                        while len(self.done) > self.size:
                            self.done.popitem(last=False)
                cell["event"].set()
        cell["event"].wait()
        if "value" not in cell:
            raise cell.get("error") or RuntimeError("the computation was interrupted")
        return cell["value"]

    def peek(self, key: str):
        with self.lock:
            return self.done.get(key)


def _token(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _scrub(message: str, folder: str) -> str:
    """A message without the private folder's path (the user knows the file by its name)."""
    return message.replace(folder + os.sep, "").replace(folder, ".")


class Sizer:
    """The two questions, answered through the commands' own parsers and the same library calls as the CLI."""

    def __init__(self, commands: dict):
        self.commands = commands
        self.options = {k: opt.long_options(commands[k], k) for k in ("quote", "estimate")}
        self.memo = Memo(CACHED, max(1, os.cpu_count() or 1))

    def quote(self, values: dict, folder: str, model=None, upload=None):
        """(token, Quote, lang) for the quote options ``values``; SizingError for every refusal."""
        from ..predict.workload import parse_count
        from ..quote.build import build_quote
        from ..quote.core import MAX_DEVICES

        spec, shown, digest = opt.model_file(folder, model, upload)
        args = opt.arguments(values, self.options["quote"])
        params = opt.parse(self.commands["quote"], "quote", spec, args)
        for k in ("spec", "output", "force", "fmt"):
            params.pop(k, None)
        lang = params.pop("lang")
        if lang not in ("en", "ko"):
            raise SizingError(f"--lang: '{lang}' is not one of en, ko")
        most = parse_count("--max-devices", params.get("max_devices"))
        if most is not None and most > MAX_DEVICES:
            raise SizingError(f"--max-devices: {most:,} is past the {MAX_DEVICES:,} devices the search covers "
                              f"(the command line's default); give at most {MAX_DEVICES}")
        today = datetime.date.today().isoformat()
        token = _token("quote", digest, tuple(sorted(args)), today)

        def make():
            quote = build_quote(spec, progress=None, **params)
            return replace(quote, source=shown), lang
        quote, lang = self.memo.get(token, lambda: bounded(make))
        return token, quote, lang

    def estimate(self, values: dict, folder: str, model=None, upload=None) -> tuple[str, list[str]]:
        """(the JSON `sizing estimate --format json` prints, its warnings and notes) for ``values``, parsed by the
        command's parser and answered by the same library call (``predict.plan.estimate_answer``)."""
        from ..model.report import WRITERS
        from ..predict.plan import estimate_answer, load_estimate

        spec, _, digest = opt.model_file(folder, model, upload)
        args = opt.arguments(values, self.options["estimate"])
        params = opt.parse(self.commands["estimate"], "estimate", spec, args)
        for k in ("spec", "fmt", "then_check", "emit_yaml", "force", "wide"):
            params.pop(k, None)
        if params.get("device") == "local":
            _local_profile()

        def make():
            said: list[str] = []
            loaded = load_estimate(spec, **params)
            answer = estimate_answer(spec, loaded, say=said.append, **params)
            notes = [f"warning: {w}" for w in loaded[0].graph.warnings] + said
            return (_scrub(WRITERS["json"](answer.report).rstrip("\n") + "\n", folder),
                    [_scrub(" ".join(x.split()), folder) for x in notes])
        return self.memo.get(_token("estimate", digest, tuple(sorted(args))), lambda: bounded(make))


def _local_profile() -> None:
    """``--device local`` over the web reads this machine's saved bench profile; where there is none (or it is
    stale) the command line would measure the machine for minutes: refused here instead."""
    from ..hardware.bench.measure import this_machine
    from ..hardware.bench.profile import check_profile
    from ..hardware.devices import local_profile_path

    path = local_profile_path()
    device, problem = check_profile(path, this_machine())
    if device is None:
        raise SizingError(f"--device local: {problem or 'no bench profile of this machine yet'}; run `sizing bench` "
                          f"on the command line first (the web app does not measure the machine)")


def bounded(make, seconds: float | None = None):
    """``make()`` in a worker thread, refused with one line when it runs past ``seconds`` (Python cannot stop a
    thread: it is left to finish, its answer dropped). The command line's own limits keep every answer to seconds;
    this is the web's backstop."""
    seconds = ANSWER_TIMEOUT_S if seconds is None else seconds
    box: dict = {}

    def run():
        try:
            box["value"] = make()
        except BaseException as e:            # noqa: BLE001 - raised in the request's thread below
            box["error"] = e
    worker = threading.Thread(target=run, name="sizing-answer", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise SizingError(f"the answer took longer than {seconds:g} s and was given up; ask for less (fewer "
                          f"--devices or --max-devices, fewer --candidates, a shorter --seq-len)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _one_line(e: Exception, folder: str | None = None) -> str:
    text = str(e) if isinstance(e, SizingError) else f"internal error: {type(e).__name__}: {e} (please report it)"
    text = " ".join(text.split())
    return _scrub(text, folder) if folder else text


def _field_of(message: str, view: str) -> str | None:
    """The form field a message is about: the first --option it names that the form has, its leading key, or the
    view's device field for an unknown device."""
    for name in re.findall(r"--([a-z][a-z-]*)", message):
        if name in FIELDS:
            return name
    lead = message.split(":", 1)[0]
    if lead in FIELDS:
        return lead
    return ("device" if view == "estimate" else "candidates") if message.startswith("unknown device") else None


def create_app(commands: dict) -> Flask:
    """The app for the click commands ``commands['estimate']`` and ``commands['quote']`` (cli.py hands them in)."""
    from ..model.estimate import zoo_names

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_FILE_BYTES
    sizer = Sizer(commands)
    app.extensions["sizing"] = sizer
    zoo = zoo_names()

    @app.route("/", methods=["GET", "POST"])
    def page():
        values = {k: v for k, v in request.values.items() if k != "view"}
        view = request.values.get("view", "quote")
        upload = request.files.get("upload")
        upload = (upload.filename, upload.read(MAX_FILE_BYTES + 1)) if upload and upload.filename else None
        shown = {k: v for k, v in values.items() if k in FIELDS}
        lang = values.get("lang") if values.get("lang") in ("en", "ko") else "en"
        if set(values) <= {"lang"} and upload is None:          # the blank form (in the language asked for)
            return render(shown, zoo=zoo, lang=lang)
        with tempfile.TemporaryDirectory(prefix="sizing-web-") as folder:
            try:
                unknown = sorted(set(values) - set(FIELDS))
                if unknown:
                    raise SizingError(f"unknown field '{unknown[0]}'; the form's fields: {', '.join(FIELDS)}")
                if view not in ("quote", "estimate"):
                    raise SizingError(f"view: '{view}' is not one of quote, estimate")
                given = {k: v for k, v in values.items() if v.strip() and k != "model"}
                known = sizer.options[view]
                given = {k: v for k, v in given.items() if k in known}
                if view == "estimate" and any(k in given for k in SERVING):
                    given["inference"] = True
                model = values.get("model")
                if view == "quote":
                    token, quote, lang = sizer.quote(given, folder, model, upload)
                    from ..quote.writers import quote_html
                    report = sizer.memo.get(token + ".html", lambda: quote_html(quote, lang))     # written once
                    return render(shown, zoo=zoo, uploaded=upload and upload[0], token=token, lang=lang,
                                  report_html=report)
                text, notes = sizer.estimate(given, folder, model, upload)
                return render(shown, zoo=zoo, uploaded=upload and upload[0], estimate=json.loads(text), notes=notes,
                              lang=lang)
            except SizingError as e:
                message = _one_line(e, folder)
                return render(shown, zoo=zoo, error=message, error_field=_field_of(message, view),
                              uploaded=upload and upload[0], lang=lang), 400

    def _body() -> dict:
        try:
            body = json.loads(request.get_data(cache=False) or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise SizingError(f"the body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise SizingError('the body must be a JSON object of options, e.g. {"model": "resnet50", ...}')
        return body

    def _api(kind: str):
        with tempfile.TemporaryDirectory(prefix="sizing-web-") as folder:
            try:
                body = _body()
                model = body.pop("model", None)
                if kind == "quote":
                    token, quote, lang = sizer.quote(body, folder, model)
                    from ..quote.writers import quote_json
                    text = sizer.memo.get(token + ".json", lambda: quote_json(quote, lang))   # written once
                else:
                    text, _ = sizer.estimate(body, folder, model)
            except SizingError as e:
                return _error(400, _one_line(e, folder))
        return Response(text, mimetype="application/json")

    @app.post("/api/quote")
    def api_quote():
        return _api("quote")

    @app.post("/api/estimate")
    def api_estimate():
        return _api("estimate")

    @app.get("/download/<token>.<fmt>")
    def download(token, fmt):
        from ..quote.writers import WRITERS

        if fmt not in MEDIA:
            return _error(404, f"no download as '{fmt}'; give one of {', '.join(MEDIA)}")
        cached = sizer.memo.peek(token)
        if cached is None or not isinstance(cached, tuple) or not hasattr(cached[0], "pick"):
            return _error(404, "this quote is no longer kept; submit the form again")
        quote, lang = cached
        return Response(WRITERS[fmt](quote, lang), content_type=MEDIA[fmt],
                        headers={"Content-Disposition": f'attachment; filename="quote.{fmt}"'})

    def _error(code: int, message: str):
        if request.path.startswith("/api/"):
            return Response(json.dumps({"error": message}), status=code, mimetype="application/json")
        return render({}, zoo=zoo, error=message), code

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if e.code == 404:
            message = f"no page {request.path}; the app serves /, /api/quote and /api/estimate"
        elif e.code == 405:
            message = f"{request.method} {request.path} is not allowed; use {', '.join(m for m in e.valid_methods or ['GET'] if m not in ('HEAD', 'OPTIONS'))}"
        elif e.code == 413:
            message = f"the request is over {MAX_FILE_BYTES} bytes, the limit for a spec and for a body"
        else:
            message = f"{e.code} {e.name}"
        return _error(e.code or 500, message)

    @app.errorhandler(Exception)
    def internal_error(e: Exception):
        return _error(500, _one_line(e))

    return app
