"""What a conversation on Redis costs, and why the service reads it on the loop rather than on a thread.

    python -m bench.conversations [--redis-url redis://127.0.0.1:6379/15]

Without `--redis-url` it starts Debian's `redis-server` on a free loopback port (nothing on disk).
Two measurements:

- a Redis call (`GET` of 4 KB) through a worker thread (the sync client, `run_in_executor`) against
  the same call with `redis.asyncio` on the loop, idle and then with 8 threads and 100 loop tasks
  busy, as streaming threads and readers keep a loaded process;
- `Conversations.open` (a follow-up's history of 40 messages, before its first token) and
  `record_turn` (before its `end`), with the memory store and with the loop's Redis store.

Medians and tails in milliseconds; run both sides in one run on a quiet machine to compare.
"""

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import redis
import redis.asyncio as aredis

from service.answering.conversations import Conversations
from service.store.conversations import InPlace, MemoryConversationStore
from service.store.redis_loop_conversations import LoopRedisConversationStore

Figures = dict[str, float]


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="bench-redis-")
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        directory,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.01)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(directory, ignore_errors=True)


async def timed(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.001)
    return sorted(times)


def summary(name: str, times: list[float]) -> Figures:
    median, p99 = statistics.median(times) * 1e3, times[int(len(times) * 0.99)] * 1e3
    print(f"{name:52s} median {median:6.2f} ms  p99 {p99:6.2f} ms")
    return {f"{name} median": round(median, 3), f"{name} p99": round(p99, 3)}


def _burn(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(2000))  # Python work holding the GIL, as a streaming thread's
        time.sleep(0.002)


async def _spin(stop: asyncio.Event) -> None:
    while not stop.is_set():
        sum(range(300))
        await asyncio.sleep(0.001)


async def hop(url: str, threads: int, tasks: int, n: int) -> Figures:
    sync, on_loop, pool = redis.Redis.from_url(url), aredis.Redis.from_url(url), ThreadPoolExecutor(4)
    sync.set("bench:k", "x" * 4096)
    loop, stop, spin_stop = asyncio.get_running_loop(), threading.Event(), asyncio.Event()
    burners = [threading.Thread(target=_burn, args=(stop,)) for _ in range(threads)]
    for burner in burners:
        burner.start()
    spinners = [asyncio.create_task(_spin(spin_stop)) for _ in range(tasks)]
    load = f"{threads} busy threads, {tasks} busy tasks"
    try:
        figures = summary(
            f"GET via a thread ({load})", await timed(lambda: loop.run_in_executor(pool, sync.get, "bench:k"), n)
        )
        figures |= summary(f"GET on the loop ({load})", await timed(lambda: on_loop.get("bench:k"), n))
    finally:
        stop.set()
        spin_stop.set()
        for burner in burners:
            burner.join()
        await asyncio.gather(*spinners)
        await on_loop.aclose()
        sync.close()
        pool.shutdown()
    return figures


async def conversation(name: str, conversations: Conversations, n: int) -> Figures:
    started = await conversations.open("new")
    for i in range(20):  # a full conversation: 40 messages
        await conversations.record_turn(started.id, f"question {i} " * 5, f"answer {i} " * 40)
    figures = summary(f"{name}: open, 40 messages", await timed(lambda: conversations.open(started.id), n))
    record = await timed(lambda: conversations.record_turn(started.id, "a question " * 5, "an answer " * 40), n)
    figures |= summary(f"{name}: record_turn (and trim to 40)", record)
    await conversations.close()
    return figures


async def measure(url: str, n: int) -> Figures:
    figures = await hop(url, 0, 0, n)
    figures |= await hop(url, 8, 100, n)
    memory = Conversations(InPlace(MemoryConversationStore(1000, 40)))
    figures |= await conversation("memory://", memory, n)
    on_redis = Conversations(LoopRedisConversationStore(url, ttl=60, max_messages=40))
    figures |= await conversation("redis", on_redis, n)
    return figures


def main(url: str | None = None, n: int = 500) -> Figures:
    if url is not None:
        return asyncio.run(measure(url, n))
    with redis_server() as started:
        return asyncio.run(measure(started, n))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", help="a Redis to use (its bench:k key is overwritten)")
    parser.add_argument("-n", type=int, default=500, help="calls per figure")
    arguments = parser.parse_args()
    main(arguments.redis_url, arguments.n)
