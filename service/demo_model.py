"""A built-in local model server speaking OpenAI's chat-completions protocol.

It exists so the service runs offline out of the box (``--demo``) and so tests and the
benchmark have a real upstream socket with knobs (answer length, pacing) and fault
injection (HTTP errors, resets, malformed or truncated streams, stalls). It imports
nothing from the rest of the project; its wire formats live in ``service.demo_wire``.

Decisions worth knowing:

- A watcher task awaits EOF on the connection while a response is produced, so a client
  that leaves is noticed within milliseconds, even mid-sleep or mid-stall, and the
  response is abandoned (``client_gone``).
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
- Bad JSON gets a 400 and no ``RequestRecord`` (there is nothing to record).
- Per request, the behaviour is ``by_prompt[prompt]`` if the last user prompt is a key of
  it, else ``behaviour``; tests mix faults in one concurrent burst that way. With
  ``fail_first_n`` the fault hits only the first N requests served under that Behaviour
  object (counted on it), and the ones after get a clean answer: an upstream that recovers.
- On top of that, for load runs that mix faults through one service process: with
  ``directives=True`` (``--directives``), a ``[[demo key=value ...]]`` directive in the prompt
  overrides the server's behaviour for that request (``tokens``, ``token_delay``,
  ``first_token_delay``, ``fault``, ``fault_after``, ``stall``; ``none`` clears ``tokens`` or
  ``fault``). Off by default, so a prompt is only ever text unless the operator asks; a bad
  directive gets a 400.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from service.demo_wire import (
    CHUNKED_END,
    JSON,
    SSE_HEADERS,
    ChunkFormat,
    Connection,
    Headers,
    HttpError,
    Output,
    Request,
    chunk,
    completion_json,
    error_json,
    error_response,
    fixed_response,
    response_head,
    usage_json,
)

FAULTS = (
    "http_401",
    "http_403",
    "http_404",
    "http_429",
    "http_500",
    "http_503",
    "reset",
    "malformed",
    "empty_chunk",
    "no_done",
    "close_mid",
    "stall_before_headers",
    "stall_mid",
    "large_chunk",
)
_MID_FAULTS = frozenset({"reset", "malformed", "empty_chunk", "close_mid", "stall_mid"})
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_ECHO_WORDS = 24
_ECHO_CHARS = 200
_LARGE_PATTERN = "0123456789abcdefghijklmnopqrstuvwxyz"
_MODELS = {"object": "list", "data": [{"id": "demo", "object": "model", "created": 0, "owned_by": "demo"}]}
_MODELS_BODY = json.dumps(_MODELS).encode()
_DIRECTIVE = re.compile(r"\[\[demo\s([^\]]*)\]\]")
_DIRECTIVE_FIELDS: dict[str, type] = {
    "tokens": int,
    "token_delay": float,
    "first_token_delay": float,
    "fault": str,
    "fault_after": int,
    "stall": float,
}


@dataclass
class Behaviour:
    tokens: int | None = None
    token_delay: float = 0.03
    first_token_delay: float = 0.2
    fault: str | None = None
    fault_after: int = 0
    stall: float = 3600.0
    retry_after: int = 1  # the Retry-After seconds of an http_429
    large_chunk_chars: int = 1_000_000
    token_chars: int | None = None  # pad each ``tokens=N`` token to this many characters
    answer: tuple[str, ...] | None = None  # stream exactly these token texts instead (``tokens`` is then ignored)
    fail_first_n: int | None = None  # the fault hits only the first N requests, then none
    faults_served: int = field(default=0, init=False, compare=False)


@dataclass
class RequestRecord:
    api_key: str | None
    model: str
    prompt: str
    messages: list[dict[str, Any]]
    stream: bool
    started: float
    tokens_sent: int = 0
    completed: bool = False
    client_gone: bool = False
    closed_at: float | None = None
    closed: threading.Event = field(default_factory=threading.Event)


def _echo(prompt: str) -> str:
    words = prompt.split()
    echo = " ".join(words[:_ECHO_WORDS])
    if len(words) > _ECHO_WORDS or len(echo) > _ECHO_CHARS:
        echo = echo[:_ECHO_CHARS].rstrip() + "..."
    return echo or "(nothing)"


def answer_tokens(prompt: str, tokens: int | None, token_chars: int | None = None) -> list[str]:
    """The exact token texts the server streams for this prompt (deterministic).

    ``tokens=None``: a 37-60 token answer that says it comes from the demo model and echoes
    the prompt (whitespace collapsed, cut after 24 words or 200 characters); each token is
    a word plus its following space. ``tokens=N``: ``["tok0 ", "tok1 ", ...]``, N of them;
    with ``token_chars``, each padded to that length (``"tok0:0123...xyz01 "``).
    The large_chunk fault sends one extra chunk; ``expected_text`` accounts for it.
    """
    if tokens is not None:
        if tokens < 0:
            raise ValueError("tokens must be >= 0")
        if token_chars is None:
            return [f"tok{i} " for i in range(tokens)]
        return [_padded(f"tok{i}:", token_chars) for i in range(tokens)]
    text = (
        f'This is the demo model, not a real LLM. You asked: "{_echo(prompt)}". '
        "A real model's answer would stream here word by word; start the service "
        "without --demo and point it at a real upstream to get one."
    )
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


def _padded(head: str, chars: int) -> str:
    return head + large_chunk_text(max(chars - len(head) - 1, 0)) + " "


def large_chunk_text(chars: int) -> str:
    """The text of the large_chunk fault's one big content chunk."""
    return (_LARGE_PATTERN * (chars // len(_LARGE_PATTERN) + 1))[:chars]


def prompt_behaviour(prompt: str, behaviour: Behaviour) -> Behaviour:
    """``behaviour`` overridden by the prompt's ``[[demo key=value ...]]`` directive, if it has one."""
    match = _DIRECTIVE.search(prompt)
    if match is None:
        return dataclasses.replace(behaviour)
    overrides: dict[str, Any] = {}
    for item in match.group(1).split():
        key, _, text = item.partition("=")
        kind = _DIRECTIVE_FIELDS.get(key)
        if kind is None:
            raise HttpError(400, f"unknown demo directive field {key!r}")
        try:
            overrides[key] = None if text == "none" and key in ("tokens", "fault") else kind(text)
        except ValueError as exc:
            raise HttpError(400, f"demo directive {key}: {exc}") from exc
    if overrides.get("fault") not in (None, *FAULTS):
        raise HttpError(400, f"unknown demo fault {overrides['fault']!r}")
    return dataclasses.replace(behaviour, **overrides)


def _fault_cut(behaviour: Behaviour, count: int) -> int:
    return min(max(behaviour.fault_after, 0), count)


def _content_chunks(prompt: str, behaviour: Behaviour) -> list[str]:
    if behaviour.answer is not None:
        chunks = list(behaviour.answer)
    else:
        chunks = answer_tokens(prompt, behaviour.tokens, behaviour.token_chars)
    if behaviour.fault == "large_chunk":
        chunks.insert(_fault_cut(behaviour, len(chunks)), large_chunk_text(behaviour.large_chunk_chars))
    return chunks


def expected_text(prompt: str, behaviour: Behaviour) -> str:
    """Exactly the text a correct client assembles from the streamed answer.

    The full answer for no fault, empty_chunk, no_done, stall_* (once the stall is over)
    and large_chunk (whose big chunk comes after ``fault_after`` tokens); the first
    ``fault_after`` tokens for reset, malformed and close_mid. http_* faults raise
    ValueError: they carry no text.
    """
    if behaviour.fault is not None and behaviour.fault.startswith("http_"):
        raise ValueError(f"{behaviour.fault} answers with an HTTP error, not text")
    chunks = _content_chunks(prompt, behaviour)
    if behaviour.fault in ("reset", "malformed", "close_mid"):
        chunks = chunks[: _fault_cut(behaviour, len(chunks))]
    return "".join(chunks)


def _http_fault(behaviour: Behaviour, record: RequestRecord) -> tuple[int, bytes, Headers]:
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


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _bearer(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


@dataclass
class _Chat:
    record: RequestRecord
    behaviour: Behaviour
    include_usage: bool
    prompt_tokens: int
    keep_alive: bool


def _parse_chat(request: Request, behaviour_for: Callable[[str], Behaviour]) -> _Chat:
    try:
        data = json.loads(request.body)
    except ValueError as exc:
        raise HttpError(400, f"We could not parse the JSON body of your request: {exc}") from exc
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise HttpError(400, "'messages' must be a list of message objects")
    model = data.get("model", "demo")
    if not isinstance(model, str):
        raise HttpError(400, "'model' must be a string")
    users = [m for m in messages if m.get("role") == "user"]
    options = data.get("stream_options")
    record = RequestRecord(
        api_key=_bearer(request.headers),
        model=model,
        prompt=_text_of(users[-1].get("content")) if users else "",
        messages=messages,
        stream=data.get("stream") is True,
        started=time.monotonic(),
    )
    return _Chat(
        record=record,
        behaviour=behaviour_for(record.prompt),
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        prompt_tokens=sum(len(_text_of(m.get("content")).split()) for m in messages),
        keep_alive=request.keep_alive,
    )


async def _mid_fault(conn: Connection, out: Output, chat: _Chat) -> bool | None:
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


async def _stream(conn: Connection, chat: _Chat, fmt: ChunkFormat, chunks: list[str]) -> bool:
    behaviour = chat.behaviour
    out = Output(conn, fmt, behaviour.token_delay, partial(setattr, chat.record, "tokens_sent"))
    conn.write(response_head(200, SSE_HEADERS, chat.keep_alive))
    try:
        await conn.drain()
        if behaviour.first_token_delay > 0:
            await asyncio.sleep(behaviour.first_token_delay)
        mid_fault = behaviour.fault in _MID_FAULTS
        cut = _fault_cut(behaviour, len(chunks)) if mid_fault else len(chunks)
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


async def _reply(conn: Connection, chat: _Chat, completion_id: str, chunks: list[str]) -> bool:
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


def _finish(record: RequestRecord, *, completed: bool = False, client_gone: bool = False) -> None:
    record.completed = completed
    record.client_gone = client_gone
    record.closed_at = time.monotonic()
    record.closed.set()


def _display_host(host: str) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


class DemoModelServer:
    """An OpenAI-compatible chat-completions server for ``--demo``, tests and benchmarks."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, behaviour: Behaviour | None = None, directives: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self.behaviour = behaviour if behaviour is not None else Behaviour()
        self.directives = directives
        self.by_prompt: dict[str, Behaviour] = {}
        self.requests: list[RequestRecord] = []
        self.base_url = ""
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], Connection] = {}
        self._completions = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def open_connections(self) -> int:
        """Client connections open right now (idle keep-alive ones included)."""
        return len(self._connections)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.port = port
        self.base_url = f"http://{_display_host(host)}:{port}/v1"

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in self._connections.values():
            conn.abort()
        handlers = list(self._connections)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)

    def start_in_thread(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop, started, failure), name="demo-model", daemon=True
        )
        self._thread.start()
        if not started.wait(10.0):
            raise TimeoutError("demo model server did not start within 10 s")
        if failure:
            raise failure[0]

    def _run_loop(
        self, loop: asyncio.AbstractEventLoop, started: threading.Event, failure: list[BaseException]
    ) -> None:
        try:
            loop.run_until_complete(self.start())
        except BaseException as exc:  # handed to the thread that called start_in_thread
            failure.append(exc)
        started.set()
        try:
            if not failure:
                loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop_thread(self, timeout: float = 5.0) -> None:
        loop, thread, self._thread = self._loop, self._thread, None
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def __enter__(self) -> DemoModelServer:
        self.start_in_thread()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_thread()

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RequestRecord]:
        """The first ``n`` chat requests, polling until they arrive or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"expected {n} requests within {timeout} s, saw {len(self.requests)}")
            time.sleep(0.002)
        return self.requests[:n]

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancellation (from stop) ends the handler normally: on Python 3.11 a cancelled
        # start_server handler makes asyncio's done-callback log a spurious error.
        task = asyncio.current_task()
        assert task is not None
        conn = self._connections[task] = Connection(reader, writer)
        try:
            while await self._serve_one(conn):
                pass
        except (ConnectionError, asyncio.CancelledError):
            conn.abort()
        finally:
            del self._connections[task]
            await conn.close()

    async def _serve_one(self, conn: Connection) -> bool:
        try:
            request = await conn.read_request()
        except HttpError as exc:
            conn.write(error_response(exc, keep_alive=False))
            return False
        if request is None:
            return False
        if request.method == "POST" and request.path in _CHAT_PATHS:
            return await self._chat(conn, request)
        if request.method == "GET" and request.path == "/v1/models":
            conn.write(fixed_response(200, JSON, _MODELS_BODY, request.keep_alive))
        elif request.method == "GET" and request.path == "/health":
            conn.write(fixed_response(200, "text/plain", b"ok", request.keep_alive))
        else:
            error = HttpError(404, f"Unknown route: {request.method} {request.path}")
            conn.write(error_response(error, request.keep_alive, code="not_found"))
        await conn.drain()
        return request.keep_alive

    def _behaviour_for(self, prompt: str) -> Behaviour:
        """This request's own copy of the behaviour it gets; counts ``fail_first_n`` faults, obeys directives."""
        chosen = self.by_prompt.get(prompt, self.behaviour)
        if chosen.fail_first_n is not None and chosen.fault is not None:
            if chosen.faults_served < chosen.fail_first_n:
                chosen.faults_served += 1
            else:
                chosen = dataclasses.replace(chosen, fault=None)
        return prompt_behaviour(prompt, chosen) if self.directives else dataclasses.replace(chosen)

    async def _chat(self, conn: Connection, request: Request) -> bool:
        try:
            chat = _parse_chat(request, self._behaviour_for)
        except HttpError as exc:
            conn.write(error_response(exc, request.keep_alive))
            await conn.drain()
            return request.keep_alive
        self.requests.append(chat.record)
        respond = asyncio.ensure_future(self._respond(conn, chat))
        watcher = asyncio.ensure_future(conn.wait_client_gone())
        outcome = "stopped"
        try:
            await asyncio.wait((respond, watcher), return_when=asyncio.FIRST_COMPLETED)
            failure = respond.exception() if respond.done() else None
            if respond.done() and failure is None:
                outcome = "completed"
                return respond.result()
            if failure is not None and not isinstance(failure, ConnectionError):
                raise failure  # a bug in the demo server: let it surface
            outcome = "client_gone"
            conn.abort()
            return False
        finally:
            for task in (respond, watcher):
                task.cancel()
            await asyncio.gather(respond, watcher, return_exceptions=True)
            _finish(chat.record, completed=outcome == "completed", client_gone=outcome == "client_gone")

    async def _respond(self, conn: Connection, chat: _Chat) -> bool:
        behaviour = chat.behaviour
        if behaviour.fault == "stall_before_headers":
            await asyncio.sleep(behaviour.stall)
        if behaviour.fault is not None and behaviour.fault.startswith("http_"):
            status, body, extra = _http_fault(behaviour, chat.record)
            conn.write(fixed_response(status, JSON, body, chat.keep_alive, extra))
            await conn.drain()
            return chat.keep_alive
        self._completions += 1
        completion_id = f"chatcmpl-demo-{self._completions}"
        chunks = _content_chunks(chat.record.prompt, behaviour)
        if not chat.record.stream:
            return await _reply(conn, chat, completion_id, chunks)
        fmt = ChunkFormat(completion_id, int(time.time()), chat.record.model)
        return await _stream(conn, chat, fmt, chunks)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service.demo_model", description="Serve the demo model (OpenAI chat completions)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--tokens", type=int, default=None, help="fixed answer length (default: from prompt)")
    parser.add_argument("--token-delay-ms", type=float, default=30.0)
    parser.add_argument("--first-token-ms", type=float, default=200.0)
    parser.add_argument("--fault", choices=FAULTS, default=None)
    parser.add_argument("--fault-after", type=int, default=0)
    parser.add_argument("--directives", action="store_true", help="obey [[demo key=value ...]] in prompts")
    return parser.parse_args(argv)


async def _serve_until_signalled(server: DemoModelServer) -> None:
    await server.start()
    print(f"demo model listening on {server.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    behaviour = Behaviour(
        tokens=args.tokens,
        token_delay=args.token_delay_ms / 1000,
        first_token_delay=args.first_token_ms / 1000,
        fault=args.fault,
        fault_after=args.fault_after,
    )
    asyncio.run(_serve_until_signalled(DemoModelServer(args.host, args.port, behaviour, args.directives)))


if __name__ == "__main__":
    main()
