"""``DemoModelServer``: the demo model's listening socket, routes, and per-request lifecycle.

A watcher task awaits EOF on the connection while a response is produced, so a client
that leaves is noticed within milliseconds, even mid-sleep or mid-stall, and the
response is abandoned (``client_gone``). The server runs in the caller's event loop
(``start``/``stop``) or on a loop of its own in a daemon thread (``with`` or
``start_in_thread``/``stop_thread``), which is how tests use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from typing import Any

from service.demo_model.answer_text import content_chunks
from service.demo_model.behaviour import Behaviour, prompt_behaviour
from service.demo_model.chat_request import Chat, RequestRecord, finish_record, parse_chat
from service.demo_model.connection import Connection
from service.demo_model.formats import ChunkFormat, error_response
from service.demo_model.responses import http_fault, reply, stream
from service.demo_model.wire import JSON, HttpError, Request, fixed_response

_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS = {"object": "list", "data": [{"id": "demo", "object": "model", "created": 0, "owned_by": "demo"}]}
_MODELS_BODY = json.dumps(_MODELS).encode()


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
            chat = parse_chat(request, self._behaviour_for)
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
            finish_record(chat.record, completed=outcome == "completed", client_gone=outcome == "client_gone")

    async def _respond(self, conn: Connection, chat: Chat) -> bool:
        behaviour = chat.behaviour
        if behaviour.fault == "stall_before_headers":
            await asyncio.sleep(behaviour.stall)
        if behaviour.fault is not None and behaviour.fault.startswith("http_"):
            status, body, extra = http_fault(behaviour, chat.record)
            conn.write(fixed_response(status, JSON, body, chat.keep_alive, extra))
            await conn.drain()
            return chat.keep_alive
        self._completions += 1
        completion_id = f"chatcmpl-demo-{self._completions}"
        chunks = content_chunks(chat.record.prompt, behaviour)
        if not chat.record.stream:
            return await reply(conn, chat, completion_id, chunks)
        fmt = ChunkFormat(completion_id, int(time.time()), chat.record.model)
        return await stream(conn, chat, fmt, chunks)
