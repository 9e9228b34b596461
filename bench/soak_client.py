"""The soak run's client: what each request asks for, how it reads the stream, and what it expects.

A request's behaviour upstream is chosen by a `[[demo ...]]` directive in its query (the demo model
runs with `--directives`), so one service process sees every kind mixed together. The reader splits
SSE frames and keeps event names, the text, the `end` event's chunk count and the `error` type: it
has to keep up with thousands of streams on a machine it shares with the service. A `data` event can
carry several upstream chunks (a backlog is joined), so answers are checked by their text.
"""

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

KEY = "sk-soak-not-a-real-key"


@dataclass(frozen=True)
class Plan:
    kind: str  # normal, disconnect, fault:<name>, hold, extra
    query: str
    expect_status: int = 200
    expect_end: bool = True  # `end` (True) or `error` (False), when the stream is read to the end
    expect_error: str | None = None
    expect_chunks: int | None = None  # upstream chunks, as `end` counts them; the text is tok0 .. tokN-1
    leave_after: int | None = None  # walk away after this many data events
    hold: bool = False  # walk away after `metadata`, once released


# (fault, directive extras, expected error type or None for a normal `end`)
FAULTS: tuple[tuple[str, str, str | None], ...] = (
    ("http_500", "", "upstream_unavailable"),
    ("http_429", "", "rate_limited"),
    ("http_401", "", "upstream_auth"),
    ("reset", "fault_after=2", "upstream_unavailable"),
    ("malformed", "fault_after=2", "upstream_malformed"),
    ("close_mid", "fault_after=2", "upstream_unavailable"),
    ("no_done", "", None),
    ("empty_chunk", "fault_after=2", None),
    ("stall_mid", "fault_after=2 stall=0.2", None),
)


def mixed_plan(n: int, tokens: int) -> Plan:
    """Of every 20 requests: 14 normal answers, 3 clients walking away mid-stream, 3 upstream faults."""
    slot = n % 20
    if slot < 14:
        return Plan("normal", f"soak question {n}", expect_chunks=tokens)
    if slot < 17:
        query = f"[[demo tokens=400 token_delay=0.01 first_token_delay=0]] soak walk-away {n}"
        return Plan("disconnect", query, leave_after=1 + n % 4)
    fault, extras, error = FAULTS[(n // 20 * 3 + slot - 17) % len(FAULTS)]
    query = f"[[demo fault={fault} {extras}]] soak fault {n}"
    chunks = tokens if error is None else None
    return Plan(f"fault:{fault}", query, expect_end=error is None, expect_error=error, expect_chunks=chunks)


def hold_plan(n: int) -> Plan:
    return Plan("hold", f"[[demo first_token_delay=120]] soak hold {n}", hold=True)


def extra_plan(n: int) -> Plan:
    return Plan("extra", f"soak over capacity {n}", expect_status=503)


@dataclass
class Result:
    plan: Plan
    status: int = 0
    retry_after: str | None = None
    data: int = 0  # data events
    text: str = ""
    last_event: str | None = None
    error_type: str | None = None
    end_chunks: int | None = None
    ttft: float | None = None
    elapsed: float = 0.0
    failure: str | None = None  # an exception on the client side

    def problem(self) -> str | None:
        """What differs from the plan, or None."""
        plan = self.plan
        if self.failure is not None:
            return f"client error {self.failure}"
        if self.status != plan.expect_status:
            return f"status {self.status}, expected {plan.expect_status}"
        if plan.expect_status == 503:
            return None if self.retry_after else "503 without Retry-After"
        if plan.hold or plan.leave_after is not None:
            wanted = "metadata" if plan.hold else "data"
            return None if self.last_event == wanted else f"left after {self.last_event}, expected {wanted}"
        if plan.expect_end:
            if self.last_event != "end":
                return f"ended with {self.last_event}, expected end"
            if plan.expect_chunks is not None:
                if self.text != "".join(f"tok{i} " for i in range(plan.expect_chunks)):
                    return f"text {self.text[:40]!r}... is not the {plan.expect_chunks}-token answer"
                if self.end_chunks != plan.expect_chunks:
                    return f"end says {self.end_chunks} chunks, expected {plan.expect_chunks}"
            return None
        if self.last_event != "error" or self.error_type != plan.expect_error:
            return f"ended with {self.last_event} {self.error_type}, expected error {plan.expect_error}"
        return None


async def send(
    client: httpx.AsyncClient,
    plan: Plan,
    release: asyncio.Event | None = None,
    on_admitted: Callable[[], None] | None = None,
) -> Result:
    result = Result(plan)
    started = time.perf_counter()
    try:
        async with client.stream("POST", "/chat", json={"query": plan.query, "api_key": KEY}) as response:
            result.status = response.status_code
            result.retry_after = response.headers.get("retry-after")
            if response.status_code == 200:
                await _read(response, result, started, release, on_admitted)
            else:
                await response.aread()
    except httpx.HTTPError as error:
        result.failure = type(error).__name__
    result.elapsed = time.perf_counter() - started
    return result


async def _read(
    response: httpx.Response,
    result: Result,
    started: float,
    release: asyncio.Event | None,
    on_admitted: Callable[[], None] | None,
) -> None:
    """Read events until the stream ends or the plan walks away (leaving closes the connection)."""
    plan, buffer = result.plan, ""
    async for text in response.aiter_text():
        buffer += text
        *frames, buffer = buffer.split("\n\n")
        for frame in frames:
            name, data = _event(frame)
            if name is None:
                continue  # a keep-alive comment
            result.last_event = name
            if name == "data":
                result.data += 1
                result.text += json.loads(data)
                result.ttft = result.ttft or time.perf_counter() - started
            elif name == "end":
                result.end_chunks = json.loads(data)["chunks"]
            elif name == "error":
                result.error_type = json.loads(data)["type"]
            if plan.hold and name == "metadata" and release is not None:
                if on_admitted is not None:
                    on_admitted()
                await release.wait()
                return
            if plan.leave_after is not None and result.data >= plan.leave_after:
                return


def _event(frame: str) -> tuple[str | None, str]:
    name, data = None, ""
    for line in frame.split("\n"):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
    return name, data
