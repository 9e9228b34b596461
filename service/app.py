"""`create_app(settings)`: the FastAPI app, its error handlers, and the lifespan that owns the pool.

The lifespan installs a thread pool sized for `max_streams` as the loop's default executor:
`AsyncPipeline` runs the synchronous generator there, one thread per stream for the stream's
whole length, and the default pool (min(32, cpus + 4) threads) would silently queue the seventh
stream on a 2-core machine. Admission (`Admission`) refuses what the pool cannot hold.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from pipelines.documents import load_documents
from service.answering.answers import Context
from service.answering.conversations import Conversations
from service.answering.guard import InputGuard
from service.answering.warmup import warm_up
from service.http.errors import add_error_handlers
from service.http.middleware.body_limit import BodyLimit
from service.http.middleware.capacity import ShedLoad
from service.http.routes import chat, conversations, health, metrics, openai, page, runs
from service.http.tracing import instrument
from service.ops.gc_policy import IdleGC, settle_heap
from service.ops.logs import configure_logging
from service.ops.loop_lag import LoopLag
from service.ops.metrics import ServiceMetrics, live_gauges
from service.ops.shutdown import drain_on_signals
from service.ops.tracing import Tracing
from service.serving import Serving
from service.settings import Settings
from service.store.choice import store_for
from service.store.conversations import InPlace, MemoryConversationStore
from service.store.redis_loop_conversations import LoopRedisConversationStore
from service.streaming.run import Admission
from service.streaming.threads import WorkerThreads
from service.upstream.pool import UpstreamPool

logger = logging.getLogger("service.app")

# Retrieval (the documents pipeline) takes a pool thread, briefly, before the generator takes one for the stream.
SPARE_THREADS = 4
# After the drain (service/ops/shutdown.py) nothing should be left; this bounds the wait for threads if it is.
TEARDOWN_WAIT = 5.0
# CORS, when origins are listed: what a chat client sends (the Bearer key, JSON, fetch-event-source's
# Last-Event-ID on a retry, the runs API's Idempotency-Key) and what a page may read (a 503's
# Retry-After, POST /runs' Location).
CORS_METHODS = ["GET", "POST", "DELETE", "OPTIONS"]
CORS_HEADERS = ["authorization", "content-type", "idempotency-key", "last-event-id"]
CORS_EXPOSE = ["location", "retry-after"]
CORS_MAX_AGE = 600  # seconds a browser may reuse a preflight's answer
# A Redis conversation store's connections, per process: two round trips per request (open, then record the turn).
CONVERSATION_CONNECTIONS = 4


def create_app(settings: Settings, tracing: Tracing | None = None) -> FastAPI:
    """`tracing`: from the OTEL_* environment unless given (tests give one with an in-memory exporter)."""
    tracing = tracing if tracing is not None else Tracing.from_env(trace_content=settings.trace_content)
    app = FastAPI(title="haystream", version="0.1.0", lifespan=_lifespan(settings, tracing))
    for module in (chat, openai, conversations, runs, health, metrics, page):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ShedLoad)  # outside the body limit: a refused request's body is never read
    if settings.cors_origins:  # added last, so outermost: its headers reach the body limit's 413 too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSE,
            max_age=CORS_MAX_AGE,
        )
    add_error_handlers(app)
    instrument(app, tracing)  # outermost: the request span covers the middleware's refusals too
    return app


def _lifespan(settings: Settings, tracing: Tracing):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = store_for(settings)
        await store.open()  # first: a store that cannot be reached stops the start-up before anything else
        loop = asyncio.get_running_loop()
        threads = WorkerThreads(settings.max_streams + SPARE_THREADS)
        loop.set_default_executor(threads)
        upstream = UpstreamPool(settings.upstream_connections, settings.upstream_first_byte_timeout)
        meters = ServiceMetrics()
        gc = IdleGC.for_process()
        lag = LoopLag()
        lag.start()
        admission = _admission(settings, upstream, meters, gc, lag)
        meters.watch(live_gauges(admission, upstream, threads, loop, lag), loop)
        answers = _answers(settings)
        if (settings.base_url or "https:").startswith("https:"):  # no base URL: OpenAI's, over https
            upstream.prepare_tls()
        await warm_up(answers)  # before the service says it is ready: a first request as fast as the next
        serving = app.state.serving = Serving(settings, admission, threads, answers, store, meters, tracing=tracing)
        tracing.start()
        logger.info("ready", extra={"model": settings.model, "max_streams": settings.max_streams})
        try:
            with drain_on_signals(serving, settings.shutdown_grace):
                yield
        finally:
            serving.draining = True
            admission.cancel_all()
            await store.close(TEARDOWN_WAIT)
            await admission.wait_idle(TEARDOWN_WAIT)
            threads.shutdown(wait=False, cancel_futures=True)
            upstream.close()
            if gc is not None:
                gc.close()
            await answers.conversations.close()
            meters.close()
            lag.stop()
            tracing.shutdown()

    return lifespan


def _admission(
    settings: Settings, upstream: UpstreamPool, meters: ServiceMetrics, gc: IdleGC | None, lag: LoopLag
) -> Admission:
    """Slots for `max_streams` runs, refused while the loop is behind by more than `max_loop_lag_ms`."""
    return Admission(
        settings.max_streams,
        upstream,
        settings.queue_size,
        meters,
        gc,
        max_duration=settings.run_max_duration,
        lag=lag,
        max_lag=settings.max_loop_lag_ms / 1000,
    )


def _answers(settings: Settings) -> Context:
    """Read the documents folder once (a missing or empty one stops the start-up) and set up the rest."""
    documents = load_documents(settings.documents_dir) if settings.documents_dir is not None else None
    if documents is not None:
        logger.info("documents loaded", extra={"documents": documents.count_documents()})
    return Context(settings, _conversations(settings), documents, InputGuard(settings.blocked_terms))


def _conversations(settings: Settings) -> Conversations:
    if settings.store_url == "memory://":
        memory = MemoryConversationStore(settings.max_conversations, settings.conversation_max_messages)
        return Conversations(InPlace(memory))
    store = LoopRedisConversationStore(
        settings.store_url,
        ttl=settings.conversation_ttl,
        max_messages=settings.conversation_max_messages,
        connections=CONVERSATION_CONNECTIONS,
    )
    return Conversations(store)


def app_from_env() -> FastAPI:
    """uvicorn's factory: settings from the environment (which `python -m service` has filled in)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    settle_heap()
    return app
