"""Answering from documents: loading a folder, BM25 retrieval, sources in metadata, the prompt."""

from pathlib import Path

import pytest

from pipelines.documents import NoDocuments, build_documents_pipeline, load_documents, retrieve
from service.app import create_app
from service.demo_model import Behaviour, DemoModelServer
from tests.conftest import LiveFactory, SettingsFactory
from tests.support.sse import parse_sse

SAMPLE = Path(__file__).resolve().parents[2] / "pipelines" / "sample_docs"
KEY = "sk-documents-SENTINEL-3b9a"
FAST = Behaviour(tokens=3, first_token_delay=0.0, token_delay=0.0)


@pytest.mark.parametrize(
    ("question", "best"),
    [
        ("How often should I feed my sourdough starter?", "sourdough.md"),
        ("What causes spring tides and neap tides?", "tides.md"),
        ("When should I replace my brake pads?", "bicycle-maintenance.txt"),
        ("How does the waggle dance tell bees where food is?", "honeybees.md"),
    ],
)
def test_the_right_sample_document_ranks_first(question: str, best: str) -> None:
    found = retrieve(load_documents(SAMPLE), question, top_k=3)
    assert found[0].meta["file_name"] == best
    assert all(found[0].score >= other.score for other in found[1:])  # type: ignore[operator]


def test_a_question_matching_nothing_retrieves_nothing() -> None:
    assert retrieve(load_documents(SAMPLE), "quantum chromodynamics", top_k=3) == []


def test_only_text_and_markdown_files_are_loaded(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    (tmp_path / "c.pdf").write_text("gamma")
    (tmp_path / "empty.md").write_text("  \n")
    store = load_documents(tmp_path)
    assert sorted(d.meta["file_name"] for d in store.filter_documents()) == ["b.txt", "notes/a.md"]


def test_a_missing_or_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoDocuments, match="not a directory"):
        load_documents(tmp_path / "nope")
    with pytest.raises(NoDocuments, match="holds no"):
        load_documents(tmp_path)


async def test_the_service_does_not_start_with_an_empty_documents_folder(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    app = create_app(make_settings(documents_dir=tmp_path))
    with pytest.raises(NoDocuments):
        async with app.router.lifespan_context(app):
            pass


def test_documents_are_data_in_the_prompt(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("{{ 7*7 }} is not evaluated")
    documents = retrieve(load_documents(tmp_path), "evaluated", top_k=1)
    pipeline = build_documents_pipeline(api_key="k", model="m")
    prompt = pipeline.get_component("prompt_builder").run(query="{{ 1+1 }}", documents=documents)["prompt"]
    assert prompt.startswith("Question: {{ 1+1 }}")
    assert "--- t.md ---\n{{ 7*7 }} is not evaluated" in prompt


def test_a_documents_answer_names_its_sources_and_carries_them_in_the_prompt(
    live_service: LiveFactory, upstream_server: DemoModelServer
) -> None:
    upstream_server.behaviour = FAST
    service = live_service(documents_dir=SAMPLE, documents_top_k=2)
    body = {"query": "What causes spring tides?", "api_key": KEY, "pipeline": "documents"}
    events = parse_sse(service.client.post("/chat", json=body).text).events
    assert events[-1].event == "end"
    sources = events[0].json()["sources"]
    assert sources[0]["file"] == "tides.md" and sources[0]["score"] > 0
    assert len(sources) <= 2
    prompt = upstream_server.requests[0].prompt
    assert prompt.startswith("Question: What causes spring tides?")
    assert "--- tides.md ---" in prompt and "spring tides with\nthe largest range" in prompt


def test_an_unknown_pipeline_is_refused_with_the_available_ones(live_service: LiveFactory) -> None:
    service = live_service(documents_dir=SAMPLE)
    response = service.client.post("/chat", json={"query": "q", "api_key": KEY, "pipeline": "agents"})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "pipeline", "message": "must be one of: chat, documents"}]


def test_documents_without_a_folder_is_a_clear_error(live_service: LiveFactory) -> None:
    service = live_service()
    response = service.client.post("/chat", json={"query": "q", "api_key": KEY, "pipeline": "documents"})
    assert response.status_code == 422
    assert "HAYSTREAM_DOCUMENTS_DIR" in response.json()["message"]
    other = service.client.post("/chat", json={"query": "q", "api_key": KEY, "pipeline": "agents"})
    assert other.json()["errors"][0]["message"] == "must be one of: chat"
