"""OpenTelemetry traces: off unless the standard `OTEL_*` environment asks for them.

On when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and `OTEL_SDK_DISABLED` is
not `true`. Everything else is the SDK's own reading of its environment: the resource
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; `haystream` when unnamed), the sampler
(`OTEL_TRACES_SAMPLER`), the batch processor (`OTEL_BSP_*`) and the OTLP/HTTP exporter (endpoint,
headers, timeout, compression). The packages are the optional extra `otel`; without them, or off,
a run costs nothing here: `NO_TRACE` is a do-nothing object, and nothing of the SDK is imported.

Spans: the HTTP request (FastAPI's instrumentation, set up at the edge by `service/http/tracing.py`,
without a span per ASGI `send`/`receive`, so not one per streamed chunk), under it one span per
run following the GenAI semantic conventions (`gen_ai.operation.name`, `gen_ai.request.model`,
`gen_ai.response.finish_reasons`, `gen_ai.usage.*`, a `gen_ai.first_token` event,
`haystream.run_id`), and under that Haystack's
pipeline and component spans through its `OpenTelemetryTracer`. A resumed read is a span of its
own that links to the run's.

Never the key, the question or the answer, unless the operator opts in with
`HAYSTREAM_TRACE_CONTENT`: Haystack's content tags follow that setting (not Haystack's own variable),
and its pipeline span's input and output data tags, which it sets whatever that switch says, are
dropped without it. Request headers are only captured if the operator lists them in OpenTelemetry's
own variables, and `authorization` and anything named like a key are always redacted then
(`sanitized_headers`).
"""

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from haystack.tracing.tracer import Span as HaystackSpan
from haystack.tracing.tracer import Tracer as HaystackTracer
from haystack.tracing.tracer import disable_tracing, enable_tracing
from haystack.tracing.tracer import tracer as haystack_tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger("service.ops.tracing")

EXPORTERS = ("otlp", "console")
SANITIZED_HEADERS = ["authorization", "proxy-authorization", "cookie", ".*key.*", ".*token.*", ".*secret.*"]
# Haystack's pipeline span tags that hold the inputs and outputs whatever its content switch says.
_HAYSTACK_CONTENT_TAGS = frozenset({"haystack.pipeline.input_data", "haystack.pipeline.output_data"})


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as its span records it. `ttft` and `duration` are seconds from its start."""

    outcome: str
    chunks: int
    ttft: float | None
    duration: float
    finish_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    error_type: str | None = None
    reply: str | None = None  # recorded only with content tracing


class RunTrace:
    """A run's span: made current while the run is prepared and started, ended when it ends.
    This base class is the do-nothing one every run has when tracing is off."""

    def current(self) -> AbstractContextManager[object]:
        return nullcontext()

    def end(self, outcome: RunOutcome) -> None:
        return None

    def read(self, run_id: str) -> Callable[[], None]:
        """A resumed read of the run: returns what ends its span."""
        return _nothing


def _nothing() -> None:
    return None


NO_TRACE = RunTrace()


def tracing_requested(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()}
    if exporters - {"none"}:
        return True
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return "none" not in exporters and any(environ.get(name) for name in endpoints)


class Tracing:
    """Built once per app; `Tracing()` is off. `from_env` reads the standard variables."""

    def __init__(self, provider: "TracerProvider | None" = None, *, trace_content: bool = False) -> None:
        self.provider = provider
        self.trace_content = trace_content
        self._tracer: Tracer | None = provider.get_tracer("haystream") if provider is not None else None

    @classmethod
    def from_env(cls, *, trace_content: bool = False, environ: Mapping[str, str] = os.environ) -> "Tracing":
        if not tracing_requested(environ):
            return cls()
        exporters = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
        try:
            import opentelemetry.sdk  # noqa: F401
        except ImportError:
            raise RuntimeError("OTEL_* asks for traces, but the `otel` extra is not installed") from None
        return cls.with_exporters([_exporter(name) for name in exporters if name in EXPORTERS], trace_content)

    @classmethod
    def with_exporters(
        cls, exporters: "list[SpanExporter]", trace_content: bool = False, batch: bool = True
    ) -> "Tracing":
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "haystream"}))
        provider = TracerProvider(resource=resource)
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
        return cls(provider, trace_content=trace_content)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start(self) -> None:
        """Haystack's spans, under whatever span is current (the run's): from the app's start to its stop."""
        if self.provider is not None:
            _enable_haystack(self.provider, self.trace_content)

    def start_run(self, run_id: str, *, model: str, pipeline: str, base_url: str | None, **request: object) -> RunTrace:
        if self._tracer is None:
            return NO_TRACE
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "haystream.run_id": run_id,
            "haystream.pipeline": pipeline,
        }
        if base_url and (host := urlsplit(base_url).hostname):
            attributes["server.address"] = host
        for name in ("temperature", "max_tokens"):
            if request.get(name) is not None:
                attributes[f"gen_ai.request.{name}"] = request[name]
        span = self._tracer.start_span(f"chat {model}", attributes=attributes)
        query = request.get("query")
        if self.trace_content and isinstance(query, str):
            span.set_attribute("gen_ai.input.messages", _messages("user", query))
        return _SpanTrace(self._tracer, span, self.trace_content)

    def shutdown(self) -> None:
        if self.provider is not None:
            _disable_haystack()
            self.provider.shutdown()


class _SpanTrace(RunTrace):
    def __init__(self, tracer: "Tracer", span: "Span", content: bool) -> None:
        self._tracer = tracer
        self.span = span
        self._content = content
        self._started = time.time_ns()

    def current(self) -> AbstractContextManager[object]:
        from opentelemetry.trace import use_span

        return use_span(self.span, end_on_exit=False)

    def end(self, outcome: RunOutcome) -> None:
        span = self.span
        span.set_attribute("haystream.outcome", outcome.outcome)
        span.set_attribute("haystream.chunks", outcome.chunks)
        if outcome.ttft is not None:
            at = self._started + int(outcome.ttft * 1e9)
            span.add_event("gen_ai.first_token", {"haystream.ttft_ms": round(outcome.ttft * 1000, 1)}, timestamp=at)
        if outcome.finish_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [outcome.finish_reason])
        usage = outcome.usage or {}
        for key, name in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")):
            if isinstance(usage.get(key), int):
                span.set_attribute(f"gen_ai.usage.{name}", usage[key])
        if self._content and outcome.reply is not None:
            span.set_attribute("gen_ai.output.messages", _messages("assistant", outcome.reply))
        if outcome.error_type is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", outcome.error_type)
            span.set_status(Status(StatusCode.ERROR, outcome.error_type))
        span.end(self._started + int(outcome.duration * 1e9))

    def read(self, run_id: str) -> Callable[[], None]:
        from opentelemetry.trace import Link

        links = [Link(self.span.get_span_context())]
        span = self._tracer.start_span("haystream.read", attributes={"haystream.run_id": run_id}, links=links)
        return span.end


def _messages(role: str, text: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}], ensure_ascii=False)


def sanitized_headers(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Header names (regexes) redacted when the operator asks for headers in the request spans."""
    listed = environ.get("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", "")
    return [*SANITIZED_HEADERS, *(item.strip() for item in listed.split(",") if item.strip())]


def _exporter(name: str) -> "SpanExporter":
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol not in (None, "", "http/protobuf"):
        logger.warning("only OTLP over http/protobuf is supported; using it", extra={"protocol": protocol})
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _enable_haystack(provider: "TracerProvider", content: bool) -> None:
    from haystack.tracing.opentelemetry import OpenTelemetryTracer

    with warnings.catch_warnings():  # its move to another package in Haystack 3 is announced on every construction
        warnings.simplefilter("ignore", FutureWarning)
        inner = OpenTelemetryTracer(provider.get_tracer("haystack"))
    haystack_tracer.is_content_tracing_enabled = content
    enable_tracing(ContentSafeTracer(inner, content))


def _disable_haystack() -> None:
    disable_tracing()
    haystack_tracer.is_content_tracing_enabled = False


class ContentSafeTracer(HaystackTracer):
    """Haystack's OpenTelemetry tracer, minus the pipeline's input and output data unless content is traced."""

    def __init__(self, inner: HaystackTracer, content: bool) -> None:
        self._inner = inner
        self._content = content

    @contextmanager
    def trace(
        self, operation_name: str, tags: dict[str, Any] | None = None, parent_span: HaystackSpan | None = None
    ) -> Iterator[HaystackSpan]:
        if tags and not self._content:
            tags = {key: value for key, value in tags.items() if key not in _HAYSTACK_CONTENT_TAGS}
        with self._inner.trace(operation_name, tags=tags, parent_span=parent_span) as span:
            yield span

    def current_span(self) -> HaystackSpan | None:
        return self._inner.current_span()
