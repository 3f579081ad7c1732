"""The FastAPI app: POST /v1/{run}/{ability} per served run, GET /health, GET /metrics, OpenAPI docs at /docs.

FastAPI (on Starlette, served by uvicorn) because it gives request
validation, OpenAPI docs and streaming responses from the same type hints
the routes already carry, and uvicorn drains in-flight requests on SIGTERM.
Every refusal is JSON `{"error": "..."}` with a 4xx status.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException

from seqtrain.errors import SeqtrainError, first_line
from seqtrain.generation import gathered
from seqtrain.inference import Trained, load_trained
from seqtrain.serving.abilities import ABILITIES, BadRequest, GenerateRequest, Limits, check_generate
from seqtrain.serving.batching import Batcher
from seqtrain.serving.metrics import Metrics

#: a streamed generation sends what it has sampled at most this often
STREAM_SECONDS = 0.05
#: the environment variable that hands the settings to each worker process (--workers)
SETTINGS_ENV = "SEQTRAIN_SERVE_SETTINGS"


@dataclass
class ServeSettings:
    runs: dict[str, str]  # route name -> checkpoint path
    max_batch: int = 32
    max_wait_ms: float = 5.0
    token: str | None = None
    threads: int = 1
    limits: Limits = field(default_factory=Limits)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


#: paths counted under their own name in the metrics; any other is "other", so no client can grow the label set
OPEN_PATHS = ("/health", "/metrics", "/docs", "/openapi.json")


def metric_route(path: str) -> str:
    if path in OPEN_PATHS:
        return path
    ability = path.rsplit("/", 1)[-1]
    if path.startswith("/v1/") and (ability in ABILITIES or ability == "generate"):
        return "/v1/{run}/" + ability
    return "other"


class Guard:
    """ASGI middleware: bearer auth, the body-size bound, and each request's latency and status in the metrics."""

    def __init__(self, app, settings: ServeSettings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        path = scope["path"]
        route = metric_route(path)

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.metrics.request(route, status[0], time.perf_counter() - start)

        token = self.settings.token
        if token and (path.startswith("/v1/") or path == "/metrics"):
            headers = dict(scope["headers"])
            if headers.get(b"authorization", b"").decode("latin-1") != f"Bearer {token}":
                return await error(401, "missing or wrong bearer token: send 'Authorization: Bearer TOKEN'")(scope, receive, send_and_record)
        limit = self.settings.limits.max_body_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await error(413, f"request body of {int(length)} bytes; the limit is {limit}")(scope, receive, send_and_record)
        received = [0]

        async def bounded_receive():
            message = await receive()
            received[0] += len(message.get("body", b""))
            if received[0] > limit:
                raise BadRequest(f"request body over {limit} bytes", 413)
            return message

        try:
            await self.app(scope, bounded_receive, send_and_record)
        except BadRequest as exc:
            await error(exc.status, str(exc))(scope, receive, send_and_record)


def build_app(settings: ServeSettings, trained: dict[str, Trained] | None = None) -> Guard:
    """The ASGI app for `settings.runs` (loaded here unless given as `trained`): FastAPI inside the Guard."""
    import torch

    torch.set_num_threads(settings.threads)
    runs = trained or {name: load_trained(Path(path), "cpu") for name, path in settings.runs.items()}
    metrics = Metrics()
    app = FastAPI(title="seqtrain", version="1", description="Trained seqtrain runs: one route per run and ability.")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")  # one model call at a time: the cores are the limit
    limits = settings.limits

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return error(422, describe_invalid(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if isinstance(exc.__cause__, BadRequest):  # raised while the body was read (the size bound): its own message
            return error(exc.__cause__.status, str(exc.__cause__))
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        return error(exc.status, str(exc))

    @app.exception_handler(SeqtrainError)
    async def refused(request: Request, exc: SeqtrainError):
        return error(400, first_line(exc))

    @app.get("/health", summary="Liveness, and the runs served with their abilities.")
    async def health():
        return {"status": "ok", "runs": {name: t.task.ability for name, t in runs.items()}}

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus text: requests, errors, latencies, batch sizes.")
    async def prometheus():
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    for name, run in runs.items():
        ability = run.task.ability
        if ability == "generate":
            add_generate(app, name, run, limits)
        elif ability in ABILITIES:
            batcher = Batcher(
                lambda items, key, run=run, spec=ABILITIES[ability]: without_autograd(spec.run, run, items, key),
                settings.max_batch, settings.max_wait_ms / 1000, lambda size, name=name: metrics.batch(name, size), executor,
            )
            add_batched(app, name, run, ability, batcher, limits)

    @app.post("/v1/{run}/{action}", include_in_schema=False)
    async def unknown(run: str, action: str):
        if run not in runs:
            raise BadRequest(f"no run '{run}' is served here; served: {', '.join(runs)}", 404)
        own = runs[run].task.ability
        raise BadRequest(f"run '{run}' does {own}, not {action}: POST /v1/{run}/{own}", 404)

    return Guard(app, settings, metrics)


def without_autograd(fn, *args):
    """fn(*args) under torch.inference_mode: no autograd records, and the recurrent layers' buffers are then
    allocated per call and freed after it rather than kept in their reuse pool (models/fused.py's Workspace), which
    for the many sizes of served batches held memory that kept growing (scripts/bench_serve.py --memory-minutes)."""
    import torch

    with torch.inference_mode():
        return fn(*args)


def describe_invalid(errors: list[dict]) -> str:
    """One line for pydantic's validation errors: malformed JSON, a body that is not an object, or the fields at fault."""
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"malformed JSON at character {first['loc'][-1]}: {first.get('ctx', {}).get('error', first['msg'])}"
    if tuple(first["loc"]) == ("body",):
        return "the body must be a JSON object, sent with 'Content-Type: application/json'"
    return "invalid request: " + "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors[:3])


def add_batched(app: FastAPI, name: str, run: Trained, ability: str, batcher: Batcher, limits: Limits) -> None:
    spec = ABILITIES[ability]

    async def handle(body):
        items, key = spec.inputs(run, body, limits)
        # a JSONResponse as is: FastAPI would otherwise walk the answer through jsonable_encoder first
        return JSONResponse(spec.respond(await batcher.submit(items, key)))

    handle.__annotations__["body"] = spec.request  # the ability's own request model, for validation and the docs

    app.post(f"/v1/{name}/{ability}", summary=spec.summary, name=f"{name} {ability}")(handle)


def add_generate(app: FastAPI, name: str, run: Trained, limits: Limits) -> None:
    async def handle(body: GenerateRequest):
        check_generate(run, body, limits)
        pieces = run.task.generate(run.model, body.prime, body.length, body.temperature, body.top_k, body.seed)
        first = next(pieces)  # checks the prime and the sampling settings before the stream starts (a 4xx, not a broken stream)
        return StreamingResponse(gathered(iter_with(first, pieces), STREAM_SECONDS), media_type="text/plain; charset=utf-8")

    app.post(f"/v1/{name}/generate", summary="Sample text, streamed as it is produced (text/plain chunks).",
             name=f"{name} generate")(handle)


def iter_with(first, rest):
    yield first
    yield from rest


def from_environment():
    """The app of each worker process (uvicorn --workers), from the settings the command put in the environment."""
    raw = json.loads(os.environ[SETTINGS_ENV])
    return build_app(ServeSettings(**{**raw, "limits": Limits(**raw["limits"])}))


def settings_to_environment(settings: ServeSettings) -> None:
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
