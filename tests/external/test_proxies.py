"""The egress proxy: the upstream pool honours HTTP(S)_PROXY, ALL_PROXY and NO_PROXY as httpx does.

The choice is checked on its own from the environment, then for real: the service's upstream
requests go through Debian's tinyproxy on loopback (its log names each request), or, with NO_PROXY
naming the upstream, around it. The https case through a CONNECT tunnel is in tests/upstream/test_http11.py.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.demo_model import DemoModelServer
from service.upstream.proxies import ProxyRoutes
from tests.conftest import SettingsFactory
from tests.support.servers import run_server
from tests.support.sse import parse_sse, text_of
from tests.support.tinyproxy import Tinyproxy, run_tinyproxy, without_proxy_variables


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    without_proxy_variables(monkeypatch)
    return monkeypatch


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    with run_tinyproxy(tmp_path) as proxy:
        yield proxy


def chosen(url: str) -> str | None:
    proxy = ProxyRoutes.from_environment().for_url(httpx.URL(url))
    return None if proxy is None else f"{proxy.host}:{proxy.port}"


def test_the_environment_chooses_a_proxy_per_scheme_and_no_proxy_wins(no_proxy_env: pytest.MonkeyPatch) -> None:
    assert chosen("https://api.openai.com/v1") is None
    no_proxy_env.setenv("https_proxy", "http://egress:3128")  # lowercase, as curl and urllib read it too
    no_proxy_env.setenv("HTTP_PROXY", "plain:8080")  # no scheme: http://, as httpx reads it
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1, .internal,localhost")
    assert chosen("https://api.openai.com/v1") == "egress:3128"
    assert chosen("http://vllm:8000/v1") == "plain:8080"
    assert chosen("http://127.0.0.1:8001/v1") is None
    assert chosen("https://llm.internal/v1") is None
    assert chosen("http://localhost:11434/v1") is None
    no_proxy_env.setenv("ALL_PROXY", "http://all:3128")
    no_proxy_env.delenv("HTTP_PROXY")
    assert chosen("http://vllm:8000/v1") == "all:3128"
    assert chosen("https://api.openai.com/v1") == "egress:3128"  # the scheme's own wins over ALL_PROXY


def test_proxy_credentials_become_a_header_and_never_its_repr(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", "http://user:s3cret@egress:3128")
    proxy = ProxyRoutes.from_environment().for_url(httpx.URL("https://api.openai.com/v1"))
    assert proxy is not None
    assert proxy.headers == {"Proxy-Authorization": "Basic dXNlcjpzM2NyZXQ="}
    assert "s3cret" not in repr(proxy)


@pytest.mark.parametrize("url", ["socks5://egress:1080", "https://egress:3128"])
def test_a_proxy_the_pool_cannot_use_is_refused_not_bypassed(no_proxy_env: pytest.MonkeyPatch, url: str) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", url)
    with pytest.raises(ValueError, match="only http:// proxies"):
        ProxyRoutes.from_environment()


def ask(make_settings: SettingsFactory, upstream: DemoModelServer) -> str:
    """One POST /chat through a service started now (the pool reads the environment at start-up)."""
    app = create_app(make_settings(base_url=upstream.base_url, model="demo"))
    # The test's own client ignores the proxy variables: only the service's upstream traffic is under test.
    with run_server(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        response = client.post("/chat", json={"query": "through the proxy?", "api_key": "sk-proxy"})
    events = parse_sse(response.text).events
    assert events[-1].event == "end", response.text
    return text_of(events)


def test_upstream_requests_go_through_http_proxy(
    no_proxy_env: pytest.MonkeyPatch,
    tinyproxy: Tinyproxy,
    make_settings: SettingsFactory,
    upstream_server: DemoModelServer,
) -> None:
    """Regression: the shared pool connected directly, whatever HTTP(S)_PROXY said."""
    no_proxy_env.setenv("HTTP_PROXY", tinyproxy.url)
    assert ask(make_settings, upstream_server)
    target = f"{upstream_server.base_url}/chat/completions"
    assert f"POST {target} HTTP/1.1" in tinyproxy.requests()  # absolute-form, as a proxy expects
    assert upstream_server.requests[-1].api_key == "sk-proxy"


def test_no_proxy_naming_the_upstream_bypasses_the_proxy(
    no_proxy_env: pytest.MonkeyPatch,
    tinyproxy: Tinyproxy,
    make_settings: SettingsFactory,
    upstream_server: DemoModelServer,
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", tinyproxy.url)
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    assert ask(make_settings, upstream_server)
    assert tinyproxy.requests() == []
    assert len(upstream_server.requests) == 1
