"""The garbage collector's settings for a long-running streaming process.

CPython's full (generation 2) collection walks every tracked object that is alive: the imported
libraries (Haystack, the OpenAI SDK, pydantic, FastAPI) and every live stream's chunks. It holds the
GIL while it does, so every stream stalls at once. With the default thresholds, 100 streams of a
token every 20 ms brought one every few seconds, each up to 250 ms long, and the gap between tokens
p99 went from 26 ms to 260 ms (bench/README.md). Two changes, once the app is built:

- freeze what exists by then (modules, classes, the app): full collections never walk it again;
- a full collection after 100 generation-1 collections instead of 10, so cyclic garbage is still
  reclaimed (every few tens of seconds under load) but stalls are rare and shorter.

Reference counting frees everything else as before; only objects in reference cycles wait.
"""

import gc

FULL_COLLECTION_EVERY = 100  # generation-1 collections between full ones (CPython's default: 10)


def settle_heap() -> None:
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
