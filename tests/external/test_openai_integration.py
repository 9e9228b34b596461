"""Against the real OpenAI API: opt-in only (HAYSTREAM_INTEGRATION=1 and OPENAI_API_KEY); never in CI."""

import os

import pytest

from tests.conftest import LiveFactory
from tests.support.sse import parse_sse

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (os.environ.get("HAYSTREAM_INTEGRATION") == "1" and os.environ.get("OPENAI_API_KEY")),
        reason="set HAYSTREAM_INTEGRATION=1 and OPENAI_API_KEY to run against the real OpenAI API",
    ),
]


def test_a_real_openai_stream(live_service: LiveFactory) -> None:
    service = live_service(base_url="https://api.openai.com/v1", model="gpt-4o-mini")
    key = os.environ["OPENAI_API_KEY"]
    response = service.client.post("/chat", json={"query": "Say the word 'pong' and nothing else.", "api_key": key})
    events = parse_sse(response.text).events
    assert events[-1].event == "end", events[-1]
    assert "pong" in "".join(e.json() for e in events if e.event == "data").lower()
