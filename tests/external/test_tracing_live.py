"""With tracing on, the service under uvicorn still notices a client leaving (OpenTelemetry's ASGI
middleware wraps `receive` and `send`): the upstream is closed and the run's span says `client_gone`."""

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer
from service.ops.tracing import Tracing
from tests.conftest import SettingsFactory
from tests.support.servers import run_server
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

KEY = "sk-tracing-live-SENTINEL-77aa"


def test_a_client_leaving_a_traced_stream_still_closes_the_upstream(
    make_settings: SettingsFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=200, first_token_delay=0, token_delay=0.05)
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_exporters([exporter], batch=False)
    app = create_app(make_settings(base_url=upstream_server.base_url, model="demo"), tracing)
    body = {"model": "haystream-chat", "messages": [{"role": "user", "content": "Leave early"}], "stream": True}
    with run_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        stream = LiveStream(client, body, {"authorization": f"Bearer {KEY}"}, url="/v1/chat/completions")
        assert all(stream.next_event() is not None for _ in range(3))
        stream.close()
        (record,) = upstream_server.wait_for_requests(1)
        assert record.closed.wait(5), "the upstream stayed open after the client left"
        assert record.client_gone and record.tokens_sent < 100
        wait_until(lambda: any(span.name == "chat demo" for span in exporter.get_finished_spans()), 5, "the run span")
    (run,) = [span for span in exporter.get_finished_spans() if span.name == "chat demo"]
    assert dict(run.attributes or {})["haystream.outcome"] == "client_gone"
