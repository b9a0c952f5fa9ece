"""The HTTP routes: the page and its files, the bundled portraits, `/healthz`, and
`POST /v1/generate` (multipart portrait + audio -> mp4) as bounded, cancellable jobs."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from rtavatar import FPS
from rtavatar.engine.files import write_generated
from rtavatar.engine.offline import Cancelled
from rtavatar.errors import RTAvatarError
from rtavatar.media import read_image
from rtavatar.models.conditioning import parse_expression
from rtavatar.server.common import PORTRAITS, Hub, error_body, log, read_upload_audio, save_upload, validation_summary
from rtavatar.server.protocol import VERSION, Paste


def register(app: FastAPI, hub: Hub) -> None:
    static = Path(__file__).parent / "static"

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Any:
        p = static / name
        if "/" in name or not p.is_file():
            return JSONResponse(error_body("not found"), status_code=404)
        return FileResponse(p)

    @app.get("/v1/portraits")
    async def list_portraits() -> dict[str, list[str]]:
        return {"portraits": sorted(p.stem for p in PORTRAITS.glob("*.jpg"))}

    @app.get("/v1/portraits/{name}")
    async def get_portrait(name: str) -> Any:
        try:
            return FileResponse(hub.bundled(name), media_type="image/jpeg")
        except RTAvatarError as e:
            return JSONResponse(error_body(str(e)), status_code=404)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": hub.cfg.model, "resolution": hub.avatar.resolution, "fps": FPS,
                "sessions": len(hub.live), "max_sessions": hub.cfg.max_sessions, "load": hub.cap.load,
                "capacity": {k: hub.cap.sessions_of(k) for k in hub.cap.costs}, "generate_jobs": len(hub.jobs),
                "max_generate_jobs": hub.cfg.max_generate_jobs, "protocol": VERSION}

    # Offline jobs: their own threads (never the default executor live sessions use), at most
    # max_generate_jobs at once, each on one core at a lower OS priority, cancelled when the
    # client goes away or the server stops; their temp directories go with them.
    job_pool = ThreadPoolExecutor(max_workers=hub.cfg.max_generate_jobs, thread_name_prefix="rtavatar-job")

    def run_job(cancel: threading.Event, work: Callable[..., int]) -> int:
        torch.set_num_threads(1)  # this thread only: one core for the job, the rest for live sessions
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: per thread
        except (AttributeError, OSError):
            pass
        return work(cancelled=cancel.is_set)

    @app.on_event("shutdown")
    async def stop_jobs() -> None:
        hub.stop_jobs()
        job_pool.shutdown(wait=False, cancel_futures=True)

    @app.post("/v1/generate", response_class=FileResponse, responses={400: {"description": "bad input, with the reason"},
                                                                      503: {"description": "busy: retry later"}})
    async def generate(request: Request, portrait: UploadFile = File(...), audio: UploadFile = File(...),
                       steps: int | None = Form(None), state: str = Form("auto"), expression: str = Form(""),
                       align: str = Form("face"),
                       paste: str = Form("{}", description="the photo renderer's options as JSON (protocol.Paste)"),
                       seed: int = Form(0)) -> Any:
        if len(hub.jobs) >= hub.cfg.max_generate_jobs:
            return JSONResponse(error_body(f"busy: {len(hub.jobs)} generate job(s) running; retry in a few seconds"), status_code=503,
                                headers={"Retry-After": "5"})
        tmp = Path(tempfile.mkdtemp(prefix="rtavatar-gen-"))
        cancel = hub.jobs[tmp] = threading.Event()

        def cleanup() -> None:  # after the response is sent, or on any error: the job stops too
            cancel.set()
            hub.jobs.pop(tmp, None)
            shutil.rmtree(tmp, ignore_errors=True)

        try:
            files = {name: await save_upload(up, name, tmp, hub.cfg.max_upload_bytes)
                     for name, up in (("portrait", portrait), ("audio", audio))}
            if state not in ("auto", "speak", "listen", "idle"):
                raise RTAvatarError(f"state {state!r}: use auto, speak, listen or idle")
            if steps is not None and not 1 <= steps <= 50:
                raise RTAvatarError("steps must be in [1, 50]")
            if not 0 <= seed < 1 << 63:
                raise RTAvatarError("seed must be in [0, 2**63)")
            expr = parse_expression(expression)
            try:
                options = Paste.model_validate_json(paste).options()
            except ValidationError as e:
                raise RTAvatarError(f"bad paste options: {validation_summary(e)}") from None
            image = await asyncio.to_thread(read_image, files["portrait"])  # header checked before decoding; off the loop
            wav = await asyncio.to_thread(read_upload_audio, files["audio"])
            out = tmp / "out.mp4"
            work = partial(write_generated, out, hub.avatar, image, wav, align=align, paste=options, steps=steps,
                           state=state, expression=expr, seed=seed)
            job = asyncio.get_running_loop().run_in_executor(job_pool, run_job, cancel, work)
            while not job.done():  # a client that gave up cancels its job
                await asyncio.wait({job}, timeout=0.25)
                if not job.done() and await request.is_disconnected():
                    cancel.set()
            try:
                n = job.result()
            except Cancelled:
                log.info("generate: cancelled (the client went away or the server is stopping)")
                cleanup()
                return JSONResponse(error_body("cancelled"), status_code=499)
            log.info("generate: %d frames", n)
            return FileResponse(out, media_type="video/mp4", filename="rtavatar.mp4", background=BackgroundTask(cleanup))
        except RTAvatarError as e:
            cleanup()
            return JSONResponse(error_body(str(e).replace(f"{tmp}/", "")), status_code=400)  # the upload's name, not a server path
        except BaseException:
            cleanup()
            raise

