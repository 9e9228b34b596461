"""The web service. Importing it first imports `pipelines`, which turns Haystack's telemetry off
before any module here imports haystack (see pipelines/__init__.py)."""

import pipelines  # noqa: F401
