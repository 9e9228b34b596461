"""A built-in local model server speaking OpenAI's chat-completions protocol.

It exists so the service runs offline out of the box (``--demo``) and so tests and the
benchmark have a real upstream socket with knobs (answer length, pacing) and fault
injection (HTTP errors, resets, malformed or truncated streams, stalls). It imports
nothing from the rest of the project (``tests/demo_model/test_imports.py`` checks), and
``python -m service.demo_model`` serves it on its own.

Modules, outermost first: ``server`` (``DemoModelServer``: routes, each request's
lifecycle), ``responses`` (a stream, a JSON body, an HTTP-error fault), ``output`` (the
batching writer), ``chat_request`` (a request parsed, ``RequestRecord``), ``behaviour``
(knobs, faults, prompt directives), ``answer_text`` (what text is answered), ``formats``
(OpenAI's JSON and SSE chunks), ``connection`` and ``wire`` (HTTP/1.1 over asyncio streams).
Each module's docstring records its deliberate decisions.
"""

from service.demo_model.answer_text import answer_tokens, expected_text, large_chunk_text
from service.demo_model.behaviour import FAULTS, Behaviour, prompt_behaviour
from service.demo_model.chat_request import RequestRecord
from service.demo_model.server import DemoModelServer

__all__ = [
    "FAULTS",
    "Behaviour",
    "DemoModelServer",
    "RequestRecord",
    "answer_tokens",
    "expected_text",
    "large_chunk_text",
    "prompt_behaviour",
]
