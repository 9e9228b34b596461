"""Answering from documents: the operator's text and Markdown files, BM25 retrieval, a prompt of the
best matches -> `OpenAIGenerator`.

The folder is read once (`load_documents`) into an `InMemoryDocumentStore`. Retrieval (`retrieve`)
is kept out of the per-request pipeline on purpose: it is cheap and needs no upstream, so the service
runs it first and can name the sources in its `metadata` event before the answer starts; the pipeline
then renders the retrieved documents into the prompt exactly like the chat pipeline renders history.
"""

from pathlib import Path

from haystack import AsyncPipeline, Document
from haystack.document_stores.in_memory import InMemoryDocumentStore
from typing_extensions import Unpack

from pipelines.generator import UpstreamOptions, answer_pipeline, build_generator
from pipelines.prompt import load_template, prompt_builder

DOCUMENTS_TEMPLATE = load_template("documents.jinja2")
SUFFIXES = (".md", ".markdown", ".txt")


class NoDocuments(ValueError):
    """The documents folder is missing, or holds no text or Markdown file."""


def load_documents(folder: Path) -> InMemoryDocumentStore:
    """Every .md/.markdown/.txt file under `folder` (recursively), one document each, named by its path."""
    if not folder.is_dir():
        raise NoDocuments(f"{folder} is not a directory")
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in SUFFIXES)
    documents = [
        Document(content=path.read_text(encoding="utf-8", errors="replace"), meta={"file_name": _name(path, folder)})
        for path in files
    ]
    documents = [document for document in documents if document.content and document.content.strip()]
    if not documents:
        raise NoDocuments(f"{folder} holds no non-empty {', '.join(SUFFIXES)} file")
    store = InMemoryDocumentStore(bm25_algorithm="BM25L")
    store.write_documents(documents)
    return store


def _name(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def retrieve(store: InMemoryDocumentStore, query: str, top_k: int) -> list[Document]:
    """The `top_k` best documents for `query`, best first.

    BM25L rather than Okapi: Okapi's idf goes negative for a term in most documents (in a folder of
    one file, every match scored below zero), while BM25L scores any match above zero and leaves out
    documents that share no term with the query. (The store's own BM25 search, which Haystack's
    `InMemoryBM25Retriever` calls: building that component per request cost most of the retrieval's time.)"""
    return store.bm25_retrieval(query=query, top_k=top_k)


def build_documents_pipeline(
    *, template: str = DOCUMENTS_TEMPLATE, **upstream: Unpack[UpstreamOptions]
) -> AsyncPipeline:
    """Inputs: `{"prompt_builder": {"query": ..., "documents": [Document, ...], "history": ...}}` (`history`
    as in `build_chat_pipeline`). Outputs: `llm.replies` and `llm.meta`.

    Retrieval (`retrieve`) runs before the pipeline is built, so the `metadata` event can list the sources."""
    return answer_pipeline(prompt_builder(template, ("documents", "history")), build_generator(**upstream))
