"""`create_app(settings)`: the FastAPI app, its error handlers, and the lifespan that owns the pool.

The lifespan installs a thread pool sized for `max_streams` as the loop's default executor:
`AsyncPipeline` runs the synchronous generator there, one thread per stream for the stream's
whole length, and the default pool (min(32, cpus + 4) threads) would silently queue the seventh
stream on a 2-core machine. Admission (`RunRegistry`) refuses what the pool cannot hold.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pipelines.documents import load_documents
from service.answers import Context
from service.conversations import Conversations
from service.cors import add_cors
from service.deps import ServiceState
from service.errors import InvalidRequest
from service.gc_policy import IdleCollector, settle_heap
from service.guard import InputGuard
from service.limits import BodyLimit
from service.logs import configure_logging
from service.metrics import ServiceMetrics, live_gauges
from service.pool import StreamPool
from service.routes import chat, conversations, health, metrics, page, runs
from service.runs import RunRegistry
from service.runstore import MemoryRunStore
from service.schemas import error_response
from service.settings import Settings
from service.shutdown import drain_on_signals
from service.upstream import UpstreamPool

logger = logging.getLogger("service.app")

# Retrieval (the documents pipeline) takes a pool thread, briefly, before the generator takes one for the stream.
SPARE_THREADS = 4
# After the drain (service/shutdown.py) nothing should be left; this bounds the wait for threads if it is.
TEARDOWN_WAIT = 5.0


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="haystream", version="0.1.0", lifespan=_lifespan(settings))
    app.include_router(chat.router)
    app.include_router(conversations.router)
    app.include_router(runs.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(page.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    add_cors(app, settings)  # added last, so outermost: its headers reach the body limit's 413 too
    app.add_exception_handler(RequestValidationError, _invalid_body)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidRequest, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    return app


def _lifespan(settings: Settings):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        pool = StreamPool(settings.max_streams + SPARE_THREADS)
        loop.set_default_executor(pool)
        upstream = UpstreamPool(settings.upstream_connections, settings.upstream_first_byte_timeout)
        meters = ServiceMetrics()
        collector = IdleCollector.for_process()
        registry = RunRegistry(settings.max_streams, upstream, settings.queue_size, meters, collector)
        meters.watch(live_gauges(registry, upstream, pool, loop), loop)
        answers = _answers(settings)
        store = MemoryRunStore(settings.runs_max_retained, settings.runs_retention)
        state = app.state.service = ServiceState(
            settings=settings, registry=registry, pool=pool, answers=answers, runs=store, metrics=meters
        )
        logger.info("ready", extra={"model": settings.model, "max_streams": settings.max_streams})
        try:
            with drain_on_signals(state, settings.shutdown_grace):
                yield
        finally:
            state.draining = True
            registry.cancel_all()
            await store.stop_all(TEARDOWN_WAIT)
            await registry.wait_idle(TEARDOWN_WAIT)
            pool.shutdown(wait=False, cancel_futures=True)
            upstream.close()
            if collector is not None:
                collector.close()
            answers.conversations.clear()
            meters.close()

    return lifespan


def _answers(settings: Settings) -> Context:
    """Read the documents folder once (a missing or empty one stops the start-up) and set up the rest."""
    documents = load_documents(settings.documents_dir) if settings.documents_dir is not None else None
    if documents is not None:
        logger.info("documents loaded", extra={"documents": documents.count_documents()})
    conversations = Conversations(settings.max_conversations, settings.conversation_max_messages)
    return Context(settings, conversations, documents, InputGuard(settings.blocked_terms))


async def _http_error(_: Request, error: HTTPException) -> JSONResponse:
    """Starlette's and FastAPI's own HTTP errors, in the service's error shape."""
    if error.status_code == 400:  # FastAPI could not parse the body (e.g. not UTF-8)
        message = "body: could not be parsed as UTF-8 JSON"
        return error_response(
            400, "invalid_json", message, errors=[{"field": "body", "message": "could not be parsed"}]
        )
    return error_response(error.status_code, "http_error", str(error.detail), headers=error.headers)


async def _invalid_request(_: Request, error: InvalidRequest) -> JSONResponse:
    return error_response(422, "invalid_request", str(error), errors=[{"field": error.field, "message": error.message}])


async def _invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, minus the echoed input (it may be a key), with fields named plainly."""
    if request.method == "POST" and not _is_json(request.headers.get("content-type", "")):
        field = {"field": "content-type", "message": "must be application/json"}
        return error_response(415, "unsupported_media_type", "content-type: must be application/json", errors=[field])
    fields = [_field_error(detail) for detail in error.errors()]
    if any(detail.get("type") == "json_invalid" for detail in error.errors()):
        return error_response(
            400, "invalid_json", "body: not valid JSON", errors=[{"field": "body", "message": "not valid JSON"}]
        )
    message = "; ".join(f"{item['field']}: {item['message']}" for item in fields)
    return error_response(422, "invalid_request", message, errors=fields)


def _is_json(content_type: str) -> bool:
    """FastAPI's own (strict) rule for reading a body as JSON: application/json or application/*+json."""
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _field_error(detail: dict[str, object]) -> dict[str, str]:
    loc = [str(part) for part in detail.get("loc", ()) if part not in ("body", "header")]  # type: ignore[attr-defined]
    message = str(detail.get("msg", "invalid"))
    if detail.get("type") == "extra_forbidden":
        message = "is not a known field"
    return {"field": ".".join(loc) or "body", "message": message.removeprefix("Value error, ")}


def app_from_env() -> FastAPI:
    """uvicorn's factory: settings from the environment (which `python -m service` has filled in)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    settle_heap()
    return app
