"""The WSGI app of the load benchmark: the service as `create_app()` builds it, plus a bare
Flask endpoint returning fixed TwiML, on the same gunicorn server.

    gunicorn --pythonpath scripts 'bench_bare:create_bench_app()'

`POST /bench/bare` is a separate Flask app mounted beside the service (werkzeug's
`DispatcherMiddleware`), so it shares the server, the process and the interpreter but none
of the service's work: no signature check, no database, no logging, no metrics. The ratio
of an IVR step to it is what the service's own work costs on this machine.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from callcenter.app import create_app

BARE_PATH = "/bench/bare"
# About the size of a real main-menu reply.
BARE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Gather action="https://hotline.example/webhooks/voice/step/main_menu?t=1" '
    'input="dtmf speech" language="ru-RU" numDigits="1" timeout="5">'
    '<Say language="ru-RU" voice="Polly.Tatyana">Если у вас вопрос или нужна консультация, '
    "нажмите 1. Если у вас новая проблема, нажмите 2. Критический сбой сервера — 3. "
    "Угон транспортного средства — 4. Статус заявки — 5. Специалист — 0.</Say></Gather>"
    '<Redirect method="POST">https://hotline.example/webhooks/voice/step/main_menu?t=1'
    "</Redirect></Response>"
)


def bare_app() -> Flask:
    bare = Flask("bench_bare")

    @bare.post("/bare")
    def fixed_twiml() -> Response:
        return Response(BARE_TWIML, content_type="text/xml; charset=utf-8")

    return bare


def create_bench_app() -> Any:
    """`create_app()` from the environment, with `/bench/bare` beside it."""
    app = create_app()
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/bench": bare_app()}
    )
    return app
