"""Choosing a request's behaviour: ``fail_first_n``, ``by_prompt`` and prompt directives."""

from __future__ import annotations

import httpx
import openai
import pytest

from service.demo_model import Behaviour, DemoModelServer, expected_text, prompt_behaviour
from tests.demo_model.support import KEY, PROMPT, fast, stream_text


def test_fail_first_n_faults_only_the_first_requests(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = fast(tokens=2, fault="http_503", fail_first_n=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            stream_text(client)
    assert stream_text(client)[0] == "tok0 tok1 "
    server.behaviour = fast(tokens=2, fault="http_503", fail_first_n=1)  # a new behaviour counts afresh
    with pytest.raises(openai.InternalServerError):
        stream_text(client)


def test_by_prompt_picks_a_behaviour_per_request(server: DemoModelServer, client: openai.OpenAI) -> None:
    server.behaviour = fast(tokens=1)
    server.by_prompt["fail"] = fast(fault="http_500")
    with pytest.raises(openai.InternalServerError):
        stream_text(client, prompt="fail")
    assert stream_text(client, prompt="fine")[0] == "tok0 "


def test_a_prompt_directive_picks_this_requests_behaviour_when_enabled() -> None:
    with (
        DemoModelServer(behaviour=fast(), directives=True) as srv,
        openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=10) as sdk,
    ):
        text, _ = stream_text(sdk, "[[demo tokens=3]] hi")
        assert text == "tok0 tok1 tok2 "
        with pytest.raises(openai.RateLimitError):
            stream_text(sdk, "[[demo fault=http_429]] hi")
        cut = "[[demo tokens=8 fault=close_mid fault_after=2]] hi"
        assert expected_text(cut, prompt_behaviour(cut, srv.behaviour)) == "tok0 tok1 "
        text, chunks = stream_text(sdk, cut)
        assert text == "tok0 tok1 " and all(c.choices[0].finish_reason is None for c in chunks if c.choices)
        text, _ = stream_text(sdk)  # no directive: the server's own behaviour
        assert text == expected_text(PROMPT, srv.behaviour)
        assert srv.behaviour == fast(), "a directive must not change the server's behaviour"


def test_prompt_directives_are_plain_text_unless_enabled(server: DemoModelServer, client: openai.OpenAI) -> None:
    prompt = "[[demo fault=http_500]] is this a fault?"
    text, _ = stream_text(client, prompt)
    assert text == expected_text(prompt, server.behaviour)
    assert "[[demo fault=http_500]]" in text


@pytest.mark.parametrize("directive", ["[[demo colour=blue]]", "[[demo tokens=many]]", "[[demo fault=explode]]"])
def test_a_bad_directive_is_a_400(directive: str) -> None:
    with DemoModelServer(behaviour=fast(), directives=True) as srv, httpx.Client() as http:
        body = {"model": "demo", "messages": [{"role": "user", "content": directive}], "stream": True}
        response = http.post(f"{srv.base_url}/chat/completions", json=body)
    assert response.status_code == 400
    assert "directive" in response.json()["error"]["message"] or "fault" in response.json()["error"]["message"]


def test_prompt_behaviour_overrides_only_what_the_directive_names() -> None:
    base = Behaviour(tokens=5, token_delay=0.1, fault="reset", fault_after=3)
    changed = prompt_behaviour("x [[demo token_delay=0 fault=none tokens=none]] y", base)
    assert changed == Behaviour(tokens=None, token_delay=0.0, fault=None, fault_after=3)
    assert prompt_behaviour("no directive here", base) == base
