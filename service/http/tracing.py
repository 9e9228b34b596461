"""The HTTP request spans: OpenTelemetry's FastAPI instrumentation, when tracing is on.

Set up when the app is built (middleware cannot be added once it runs), outermost, so a request's
span covers the middleware's own refusals too. Without the ASGI `send` and `receive` spans (as
hayhooks does): a streamed answer is one span, not one per chunk. Headers are only captured if the
operator lists them in OpenTelemetry's own variables, and the key's are always redacted then
(`service/ops/tracing.py` `sanitized_headers`).
"""

from fastapi import FastAPI

from service.ops.tracing import Tracing, sanitized_headers


def instrument(app: FastAPI, tracing: Tracing) -> None:
    if tracing.provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracing.provider,
        exclude_spans=["send", "receive"],
        http_capture_headers_sanitize_fields=sanitized_headers(),
    )
