"""Haystack pipeline builders, made from plain arguments so they can be used without the web service.

Haystack sends usage telemetry unless told not to. A proxy that carries users' questions must not
phone home, so it is off here unless the operator sets HAYSTACK_TELEMETRY_ENABLED=true. This has to
happen before the first `import haystack`, which is why it sits in the package's `__init__`.
"""

import os
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

SAMPLE_DOCUMENTS = Path(__file__).parent / "sample_docs"  # a few short files on distinct topics, for the demo
