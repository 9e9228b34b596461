"""Property-based fuzzing of `POST /chat` over a real socket: no 500, no hung stream, every refusal explained.

Hypothesis rather than schemathesis: the interesting inputs are the ones the OpenAPI document
does not describe (bytes that are not JSON, wrong or missing content types, odd Authorization
headers, control characters), and hypothesis is one small dependency. Runs are derandomized with
a fixed number of examples and no example database, so CI sees the same inputs every time.
"""

import json
import string

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.demo_model import Behaviour, DemoModelServer
from tests.conftest import LiveFactory
from tests.support.sse import parse_sse
from tests.support.waiting import wait_until

EXAMPLES = 150
REFUSALS = {400, 413, 415, 422}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
queries = st.text(max_size=60) | st.text(alphabet=string.printable, min_size=1, max_size=60)
keys = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=40) | st.text(max_size=20)
objects = st.fixed_dictionaries(
    {},
    optional={"query": queries | json_values, "api_key": keys | json_values, "extra": json_values},
)
well_formed = st.fixed_dictionaries({"query": queries, "api_key": keys})
bodies = st.one_of(
    well_formed.map(lambda body: json.dumps(body).encode()),
    well_formed.map(lambda body: json.dumps(body, ensure_ascii=False).encode()),
    objects.map(lambda body: json.dumps(body).encode()),
    st.binary(max_size=120),
)
content_types = st.one_of(
    st.just("application/json"),
    st.sampled_from(["application/json; charset=utf-8", "text/plain", "application/problem+json", ""]),
    st.text(alphabet=string.ascii_letters + "/;=+- ", max_size=30),
)
# Any byte HTTP allows in a header value (controls are the HTTP parser's to refuse, before the app).
header_bytes = st.lists(st.sampled_from([9, *range(0x20, 0x7F), *range(0x80, 0x100)]), max_size=60).map(bytes)
bearer_keys = st.builds(lambda key: b"Bearer " + key.encode(), keys).filter(
    lambda value: all(byte == 9 or 0x20 <= byte != 0x7F for byte in value)
)
authorizations = st.one_of(st.none(), st.none(), bearer_keys, header_bytes)


def headers_for(content_type: str, authorization: bytes | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type.strip().encode())] if content_type.strip() else []
    if authorization is not None:
        headers.append((b"authorization", authorization.strip(b" \t")))
    return headers


def check_refusal(response: httpx.Response) -> None:
    assert response.headers["content-type"] == "application/json", response.text
    error = response.json()
    assert error["retryable"] is False and error["type"] and error["message"]
    for item in error["errors"]:  # the message names every field it refuses
        assert item["field"] in error["message"], error


def check_stream(response: httpx.Response) -> None:
    events = parse_sse(response.text).events
    assert events[0].event == "metadata"
    assert events[-1].event in ("end", "error"), [e.event for e in events]


def test_chat_never_fails_with_a_500_or_hangs(live_service: LiveFactory, upstream_server: DemoModelServer) -> None:
    upstream_server.behaviour = Behaviour(tokens=2, first_token_delay=0, token_delay=0)
    service = live_service(max_query_chars=40)
    client = httpx.Client(base_url=service.url, timeout=10)  # a hung stream fails the example

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies, content_type=content_types, authorization=authorizations)
    def check(body: bytes, content_type: str, authorization: bytes | None) -> None:
        response = client.post("/chat", content=body, headers=headers_for(content_type, authorization))
        assert response.status_code == 200 or response.status_code in REFUSALS, (response.status_code, response.text)
        if response.status_code == 200:
            check_stream(response)
        else:
            check_refusal(response)

    with client:
        check()
    state = service.state
    wait_until(lambda: state.admission.active == 0, 10, "every run to be released")
    wait_until(lambda: state.threads.busy == 0, 10, "the pool's busy count to return to zero")
