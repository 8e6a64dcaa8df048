"""KServe v2's REST binding on `--http-port`, served by aiohttp on the server's event loop.

    onyx serve --http-port 8000
    curl localhost:8000/v2/health/ready
    curl localhost:8000/v2/models/pets
    curl -d '{"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"data":["so good"]}],
              "outputs":[{"name":"logits","parameters":{"classification":2}}]}' \\
         localhost:8000/v2/models/reviews/infer

Every route decodes its request into the data plane's values (`rest_tensors.py`), calls the
`DataPlane` method the gRPC binding calls, and writes the answer as JSON, so both bindings share
decoding, the pipeline, statistics and errors without a protobuf message between. A
`ServeError` answers with its HTTP status and `{"error": "..."}`:

    INVALID_ARGUMENT 400, NOT_FOUND 404, FAILED_PRECONDITION 409, RESOURCE_EXHAUSTED 429,
    UNAVAILABLE 503, DEADLINE_EXCEEDED 504, anything else 500.

Routes (Triton's and KServe's paths; `{model}` may be followed by `/versions/{version}`):
`GET /v2/health/live`, `GET /v2/health/ready` (200, or 503 while not ready), `GET /v2`,
`GET /v2/models/{model}`, `GET .../ready`, `GET .../config`, `GET .../stats` and
`GET /v2/models/stats`, `POST .../infer`, `POST /v2/repository/index`,
`POST /v2/repository/models/{model}/load` and `/unload`.
"""

# aiohttp handlers take the request whether they use it or not.
# ruff: noqa: ARG002

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from onyx.contract.errors import ServeError, code_name
from onyx.serve.config import TlsConfig
from onyx.serve.dataplane import DataPlane
from onyx.serve.frontends.admission import Admission
from onyx.serve.frontends.rest_tensors import (
    HEADER_LENGTH,
    as_json,
    infer_request,
    infer_response,
    parse_json,
)

log = logging.getLogger(__name__)

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_status(code_name: str) -> int:
    return HTTP_STATUS.get(code_name, 500)


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as `{"error": ...}` with the status of their gRPC code (or of aiohttp's own)."""
    try:
        return await handler(request)
    except ServeError as exc:
        return error_response(http_status(code_name(exc)), str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, f"internal error: {exc}")


class RestApi:
    """The routes, over one `DataPlane`."""

    def __init__(self, dataplane: DataPlane, admission: Admission | None = None) -> None:
        self._dataplane = dataplane
        # The gRPC port's front door: one in-flight bound and one deadline check for both.
        self._admission = admission if admission is not None else Admission()

    def routes(self) -> list[web.RouteDef]:
        model = "/v2/models/{model}"
        versioned = [model, model + "/versions/{version}"]
        return [
            web.get("/v2/health/live", self.live),
            web.get("/v2/health/ready", self.ready),
            web.get("/v2", self.server_metadata),
            web.get("/v2/models/stats", self.statistics),
            web.post("/v2/repository/index", self.repository_index),
            web.post("/v2/repository/models/{model}/load", self.load),
            web.post("/v2/repository/models/{model}/unload", self.unload),
            *(route for path in versioned for route in self._model_routes(path)),
        ]

    def _model_routes(self, path: str) -> list[web.RouteDef]:
        return [
            web.get(path, self.model_metadata),
            web.get(path + "/ready", self.model_ready),
            web.get(path + "/config", self.model_config),
            web.get(path + "/stats", self.statistics),
            web.post(path + "/infer", self.infer),
        ]

    async def live(self, request: web.Request) -> web.Response:
        return _ready_or_not({"live": self._dataplane.live()})

    async def ready(self, request: web.Request) -> web.Response:
        return _ready_or_not({"ready": self._dataplane.ready()})

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json(self._dataplane.server_metadata())

    async def model_metadata(self, request: web.Request) -> web.Response:
        return _json(self._dataplane.model_metadata(*_model(request)))

    async def model_ready(self, request: web.Request) -> web.Response:
        return _ready_or_not({"ready": self._dataplane.model_ready(*_model(request))})

    async def model_config(self, request: web.Request) -> web.Response:
        # Triton answers the config itself, not gRPC's {"config": ...}.
        return _json(self._dataplane.model_config(*_model(request)))

    async def statistics(self, request: web.Request) -> web.Response:
        entries = self._dataplane.statistics(*_model(request))
        return web.json_response({"model_stats": [as_json(e) for e in entries]})

    async def infer(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        body = await request.read()
        parsed = infer_request(body, request.headers.get(HEADER_LENGTH), name, version)
        self._admission.last_arrival = time.monotonic()
        with self._admission.admit(name, parsed.timeout_s):
            timeout_s = parsed.timeout_s
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            answer = await self._dataplane.infer(parsed.request, deadline)
        data, header_length = infer_response(answer, parsed.binary)
        if header_length == len(data):
            return web.Response(body=data, content_type="application/json")
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={HEADER_LENGTH: str(header_length)},
        )

    async def repository_index(self, request: web.Request) -> web.Response:
        header = parse_json(await request.read())
        entries = self._dataplane.repository_index(ready_only=bool(header.get("ready", False)))
        # Triton answers the list itself.
        return web.json_response([as_json(entry) for entry in entries])

    async def load(self, request: web.Request) -> web.Response:
        await self._dataplane.load(request.match_info["model"])
        return web.json_response({})

    async def unload(self, request: web.Request) -> web.Response:
        await self._dataplane.unload(request.match_info["model"])
        return web.json_response({})


def _model(request: web.Request) -> tuple[str, str]:
    return request.match_info.get("model", ""), request.match_info.get("version", "")


def _json(value: Any) -> web.Response:
    return web.json_response(as_json(value))


def _ready_or_not(answer: dict[str, bool]) -> web.Response:
    """200 when true, 503 when not: HTTP probes read the status, not the body."""
    return web.json_response(answer, status=200 if all(answer.values()) else 503)


def make_app(
    dataplane: DataPlane, max_body_bytes: int, admission: Admission | None = None
) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes, middlewares=[answer_errors])
    app.add_routes(RestApi(dataplane, admission).routes())
    return app


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """The gRPC port's certificate (and client CA: mutual TLS) for HTTPS too."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca is not None:
        context.load_verify_locations(tls.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class RestServer:
    """The REST binding listening on one port, on the running event loop."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port

    @classmethod
    async def start(
        cls,
        dataplane: DataPlane,
        host: str,
        port: int,
        max_body_bytes: int,
        tls: TlsConfig | None = None,
        grace_s: float = 10.0,
        admission: Admission | None = None,
        reuse_port: bool = False,
    ) -> RestServer:
        """Listen on `host`:`port` (0: any free port; "[::]": every interface); on `stop`,
        in-flight requests get `grace_s` to finish."""
        runner = web.AppRunner(
            make_app(dataplane, max_body_bytes, admission),
            access_log=None,
            shutdown_timeout=grace_s,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            host.strip("[]") or None,
            port,
            ssl_context=ssl_context(tls) if tls is not None else None,
            reuse_port=reuse_port or None,  # None: aiohttp's default (off)
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return cls(runner, int(runner.addresses[0][1]))

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish, then close."""
        await self._runner.cleanup()
