"""Tracing switched on the standard way: `python -m service` with only OTEL_* variables set sends
its spans over OTLP/HTTP (protobuf) to the collector they name (here a local stand-in that decodes them)."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.servers import run_service_process
from tests.support.waiting import wait_until

KEY = "sk-otlp-SENTINEL-2f8e1d"
QUESTION = "Do my spans reach the collector?"


class Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.exports: list[tuple[str, bytes]] = []  # (path, body)

    def spans(self) -> dict[str, dict[str, object]]:
        """Span name -> its attributes (the last span of each name), and the resource's under `resource`."""
        found: dict[str, dict[str, object]] = {}
        for _, body in self.exports:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                found["resource"] = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        found[span.name] = {a.key: _value(a.value) for a in span.attributes}
        return found


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind != "array_value" else [_value(v) for v in value.array_value.values]  # type: ignore[attr-defined]


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.exports.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_otel_variables_alone_send_the_spans_over_otlp(tmp_path: Path) -> None:
    with collector() as otlp:
        env = {
            "HAYSTREAM_DEMO_TOKEN_DELAY": "0",
            "HAYSTREAM_DEMO_FIRST_TOKEN_DELAY": "0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp.server_address[1]}",
            "OTEL_SERVICE_NAME": "haystream-otlp-test",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        with run_service_process("--demo", env=env, log_dir=tmp_path) as service:
            body = {"model": "haystream-chat", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
            headers = {"authorization": f"Bearer {KEY}"}
            response = httpx.post(f"{service.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
            assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
            wait_until(lambda: "chat demo" in otlp.spans(), 10, "the run's span at the collector")
        spans = otlp.spans()
    assert {path for path, _ in otlp.exports} == {"/v1/traces"}
    assert spans["resource"]["service.name"] == "haystream-otlp-test"
    assert spans["chat demo"]["gen_ai.operation.name"] == "chat"
    assert spans["chat demo"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert "haystack.component.run" in spans and "POST /v1/chat/completions" in spans
    everything = b"".join(body for _, body in otlp.exports)
    assert KEY.encode() not in everything and QUESTION.encode() not in everything
