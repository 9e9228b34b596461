"""Fixtures of the demo model's tests: a fast server on a thread, and an OpenAI client for it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from service.demo_model import DemoModelServer
from tests.demo_model.support import KEY, fast


@pytest.fixture
def server() -> Iterator[DemoModelServer]:
    with DemoModelServer(behaviour=fast()) as srv:
        yield srv


@pytest.fixture
def client(server: DemoModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=10) as sdk:
        yield sdk
