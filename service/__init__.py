"""The haystream web service.

`pipelines` is imported first because its `__init__` turns Haystack's usage telemetry off (unless
the operator turned it on), which must happen before the first `import haystack`; modules here
(`service.runs`) import haystack before anything reaches `pipelines`.
"""

import pipelines  # noqa: F401
