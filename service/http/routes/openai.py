"""OpenAI's API over the same runs: `GET /v1/models` and `POST /v1/chat/completions`.

A completion is a run like any POST /chat one (same admission, pipeline, bridge, held run, cancel
on disconnect, metrics and logs); only its wire format differs (`service/streaming/openai_chunks.py`).
Streamed, it is resumable as POST /chat is: each chunk has an SSE id, so `Last-Event-ID` continues
the completion after it, and a repeat with the same `Idempotency-Key` attaches to it.
"""

import time
from functools import partial
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.responses import Response

from service.errors import InvalidRequest
from service.http.deps import BearerKey, IdempotencyKey, LastEventId, ServingDep
from service.http.json_answer import OpenAICompletionResponse
from service.http.openai_schemas import (
    ChatCompletionRequest,
    ModelList,
    OpenAIError,
    ask_of_completion,
    models_of,
)
from service.http.openai_stream import OpenAIStreamResponse
from service.http.responses import event_stream
from service.streaming.openai_chunks import OpenAIChunks, completion_id
from service.streaming.sse import Encoder

router = APIRouter(prefix="/v1")

STARTED = int(time.time())  # the models' `created`: when the service started

_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A `chat.completion`, or with `stream: true` `chat.completion.chunk` events.",
        "content": {"text/event-stream": {}},
    },
    **{
        status: {"model": OpenAIError, "description": description}
        for status, description in {
            400: "The request is malformed.",
            401: "No usable `Authorization: Bearer <key>`, or the upstream refused the key.",
            404: "No such model.",
            410: "Last-Event-ID names a run or events no longer held.",
            429: "The upstream is rate limiting (streamed: when it said so before the first token).",
            502: "The upstream failed (streamed: before the first token).",
            503: "Every stream slot is taken, or the service is shutting down; retry after Retry-After seconds.",
        }.items()
    },
}


@router.get("/models", response_model=ModelList)
async def list_models(serving: ServingDep) -> JSONResponse:
    return JSONResponse(models_of(serving.models(), STARTED))


@router.post("/chat/completions", response_class=Response, responses=_DOC)
async def chat_completions(
    body: ChatCompletionRequest,
    serving: ServingDep,
    api_key: BearerKey,
    idempotency_key: IdempotencyKey = None,
    last_event_id: LastEventId = None,
) -> Response:
    ask = ask_of_completion(body, serving.pipeline_for(body.model), api_key)
    serving.check(ask)
    settings = serving.settings
    created = int(time.time())
    if not body.stream:
        for header, value in (("last-event-id", last_event_id), ("idempotency-key", idempotency_key)):
            if value is not None:
                raise InvalidRequest(header, "applies to streamed completions only")
        answering = await serving.answer(ask)
        return OpenAICompletionResponse(
            answering.events, answering.on_close, settings.retry_after, model=body.model, created=created
        )
    if last_event_id is not None:
        return event_stream(await serving.resume(ask, last_event_id, OpenAIChunks.wire), settings.send_timeout)
    if idempotency_key is not None and (held := await serving.find(ask, idempotency_key, OpenAIChunks.wire)):
        return event_stream(await serving.read(held, None), settings.send_timeout)
    encoder = partial(_chunks, body.model, created, body.include_usage)
    grace = settings.resume_grace if idempotency_key is not None else settings.chat_resume_grace
    reader = await serving.stream(ask, idempotency_key=idempotency_key, grace=grace, encoder=encoder)
    if reader is None:  # the Idempotency-Key's run, already ended and read to its end
        return event_stream(None, settings.send_timeout)
    return OpenAIStreamResponse(reader, settings.send_timeout, settings.retry_after)


def _chunks(model: str, created: int, include_usage: bool, run_id: str) -> Encoder:
    return OpenAIChunks(completion_id(run_id), model, created, include_usage)
