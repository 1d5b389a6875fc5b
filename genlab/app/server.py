"""The HTTP side of `genlab app`: routes, upload limits, the temporary folder, and ``serve``.

FastAPI serves one page of our own (``static/``: plain HTML, CSS and JavaScript, no asset from the network) and
a JSON API under ``/api``. Work that touches a model runs in worker threads (``run_in_threadpool`` for the quick
requests, ``jobs.Jobs`` with progress for the slow ones), never on the event loop.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from genlab.api import load
from genlab.app import views
from genlab.app.jobs import Jobs, error_message
from genlab.errors import InputError, UserError
from genlab.ood.images import ImageReadError
from genlab.reports.compare import run_label

STATIC = Path(__file__).resolve().parent / "static"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_JSON_BYTES = 1 << 20  # a request's JSON body (a latent code, settings)
KEEP_UPLOADS = 100  # the newest uploads stay usable; older ones are deleted


class TooLarge(InputError):
    """A request body over its limit."""


class Uploads:
    """Uploaded files, kept only in the app's temporary folder under names of our own (never the user's)."""

    def __init__(self, folder: Path, keep: int = KEEP_UPLOADS):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._names: OrderedDict[str, str] = OrderedDict()  # token -> the name the user gave, for messages
        self._lock = threading.Lock()
        self._keep = keep

    def add(self, data: bytes, name: str) -> tuple[str, Path]:
        token = uuid.uuid4().hex
        path = self.folder / token
        path.write_bytes(data)
        with self._lock:
            self._names[token] = name
            while len(self._names) > self._keep:
                old, _ = self._names.popitem(last=False)
                (self.folder / old).unlink(missing_ok=True)
        return token, path

    def drop(self, token: str) -> None:
        with self._lock:
            self._names.pop(token, None)
        (self.folder / token).unlink(missing_ok=True)

    def path(self, token) -> Path:
        with self._lock:
            known = isinstance(token, str) and re.fullmatch(r"[0-9a-f]{32}", token) and token in self._names
        if not known:
            raise InputError("that upload is no longer on the server: upload the image again")
        return self.folder / token

    def name(self, token: str) -> str:
        with self._lock:
            return self._names.get(token, "upload")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (without reading the rest) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the file is {int(declared):,} bytes, over the app's limit of {limit:,} "
                       "(start it with a larger --max-upload-mb, or shrink the image)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the file is over the app's limit of {limit:,} bytes "
                           "(start it with a larger --max-upload-mb, or shrink the image)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> dict:
    body = await read_body(request, MAX_JSON_BYTES)
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise InputError("the request is not valid JSON") from None
    if not isinstance(data, dict):
        raise InputError("the request must be a JSON object")
    return data


def _error(err: BaseException) -> JSONResponse:
    status = 413 if isinstance(err, TooLarge) else 400 if isinstance(err, (UserError, OSError, ValueError)) else 500
    return JSONResponse({"error": error_message(err)}, status_code=status)


def create_app(runs: list[views.AppRun], work_dir: Path, max_upload_bytes: int, data_root: str | None = None,
               workers: int = 2) -> FastAPI:
    """The app for these loaded runs; uploads and figures go under ``work_dir`` (a temporary folder)."""
    app = FastAPI(title="genlab app", docs_url=None, redoc_url=None, openapi_url=None)  # no CDN-served docs
    jobs = Jobs(workers)
    uploads = Uploads(work_dir / "uploads")
    by_key = {ar.key: ar for ar in runs}
    compare_cache: dict[str, str] = {}
    app.state.jobs, app.state.uploads = jobs, uploads
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def run_of(key: str) -> views.AppRun:
        if key not in by_key:
            raise InputError(f"no run {key!r} in this app")
        return by_key[key]

    async def call(fn, *args) -> Response:
        """Run ``fn`` on a worker thread; its dict becomes JSON, its errors a message for the page."""
        try:
            result = await run_in_threadpool(fn, *args)
        except Exception as err:  # the page shows the message; the server keeps serving
            return _error(err)
        return result if isinstance(result, Response) else JSONResponse(result)

    def source_image(ar, source):
        return views.image_of(ar, source or {}, uploads.path)

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/runs")
    async def list_runs():
        return await call(lambda: {"runs": [views.run_info(ar) for ar in runs]})

    @app.get("/api/jobs/{job_id}")
    async def job_status(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "no such request (the app keeps its latest ones only)"}, status_code=404)
        return JSONResponse(job.status())

    @app.get("/api/jobs/{job_id}/grid.png")
    async def job_grid(job_id: str, download: int = 0):
        job = jobs.get(job_id)
        if job is None or "grid.png" not in job.files:
            return JSONResponse({"error": "no such image"}, status_code=404)
        data, filename = job.files["grid.png"]
        return _png(data, filename, bool(download))

    @app.get("/api/jobs/{job_id}/sample/{index}.png")
    async def job_sample(job_id: str, index: int):
        job = jobs.get(job_id)
        if job is None or "images" not in job.data:
            return JSONResponse({"error": "no such image"}, status_code=404)
        try:
            data, filename = views.one_sample_png(job, index)
        except InputError as err:
            return _error(err)
        return _png(data, filename, True)

    @app.post("/api/runs/{key}/sample")
    async def sample(key: str, request: Request):
        return await with_body(request, lambda b: jobs.submit(views.sample_job, run_of(key), b).status())

    @app.get("/api/runs/{key}/test-images")
    async def test_images(key: str, seed: int = 0):
        return await call(lambda: {"images": views.test_images(run_of(key), seed=seed)})

    @app.post("/api/runs/{key}/upload")
    async def upload(key: str, request: Request):
        name = unquote(request.headers.get("x-filename", "upload"))[:200]  # the page percent-encodes it
        try:
            ar = run_of(key)
            data = await read_body(request, max_upload_bytes)
            if not data:
                raise InputError("the upload is empty: choose an image file")
        except Exception as err:
            return _error(err)
        token, path = uploads.add(data, name)

        def check():
            try:  # decoded now, with genlab's safe reader, so a bad file is refused at once
                return {"token": token, "name": name, "preview": views.preview(ar, path)}
            except ImageReadError as err:
                uploads.drop(token)
                raise ImageReadError(str(err).replace(str(path), name)) from None

        return await call(check)

    async def with_body(request: Request, fn) -> Response:
        """``fn(the request's JSON)`` on a worker thread (see ``call``)."""
        try:
            body = await read_json(request)
        except Exception as err:
            return _error(err)
        return await call(fn, body)

    @app.post("/api/runs/{key}/latent/encode")
    async def latent_encode(key: str, request: Request):
        return await with_body(request, lambda b: views.latent_code(run_of(key),
                                                                    source_image(run_of(key), b.get("source"))))

    @app.post("/api/runs/{key}/latent/decode")
    async def latent_decode(key: str, request: Request):
        return await with_body(request, lambda b: views.decode(run_of(key), b.get("z") or [], b.get("shape") or []))

    @app.get("/api/runs/{key}/latent/manifold.png")
    async def manifold(key: str):
        return await call(lambda: _png(views.manifold_png(run_of(key)), "manifold.png", False))

    @app.post("/api/runs/{key}/latent/point")
    async def latent_point(key: str, request: Request):
        return await with_body(request, lambda b: views.manifold_point(run_of(key), b.get("u"), b.get("v")))

    @app.post("/api/runs/{key}/latent/interpolate")
    async def latent_interpolate(key: str, request: Request):
        def strip(b):
            ar = run_of(key)
            return views.interpolation(ar, source_image(ar, b.get("a")), source_image(ar, b.get("b")))

        return await with_body(request, strip)

    @app.post("/api/runs/{key}/complete")
    async def complete(key: str, request: Request):
        def start(b):  # the image is read here, so a bad pick is an error at once rather than a failed job
            ar = run_of(key)
            return jobs.submit(views.completion_job, ar, source_image(ar, b.get("source")), b, work_dir).status()

        return await with_body(request, start)

    @app.post("/api/runs/{key}/score")
    async def score(key: str, request: Request):
        def start(b):
            ar, path = run_of(key), uploads.path(b.get("upload"))
            return jobs.submit(views.score_job, ar, path, uploads.name(b["upload"]), b, work_dir, data_root).status()

        return await with_body(request, start)

    @app.get("/api/compare")
    async def compare(refresh: int = 0):
        def page():
            if refresh or "html" not in compare_cache:
                compare_cache["html"] = views.compare_page(runs, work_dir)
            return HTMLResponse(compare_cache["html"])

        return await call(page)

    return app


def _png(data: bytes, filename: str, download: bool) -> Response:
    disposition = "attachment" if download else "inline"
    return Response(data, media_type="image/png",
                    headers={"Content-Disposition": f'{disposition}; filename="{filename}"'})


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err}): give another --port "
                        "(--port 0 picks a free one) or --host") from None
    sock.listen(128)
    return sock


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def serve(run_dirs: list[str], host: str = "127.0.0.1", port: int = 8765, device: str = "auto",
          use_ema: bool = True, data_root: str | None = None, max_upload_mb: float = 10.0, log=print,
          on_start=None) -> None:
    """`genlab app`: load every run (a missing or damaged one fails here, before any server starts), then serve
    the page until Ctrl-C or SIGTERM; the temporary folder of uploads and figures is removed on the way out.

    Args:
        on_start: called as ``on_start(server, url, temporary_folder)`` once the socket listens (a caller running
            this in a thread stops it with ``server.should_exit = True``).
    """
    import uvicorn

    taken: set[str] = set()
    runs = [views.AppRun(str(i), load(d, device, use_ema=use_ema, data_root=data_root), use_ema)
            for i, d in enumerate(run_dirs)]
    for ar, d in zip(runs, run_dirs):
        ar.label = run_label(Path(d), taken)
        if ar.run.spec.is_signal:  # every view draws images
            raise InputError(f"{d} holds a model of 1-D signals ({ar.run.name} on {ar.run.config.data.name}); "
                             "the app shows image models: draw its sounds with `genlab sample RUN --out DIR` (WAV files)")
    if host not in LOCAL_HOSTS:
        print(f"genlab app: warning: --host {host} lets anyone who can reach this machine use the app and upload "
              "files to it (there is no login); use it only on a network you trust", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="genlab-app-") as tmp:
        app = create_app(runs, Path(tmp), int(max_upload_mb * 2**20), data_root)
        sock = _bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{sock.getsockname()[1]}/"
        log(f"genlab app: serving {len(runs)} run(s) at {url} (uploads stay in {tmp}, removed on exit; Ctrl-C stops)")
        sys.stdout.flush()  # the address is the line a script waits for
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        if on_start is not None:
            on_start(server, url, Path(tmp))
        # uvicorn re-raises SIGINT/SIGTERM once it has stopped: both must leave this block (not kill the process
        # on the spot) so the temporary folder is removed. Signals reach the main thread only.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _exit_on_signal) if main else None
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            log("genlab app: stopped")
        finally:
            app.state.jobs.shutdown()
            sock.close()
            if main:
                signal.signal(signal.SIGTERM, previous)
