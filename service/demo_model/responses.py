"""The demo model's answers to a chat request: an SSE stream, one JSON body, or an HTTP-error fault.

- A mid-stream fault fires after ``fault_after`` content tokens, or after the last token
  when the answer is shorter. ``completed`` means the server reached the designed end of
  the response, a fault's designed end included (an RST, a truncated body).
- malformed and close_mid end the chunked body cleanly; malformed then closes the
  connection, close_mid keeps it alive. reset and malformed always close it.
- Non-streaming answers wait as long as generation would take
  (``first_token_delay + token_delay * (chunks - 1)``) and honour the faults as far as a
  single JSON body can: reset sends an RST instead, malformed sends ``{not json``,
  close_mid half the body, stall_mid stalls between headers and body.
- Usage: ``completion_tokens`` counts content chunks (the large chunk is one);
  ``prompt_tokens`` counts whitespace-separated words of all message texts.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from service.demo_model.behaviour import MID_FAULTS, Behaviour, fault_cut
from service.demo_model.chat_request import Chat, RequestRecord
from service.demo_model.connection import Connection
from service.demo_model.formats import ChunkFormat, completion_json, error_json, usage_json
from service.demo_model.output import Output
from service.demo_model.wire import CHUNKED_END, JSON, SSE_HEADERS, Headers, chunk, fixed_response, response_head


def http_fault(behaviour: Behaviour, record: RequestRecord) -> tuple[int, bytes, Headers]:
    """Status, OpenAI error body and extra headers of an ``http_*`` fault."""
    status = int(str(behaviour.fault).removeprefix("http_"))
    if status == 401:
        message = f"Incorrect API key provided: {record.api_key or ''}"
        return status, error_json(message, "invalid_request_error", "invalid_api_key"), ()
    if status == 403:
        message = "You are not allowed to use this model (demo fault)."
        return status, error_json(message, "invalid_request_error", "permission_denied"), ()
    if status == 404:
        message = f"The model `{record.model}` does not exist or you do not have access to it."
        return status, error_json(message, "invalid_request_error", "model_not_found"), ()
    if status == 429:
        body = error_json("Rate limit reached (demo fault).", "requests", "rate_limit_exceeded")
        return status, body, (("Retry-After", str(behaviour.retry_after)),)
    message = "The server had an error while processing your request (demo fault)."
    return status, error_json(message, "server_error", None), ()


async def _mid_fault(conn: Connection, out: Output, chat: Chat) -> bool | None:
    """Apply a mid-stream fault: None to carry on, else the connection's keep-alive verdict."""
    fault = chat.behaviour.fault
    if fault == "empty_chunk":
        out.add(out.fmt.empty())
        return None
    await out.flush()
    if fault == "stall_mid":
        await asyncio.sleep(chat.behaviour.stall)
        return None
    if fault == "reset":
        await conn.flush_all()
        conn.reset()
        return False
    if fault == "malformed":
        out.add(chunk("data: {not json\n\n"))
    out.add(CHUNKED_END)
    await out.flush()
    return chat.keep_alive if fault == "close_mid" else False


async def stream(conn: Connection, chat: Chat, fmt: ChunkFormat, chunks: list[str]) -> bool:
    """Stream ``chunks`` as SSE events; the connection's keep-alive verdict."""
    behaviour = chat.behaviour
    out = Output(conn, fmt, behaviour.token_delay, partial(setattr, chat.record, "tokens_sent"))
    conn.write(response_head(200, SSE_HEADERS, chat.keep_alive))
    try:
        await conn.drain()
        if behaviour.first_token_delay > 0:
            await asyncio.sleep(behaviour.first_token_delay)
        mid_fault = behaviour.fault in MID_FAULTS
        cut = fault_cut(behaviour, len(chunks)) if mid_fault else len(chunks)
        await out.tokens(chunks[:cut])
        if mid_fault and (verdict := await _mid_fault(conn, out, chat)) is not None:
            return verdict
        await out.tokens(chunks[cut:])
        out.add(fmt.finish())
        if chat.include_usage:
            out.add(fmt.usage(chat.prompt_tokens, len(chunks)))
        if behaviour.fault != "no_done":
            out.add(chunk("data: [DONE]\n\n"))
        out.add(CHUNKED_END)
        await out.flush()
        return chat.keep_alive
    finally:
        chat.record.tokens_sent = out.written


async def reply(conn: Connection, chat: Chat, completion_id: str, chunks: list[str]) -> bool:
    """Answer with one JSON completion; the connection's keep-alive verdict."""
    behaviour = chat.behaviour
    delay = behaviour.first_token_delay + behaviour.token_delay * max(len(chunks) - 1, 0)
    if delay > 0:
        await asyncio.sleep(delay)
    if behaviour.fault == "reset":
        conn.reset()
        return False
    usage = usage_json(chat.prompt_tokens, len(chunks))
    body = completion_json(completion_id, int(time.time()), chat.record.model, "".join(chunks), usage)
    if behaviour.fault == "malformed":
        body = b"{not json"
    response = fixed_response(200, JSON, body, chat.keep_alive)
    head_size = len(response) - len(body)
    if behaviour.fault == "close_mid":
        response = response[: head_size + len(body) // 2]
    if behaviour.fault == "stall_mid":
        conn.write(response[:head_size])
        await conn.drain()
        await asyncio.sleep(behaviour.stall)
        response = response[head_size:]
    conn.write(response)
    await conn.drain()
    if behaviour.fault not in ("close_mid", "malformed"):
        chat.record.tokens_sent = len(chunks)
    return chat.keep_alive and behaviour.fault not in ("close_mid", "malformed")
