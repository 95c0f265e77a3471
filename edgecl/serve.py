"""`edgecl serve`: a resident HTTP service over one state (FastAPI + uvicorn), for apps, NVRs and cameras.

Endpoints (docs/serving.md): KServe v2 health, `POST /v1/classify` (classify --json), the DeepStack / CodeProject.AI
shape `POST /v1/vision/custom/{model}` that Frigate, Blue Iris and Home Assistant speak, `POST /v1/learn`,
`GET /v1/status`, `DELETE /v1/classes/{name}` and Prometheus `GET /metrics`. Every answer comes from one loaded
snapshot (edgecl.api.State); a commit by another process is served within a second; uploads are read into a
temporary folder under names the server makes and removed after the request (embeddings only are kept).
"""

from __future__ import annotations

import hmac
import ipaddress
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgecl.errors import EdgeclError, UnknownClassError
from edgecl.units import format_bytes

DEFAULT_PORT = 8130
DEFAULT_MAX_UPLOAD = "20MB"
RELOAD_POLL_S = 1.0  # the watcher's look at the state pointer (a CLI commit is served within this plus a load)
SHUTDOWN_GRACE_S = 8  # SIGTERM: in-flight requests get this long, then the process ends (under 10 s)


def check_bind(host: str, token: str | None) -> None:
    """A non-loopback address without a token is refused (one line): anyone on the network could teach it."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token:
        raise EdgeclError(f"--host {host} is reachable from the network: pass --token T (or set EDGECL_TOKEN) so "
                          "that every request needs `Authorization: Bearer T`, or bind 127.0.0.1")  # fmt: skip


class Metrics:
    """Request counts and latency sums per route, learns, for GET /metrics (Prometheus text format)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.seconds: dict[str, float] = {}
        self.learns = 0

    def record(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
            self.seconds[route] = self.seconds.get(route, 0.0) + seconds

    def learned(self) -> None:
        with self._lock:
            self.learns += 1

    def text(self, snapshot: str | None) -> str:
        with self._lock:
            lines = ["# TYPE edgecl_requests_total counter"]
            lines += [f'edgecl_requests_total{{route="{r}",status="{s}"}} {n}'
                      for (r, s), n in sorted(self.requests.items())]
            lines += ["# TYPE edgecl_request_seconds_total counter"]
            lines += [f'edgecl_request_seconds_total{{route="{r}"}} {v:.6f}' for r, v in sorted(self.seconds.items())]
            lines += ["# TYPE edgecl_learns_total counter", f"edgecl_learns_total {self.learns}",
                      "# TYPE edgecl_snapshot_loaded gauge",
                      f"edgecl_snapshot_loaded {int(snapshot is not None)}"]  # fmt: skip
        return "\n".join(lines) + "\n"


class UploadLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 before it is read whole (by its
    Content-Length, or by counting a chunked body as it arrives)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(send, self.limit)
        body, size, more = [], 0, True  # read and count the body (chunked too) before the app sees it
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            body.append(message.get("body", b""))
            size, more = size + len(body[-1]), message.get("more_body", False)
            if size > self.limit:
                return await _too_large(send, self.limit)
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(body), "more_body": False}]), send)


def _replay(messages: list[dict]) -> Callable[[], Awaitable[dict]]:
    """An ASGI receive that gives `messages`, then waits as for a client that sent everything."""
    pending = list(messages)

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        import asyncio

        await asyncio.Event().wait()  # never set: like a client that has nothing more to send
        return {"type": "http.disconnect"}

    return receive


async def _too_large(send: Callable, limit: int) -> None:
    import json

    body = json.dumps({"success": False, "error": f"upload larger than --max-upload ({format_bytes(limit)})"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(state: Any, token: str | None = None, max_upload_bytes: int = 20_000_000) -> Any:
    """The FastAPI application over an edgecl.api.State."""
    app = FastAPI(title="edgecl", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics()
    _add_guard(app, token, metrics)
    _add_error_handlers(app)
    _add_answer_routes(app, state)
    _add_state_routes(app, state, metrics)
    return UploadLimit(app, max_upload_bytes)


def _add_guard(app: FastAPI, token: str | None, metrics: Metrics) -> None:
    """Every request: the bearer token when one is set, then its route, status and time in the metrics."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable) -> Any:
        start = time.perf_counter()
        if token and not _authorised(request.headers.get("authorization", ""), token):
            response = JSONResponse({"success": False, "error": "missing or wrong `Authorization: Bearer <token>`"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        metrics.record(getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - start)
        return response


def _add_error_handlers(app: FastAPI) -> None:
    """Errors as `{"success": false, "error": "..."}`: edgecl's and bad requests as 400s (a class that is not learned
    a 404), HTTP errors as theirs."""

    @app.exception_handler(EdgeclError)
    async def edgecl_error(request: Request, exc: EdgeclError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownClassError) else 400
        return JSONResponse({"success": False, "error": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return JSONResponse({"success": False, "error": f"{where or 'request'}: {first.get('msg', 'invalid')}"},
                            status_code=400)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"success": False, "error": str(exc.detail)}, status_code=exc.status_code)


def _add_answer_routes(app: FastAPI, state: Any) -> None:
    """Health, classify and the DeepStack / CodeProject.AI shape."""

    @app.get("/v2/health/live")
    def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready() -> JSONResponse:
        return JSONResponse({"ready": state.ready, "snapshot": state.snapshot}, status_code=200 if state.ready else 503)

    @app.post("/v1/classify")
    def classify(image: list[UploadFile] = File(...), top_k: int = Form(5), labels: str = Form(""),
                 min_confidence: float | None = Form(None)) -> Any:  # fmt: skip
        return _answers(state, image, top_k, labels, min_confidence)

    @app.post("/v1/vision/custom/{model}")
    def deepstack(model: str, image: list[UploadFile] = File(...), top_k: int = Form(5), labels: str = Form(""),
                  min_confidence: float | None = Form(None)) -> Any:  # fmt: skip
        try:
            (answer,), ((width, height),) = _classified(state, image[:1], top_k, labels, min_confidence, sizes=True)
        except EdgeclError as exc:
            return JSONResponse({"success": False, "error": str(exc)}, status_code=400)
        threshold = state.min_confidence if min_confidence is None else min_confidence
        box = {"x_min": 0, "y_min": 0, "x_max": width, "y_max": height}  # a class is an answer about the whole image
        predictions = [{"label": p["label"], "confidence": p["probability"], **box} for p in answer["predictions"]
                       if not answer["unknown"] and p["probability"] >= threshold]  # DeepStack: only those above it
        return {"success": True, "label": answer["label"], "confidence": answer["confidence"],
                "unknown": answer["unknown"], "predictions": predictions, "model": model}  # fmt: skip


def _add_state_routes(app: FastAPI, state: Any, metrics: Metrics) -> None:
    """Learn, status, forget and the Prometheus metrics."""

    @app.post("/v1/learn")
    def learn(image: list[UploadFile] = File(...), label: list[str] = Form(...),
              domain: str | None = Form(None)) -> Any:  # fmt: skip
        uploads = _uploaded(image, _class_folders(label, len(image)))  # the task folder's class folders
        with uploads as paths:
            named = _client_names(uploads.folder, paths, image)
            try:
                report = state.learn(Path(uploads.folder), domain=domain or None,
                                     source=f"an upload of {len(image)} images (POST /v1/learn)").to_json()
            except EdgeclError as exc:
                raise EdgeclError(named(str(exc))) from None
        metrics.learned()
        return report | {"skipped": [{**item, "path": named(item["path"])} for item in report["skipped"]]}

    @app.get("/v1/status")
    def status() -> Any:
        return state.status().to_json()

    @app.delete("/v1/classes/{name}")
    def forget(name: str) -> Any:
        return state.forget(name)

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.text(state.snapshot))


def _class_folders(labels: list[str], images: int) -> list[str]:
    """Each upload's class folder: one `label` for every image, or one per image in the order sent."""
    from edgecl.api import label_folders

    if len(labels) not in (1, images):
        raise EdgeclError(f"{len(labels)} `label` fields for {images} images: send one `label` for all the images, "
                          "or one per image in the same order")  # fmt: skip
    return label_folders(labels * images if len(labels) == 1 else labels)


def _authorised(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _answers(state: Any, files: list[Any], top_k: int, labels: str, min_confidence: float | None) -> list[dict]:
    """classify --json's list for uploaded files, `image` being each upload's file name; an unreadable upload is a
    400 naming it."""
    return _classified(state, files, top_k, labels, min_confidence)[0]


def _classified(state: Any, files: list[Any], top_k: int, labels: str, min_confidence: float | None,
                sizes: bool = False) -> tuple[list[dict], list[tuple[int, int]]]:  # fmt: skip
    """_answers, and with `sizes` each image's (width, height) as it is upright (EXIF orientation applied; only the
    DeepStack route needs them, so a plain classify does not open its images twice)."""
    names = [f.filename or f"image {i}" for i, f in enumerate(files)]
    with _uploaded(files) as paths:
        results, skipped = state.classify_files(paths, top_k, labels.split(","), min_confidence, names)
        if skipped:
            raise EdgeclError(f"{skipped[0]['path']}: {skipped[0]['reason']}")
        return results, [_upright_size(path) for path in paths] if sizes else []


def _upright_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap the axes
    return (height, width) if turned else (width, height)


def _client_names(folder: str, paths: list[Path], files: list[Any]) -> Callable[[str], str]:
    """A text with the server's names for the uploads (temporary paths) put back as the client's file names, and
    the temporary folder as "the upload"."""
    from edgecl.paths import display

    names = {display(p): f.filename or f"image {i}" for i, (p, f) in enumerate(zip(paths, files, strict=True))}

    def named(text: str) -> str:
        for path, name in names.items():
            text = text.replace(path, name)
        return text.replace(display(folder), "the upload")

    return named


class _uploaded:  # noqa: N801 - a context manager
    """Uploaded files written to a temporary folder (each in its sub-folder of `under`, e.g. the class folder it is
    learned as) under names made here (never the client's), removed after."""

    def __init__(self, files: list[Any], under: list[str] | None = None) -> None:
        self.files, self.under = files, under or [""] * len(files)
        self.folder = ""

    def __enter__(self) -> list[Path]:
        from edgecl.api import image_suffix

        if not self.files:
            raise EdgeclError("no `image` file in the request")
        self.folder = tempfile.mkdtemp(prefix="edgecl-upload-")
        paths = []
        try:
            for i, (upload, under) in enumerate(zip(self.files, self.under, strict=True)):
                (Path(self.folder) / under).mkdir(exist_ok=True)
                raw = Path(self.folder) / under / f"{i}.upload"
                with raw.open("wb") as out:
                    shutil.copyfileobj(upload.file, out)
                paths.append(raw.rename(raw.with_suffix(image_suffix(raw, upload.filename or ""))))
        except OSError as exc:
            self.__exit__()
            raise EdgeclError(f"could not store the upload ({exc}); check the server's free disk space") from None
        return paths

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def watch(state: Any, stop: threading.Event) -> threading.Thread:
    """A daemon thread that reloads the state when another process commits (so the first request after a CLI
    learn does not pay for the load)."""

    def loop() -> None:
        while not stop.wait(RELOAD_POLL_S):
            try:
                state.reload()
            except Exception:  # noqa: BLE001, S110 - a damaged pointer is reported by the next request; keep serving
                pass

    thread = threading.Thread(target=loop, name="edgecl-reload", daemon=True)
    thread.start()
    return thread


def run(state_dir: str | None, host: str, port: int, token: str | None, max_upload_bytes: int,
        on_started: Callable[[str, Any], None]) -> None:  # fmt: skip
    """Serve the state at `state_dir` until SIGTERM / SIGINT (in-flight requests get SHUTDOWN_GRACE_S); a refused
    bind fails before the state is loaded. `on_started(address, state)` once the socket listens."""
    import uvicorn

    from edgecl.api import State

    check_bind(host, token)
    state = State(state_dir)
    stop = threading.Event()
    watch(state, stop)
    config = uvicorn.Config(create_app(state, token, max_upload_bytes), host=host, port=port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_S, lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    original = server.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets)
        bound = server.servers[0].sockets[0].getsockname() if server.servers else (host, port)
        on_started(f"http://{bound[0]}:{bound[1]}", state)

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        stop.set()
