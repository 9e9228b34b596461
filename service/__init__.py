"""haystream: streams LLM answers from a per-request Haystack AsyncPipeline as Server-Sent Events.

`pipelines` is imported first, before any module here can import haystack: its `__init__` turns
Haystack's usage telemetry off, which only works before haystack's first import.
"""

import pipelines  # noqa: F401
