"""A fresh process's first request: the start-up has already loaded and compiled what it needs.

Each run is a new interpreter, since the suite's own process has long imported everything."""

import json
import subprocess
import sys

from pipelines import SAMPLE_DOCUMENTS
from service.demo_model import DemoModelServer

FIRST_REQUEST = """
import asyncio, json, sys
import httpx
from pipelines.prompt import _compiled
from service.app import create_app
from service.settings import Settings

async def main() -> None:
    settings = Settings(base_url=sys.argv[1], model="demo", documents_dir=sys.argv[2])
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
            loaded, compiled = set(sys.modules), _compiled.cache_info().misses
            answers = [
                (await client.post("/chat", json={"query": "hi", "api_key": "sk-t", "pipeline": name})).status_code
                for name in ("chat", "documents")
            ]
    print(json.dumps({
        "answers": answers,
        "imported": sorted(set(sys.modules) - loaded),
        "compiled": _compiled.cache_info().misses - compiled,
    }))

asyncio.run(main())
"""


def test_a_fresh_process_first_request_imports_and_compiles_nothing(upstream_server: DemoModelServer) -> None:
    """Regression: the first answer after a start waited 0.3-1.8 s longer for its first token than later
    ones, importing the OpenAI SDK's resources and compiling templates on the way."""
    command = [sys.executable, "-c", FIRST_REQUEST, upstream_server.base_url, str(SAMPLE_DOCUMENTS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["answers"] == [200, 200]
    assert result["imported"] == []
    assert result["compiled"] == 0
