"""`sizing web`: the quote page and the quote API (stage 6, after quote).

Flask (one WSGI dependency, optional: ``pip install -e '.[web]'``) serves one server-rendered form and two JSON
endpoints. Every answer comes from the same calls the command line makes, in process: ``quote.build.build_quote``
and the quote writers for quotes, ``predict.plan.estimate_answer`` and the estimate's JSON writer for estimates;
the options are parsed by the commands' own click parsers, handed in by cli.py, so a value the command line refuses
is refused here with the same one line.
"""
from __future__ import annotations

import socket
import sys

from ..common.errors import SizingError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve(host: str, port: int, open_browser: bool, commands: dict, say=None) -> None:
    """Runs the app on ``host:port`` until interrupted (werkzeug's threaded server: enough for a local app).
    ``commands`` holds the click commands ``estimate`` and ``quote``."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        import flask  # noqa: F401
    except ImportError:
        raise SizingError("sizing web needs Flask: pip install -e '.[web]'") from None
    from werkzeug.serving import make_server

    from .app import create_app

    if host not in LOCAL_HOSTS:
        say(f"warning: --host {host}: anyone who can reach this address can use the app, and Flask's development "
            "server is for local use; keep it behind a firewall")
    try:      # bound here, so that a taken port is one line (werkzeug would print two and exit)
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.create_server((host, port), family=family)
    except OSError as e:
        raise SizingError(f"--host {host} --port {port}: cannot listen there: {e.strerror or e}") from None
    server = make_server(host, port, create_app(commands), threaded=True, fd=listening.fileno())
    url = f"http://{host if ':' not in host else f'[{host}]'}:{listening.getsockname()[1]}/"
    say(f"serving on {url} (Ctrl-C stops)")
    if open_browser:
        import webbrowser
        webbrowser.open(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        listening.close()
