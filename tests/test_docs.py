"""The docs show the code that is tested: snippets, examples and the configuration reference."""

import re
from pathlib import Path

import markdown

from docs import gen_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
RUN_ID = re.compile(r"run_[A-Za-z0-9_-]{22}")


def expanded(page: Path) -> str:
    """The page's Markdown with its `--8<--` includes expanded, as mkdocs.yml's pymdownx.snippets does."""
    md = markdown.Markdown(  # type: ignore[no-untyped-call]
        extensions=["pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": {"base_path": [str(ROOT)], "check_paths": True}},
    )
    lines: list[str] = md.preprocessors["snippet"].run(page.read_text().splitlines())
    return "\n".join(lines) + "\n"


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```$", text, re.MULTILINE | re.DOTALL)


def events_of(stream: str) -> list[str]:
    return [block for block in stream.strip("\n").split("\n\n") if block]


def test_the_browser_page_shows_the_tested_fetch_event_source_snippet_verbatim() -> None:
    """The browser tests run examples/fetch-event-source.js; docs/browser.md must show exactly that."""
    snippet = (ROOT / "examples" / "fetch-event-source.js").read_text().rstrip("\n")
    blocks = [block.rstrip("\n") for block in code_blocks(expanded(DOCS / "browser.md"), "js")]
    assert snippet in blocks, "docs/browser.md's fetch-event-source snippet differs from examples/fetch-event-source.js"


def test_the_readme_points_at_the_files_it_names() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in ("deploy/nginx.conf", "examples/fetch-event-source.js", "service/http/static/sse-client.mjs"):
        assert path in readme and (ROOT / path).is_file(), path
    for page in re.findall(r"\]\((docs/[\w-]+\.md)", readme):
        assert (ROOT / page).is_file(), page


def test_the_configuration_reference_is_what_settings_says() -> None:
    page = gen_config.PAGE.read_text()
    assert page == gen_config.render(page), (
        "docs/configuration.md differs from service.settings.Settings and the command line: "
        f"run `{gen_config.COMMAND}` (python -m docs.gen_config) and commit the page"
    )


def test_the_readme_shows_the_chat_example_and_part_of_its_real_output() -> None:
    """The README's command is docs/examples/chat.sh; its sample is the head and tail of chat.out."""
    readme = (ROOT / "README.md").read_text()
    assert (EXAMPLES / "chat.sh").read_text() in code_blocks(readme, "sh")
    output = events_of(RUN_ID.sub("RUN", (EXAMPLES / "chat.out").read_text()))
    (sample,) = code_blocks(readme, "text")
    head, tail = (events_of(part) for part in RUN_ID.sub("RUN", sample).split("\n...\n"))
    assert head == output[: len(head)], "the README's sample stream does not start as docs/examples/chat.out does"
    assert tail == output[-len(tail) :], "the README's sample stream does not end as docs/examples/chat.out does"


def test_every_stated_event_count_is_the_real_streams() -> None:
    """ "41 events, ids `<run_id>:0` to `<run_id>:40`" wherever it is said, from chat.out's count."""
    count = len(events_of((EXAMPLES / "chat.out").read_text()))
    pages = [ROOT / "README.md", *DOCS.glob("*.md")]
    claims = [(page.name, claim) for page in pages for claim in re.findall(r"(\d+) events, ids", page.read_text())]
    assert claims, "no page states the sample stream's event count"
    for name, claim in claims:
        assert int(claim) == count, f"{name} says {claim} events; docs/examples/chat.out has {count}"
    ids = {claim for page in pages for claim in re.findall(r"`<run_id>:0` to `<run_id>:(\d+)`", page.read_text())}
    assert ids == {str(count - 1)}


def test_every_example_is_shown_by_a_page_and_is_plain_ascii() -> None:
    shown = "".join(page.read_text() for page in DOCS.glob("*.md"))
    for example in sorted(EXAMPLES.iterdir()):
        assert f'--8<-- "docs/examples/{example.name}"' in shown, f"no page includes {example.name}"
        assert example.read_text().isascii(), f"{example.name} holds non-ASCII characters"
