"""The service behind a real nginx running the reference config, `deploy/nginx.conf`.

Each test renders that file (tests/support/nginx.py) and puts it in front of a live service and the local
OpenAI-protocol upstream. Orderings are checked against the upstream's own record (how many tokens
it had sent, whether its client left), never against the clock.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer, expected_text
from tests.conftest import LiveService, SettingsFactory
from tests.ops.test_metrics import parse, value
from tests.support.nginx import AS_SHIPPED, Tweaks, nginx_in_front
from tests.support.servers import run_server
from tests.support.sse import SSEParser, text_of
from tests.support.streams import LiveStream
from tests.support.waiting import wait_until

QUERY = "What is streaming?"
BODY = {"query": QUERY, "api_key": "sk-nginx-SENTINEL-77a1"}
NEVER = 30.0  # a first-token delay no test waits out: the upstream has sent nothing while it lasts

Proxied = tuple[LiveService, httpx.Client]
ProxyFactory = Callable[..., Proxied]


@pytest.fixture
def behind_nginx(upstream_server: DemoModelServer, make_settings: SettingsFactory) -> Iterator[ProxyFactory]:
    """Start the service and nginx in front of it; returns the service and a client for nginx.

    `http` picks uvicorn's HTTP implementation: "auto" is what `python -m service` runs (httptools).
    """
    with ExitStack() as stack:

        def start(tweaks: Tweaks = AS_SHIPPED, http: str = "auto", **settings: object) -> Proxied:
            app = create_app(make_settings(**({"base_url": upstream_server.base_url, "model": "demo"} | settings)))
            service_url = stack.enter_context(run_server(app, http=http))
            service = LiveService(service_url, app, stack.enter_context(httpx.Client(base_url=service_url)))
            url = stack.enter_context(nginx_in_front(service.url, tweaks))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=httpx.Timeout(10.0)))
            return service, client

        yield start


def read_all(client: httpx.Client) -> tuple[SSEParser, bool]:
    """Every event and comment of one answer, and whether the body arrived complete."""
    parser = SSEParser()
    with client.stream("POST", "/chat", json=BODY) as response:
        assert response.status_code == 200
        try:
            for text in response.iter_text():
                parser.feed(text)
        except httpx.RemoteProtocolError:  # the proxy cut the chunked body short
            return parser, False
    return parser, True


def test_the_answer_streams_through_nginx_exactly(behind_nginx: ProxyFactory, upstream_server: DemoModelServer) -> None:
    _, client = behind_nginx()
    with client.stream("POST", "/chat", json=BODY) as response:
        assert response.headers["content-type"] == "text/event-stream"
        parser = SSEParser()
        for text in response.iter_text():
            parser.feed(text)
    names = [event.event for event in parser.events]
    assert names[0] == "metadata" and names[-1] == "end"
    assert text_of(parser.events) == expected_text(QUERY, upstream_server.behaviour)


def test_the_first_event_passes_nginx_before_the_upstream_sends_a_token(
    behind_nginx: ProxyFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(first_token_delay=NEVER)
    _, client = behind_nginx()
    with LiveStream(client, BODY) as stream:
        first = stream.next_event()  # were it held, this would wait out the client's 10 s timeout
        assert first is not None and first.event == "metadata"
        (record,) = upstream_server.wait_for_requests(1)
        assert record.tokens_sent == 0 and not record.closed.is_set()


def test_keepalive_comments_carry_a_slow_first_token_past_nginx_read_timeout(
    behind_nginx: ProxyFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=2.5, token_delay=0)
    _, client = behind_nginx(Tweaks(read_timeout="1s"), keepalive_interval=0.3)
    parser, complete = read_all(client)
    assert complete, parser.log
    assert parser.log[0] == "event:metadata" and parser.log[-1] == "event:end", parser.log
    assert "comment:keep-alive" in parser.log[1 : parser.log.index("event:data")], parser.log
    assert text_of(parser.events) == expected_text(QUERY, upstream_server.behaviour)


def test_without_keepalives_nginx_cuts_a_slow_first_token_and_the_run_is_cancelled(
    behind_nginx: ProxyFactory, upstream_server: DemoModelServer
) -> None:
    """The control for the test above: the same read timeout, with keep-alives too rare to matter."""
    upstream_server.behaviour = Behaviour(tokens=3, first_token_delay=NEVER, token_delay=0)
    service, client = behind_nginx(Tweaks(read_timeout="1s"), keepalive_interval=30)
    parser, complete = read_all(client)
    assert not complete
    assert [event.event for event in parser.events] == ["metadata"]
    (record,) = upstream_server.wait_for_requests(1)
    assert record.closed.wait(5), "nginx's timeout did not reach the upstream"
    assert record.client_gone and record.tokens_sent == 0
    wait_until(lambda: service.state.admission.active == 0, message="the run to be released")


def test_a_client_leaving_nginx_cancels_the_run_upstream(
    behind_nginx: ProxyFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(tokens=200, first_token_delay=0, token_delay=0.05)
    service, client = behind_nginx()
    stream = LiveStream(client, BODY)
    events = [stream.next_event() for _ in range(4)]
    assert [event.event for event in events if event] == ["metadata", "data", "data", "data"]
    stream.close()
    (record,) = upstream_server.wait_for_requests(1)
    assert record.closed.wait(5), "the upstream connection stayed open after the client left nginx"
    assert record.client_gone and not record.completed
    wait_until(lambda: service.state.admission.active == 0, message="the run to be released")
    wait_until(lambda: service.state.threads.busy == 0, message="the pool's busy count to return to zero")


# The controls for X-Accel-Buffering. nginx's defaults are HTTP/1.0 to the upstream with buffering
# on. nginx passes a chunked upstream response on as it comes even when buffering, so under
# uvicorn's httptools protocol (which answers HTTP/1.0 with chunked framing) the header is not
# what keeps the stream flowing. Under uvicorn's h11 protocol (used when httptools is not
# installed) the answer to HTTP/1.0 is delimited by closing the connection, which a buffering nginx
# holds until its buffers fill or the response ends: there the header is what makes it stream.


def test_a_buffering_nginx_streams_because_of_x_accel_buffering(
    behind_nginx: ProxyFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = Behaviour(first_token_delay=NEVER)
    _, client = behind_nginx(Tweaks(nginx_defaults=True), http="h11")
    with LiveStream(client, BODY) as stream:
        first = stream.next_event()  # were it held, this would wait out the client's 10 s timeout
        assert first is not None and first.event == "metadata"
        (record,) = upstream_server.wait_for_requests(1)
        assert record.tokens_sent == 0 and not record.closed.is_set()


def test_a_buffering_nginx_that_ignores_x_accel_buffering_holds_the_whole_answer(
    behind_nginx: ProxyFactory, upstream_server: DemoModelServer
) -> None:
    """The negative control: the same proxy, told to ignore the header, delivers the answer all at once."""
    upstream_server.behaviour = Behaviour(tokens=5, first_token_delay=0.2, token_delay=0.05)
    _, client = behind_nginx(Tweaks(nginx_defaults=True, ignore_accel_buffering=True), http="h11")
    with client.stream("POST", "/chat", json=BODY) as response:
        chunks = response.iter_raw()
        first = next(chunks)  # the first bytes the client sees at all
        rest = b"".join(chunks)
    assert b"event: metadata" in first and b"event: end" in first, first
    assert rest == b""
    (record,) = upstream_server.wait_for_requests(1)
    assert record.closed.wait(5) and record.completed


def test_a_full_replica_s_503_is_passed_on_to_the_next_one(
    upstream_server: DemoModelServer, make_settings: SettingsFactory
) -> None:
    """deploy/nginx.conf's `proxy_next_upstream ... http_503 non_idempotent`: a replica that refuses a new
    stream (before doing any work for it) does not reach the client while another one has room."""
    with ExitStack() as stack:
        urls = []
        for max_streams in (1, 8):
            app = create_app(make_settings(base_url=upstream_server.base_url, model="demo", max_streams=max_streams))
            urls.append(stack.enter_context(run_server(app)))
        full = stack.enter_context(httpx.Client(base_url=urls[0], timeout=httpx.Timeout(10.0)))
        front = stack.enter_context(nginx_in_front(urls[0], AS_SHIPPED, urls[1]))
        client = stack.enter_context(httpx.Client(base_url=front, timeout=httpx.Timeout(10.0)))
        upstream_server.behaviour = Behaviour(first_token_delay=NEVER)
        holding = stack.enter_context(LiveStream(full, BODY))  # the first replica's one slot, taken
        first = holding.next_event()
        assert first is not None and first.event == "metadata"
        upstream_server.behaviour = Behaviour()
        for _ in range(6):  # round-robin sends about half of them to the full replica first
            parser, complete = read_all(client)
            assert complete and text_of(parser.events) == expected_text(QUERY, upstream_server.behaviour)
        refused = value(parse(full.get("/metrics").text), "haystream_refusals_total", reason="slots")
        assert refused >= 1, "no request reached the full replica: the test did not test the retry"


def test_when_every_replica_is_full_the_client_gets_their_503_not_nginx_s_502(
    upstream_server: DemoModelServer, make_settings: SettingsFactory
) -> None:
    """`max_fails=0` on each server line: nginx never marks a replica down for refusing, so a full group
    answers each request with a replica's own 503 and Retry-After, never "no live upstreams"."""
    with ExitStack() as stack:
        replicas = []
        for _ in range(2):
            app = create_app(make_settings(base_url=upstream_server.base_url, model="demo", max_streams=1))
            url = stack.enter_context(run_server(app))
            replicas.append(stack.enter_context(httpx.Client(base_url=url, timeout=httpx.Timeout(10.0))))
        front = stack.enter_context(nginx_in_front(str(replicas[0].base_url), AS_SHIPPED, str(replicas[1].base_url)))
        client = stack.enter_context(httpx.Client(base_url=front, timeout=httpx.Timeout(10.0)))
        upstream_server.behaviour = Behaviour(first_token_delay=NEVER)
        for replica in replicas:
            holding = stack.enter_context(LiveStream(replica, BODY))
            first = holding.next_event()
            assert first is not None and first.event == "metadata"
        for _ in range(3):
            refused = client.post("/chat", json=BODY)
            assert refused.status_code == 503, refused.text
            assert refused.json()["type"] == "at_capacity" and refused.headers["retry-after"]
