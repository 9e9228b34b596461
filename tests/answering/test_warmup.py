"""The start-up's warm-up (service/answering/warmup.py): done without the upstream, never fatal."""

import logging

import httpx
import pytest

from pipelines import SAMPLE_DOCUMENTS
from pipelines.chat import CHAT_TEMPLATE
from pipelines.documents import DOCUMENTS_TEMPLATE
from pipelines.prompt import _compiled
from service.answering import warmup
from service.app import create_app
from service.demo_model import DemoModelServer
from tests.conftest import SettingsFactory
from tests.support.servers import asgi_client_for


async def test_start_up_builds_each_pipeline_without_calling_the_upstream(
    upstream_server: DemoModelServer, make_settings: SettingsFactory
) -> None:
    _compiled.cache_clear()
    settings = make_settings(base_url=upstream_server.base_url, model="demo", documents_dir=SAMPLE_DOCUMENTS)
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_client_for(app) as client:
        misses = _compiled.cache_info().misses
        _compiled(CHAT_TEMPLATE), _compiled(DOCUMENTS_TEMPLATE)
        assert _compiled.cache_info().misses == misses  # both compiled already, by the start-up
        assert upstream_server.requests == []
        metrics = (await client.get("/metrics")).text
    assert 'haystream_streams_total{outcome="completed"} 0.0' in metrics


async def test_a_failing_warm_up_is_logged_and_the_service_starts_anyway(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(warmup, "_canned", lambda request: httpx.Response(500, json={"error": "broken"}))
    app = create_app(make_settings())
    with caplog.at_level(logging.INFO, logger="service.answering.warmup"):
        async with app.router.lifespan_context(app), asgi_client_for(app) as client:
            assert (await client.get("/readyz")).status_code == 200
    assert [record.getMessage() for record in caplog.records] == ["warm-up failed; the first requests may be slower"]
