"""What one thread -> loop hand-off costs: `run_coroutine_threadsafe` against `call_soon_threadsafe`.

    python -m bench.handoff

`run_coroutine_threadsafe` is the hand-off the product's design names. Besides the task that runs
the coroutine, it builds a `concurrent.futures.Future` (with its own `threading.Condition`) and
chains the two with callbacks on both threads. The figures are CPU seconds of the whole process
(both threads) per hand-off, so the bridge's coalescing can be weighed against them.
"""

import asyncio
import threading
import time
from collections.abc import Callable

N = 50_000


async def _noop() -> None:
    return None


async def _measure(kind: str) -> float:
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    def spawn() -> None:
        task = loop.create_task(_noop())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    hand_off: Callable[[], object] = (
        (lambda: asyncio.run_coroutine_threadsafe(_noop(), loop))
        if kind == "run_coroutine_threadsafe"
        else (lambda: loop.call_soon_threadsafe(spawn))
    )

    def worker() -> None:
        for _ in range(N):
            hand_off()
        loop.call_soon_threadsafe(finished.set)

    started = time.process_time()
    thread = threading.Thread(target=worker)
    thread.start()
    await finished.wait()
    thread.join()
    await asyncio.sleep(0.05)  # let the last tasks run: they are part of the cost
    return (time.process_time() - started) / N * 1e6


def main() -> dict[str, float]:
    results = {kind: round(asyncio.run(_measure(kind)), 2) for kind in ("run_coroutine_threadsafe", "call_soon")}
    for kind, micros in results.items():
        print(f"{kind:26s} {micros:6.2f} us of CPU per hand-off")
    return results


if __name__ == "__main__":
    main()
