"""`GET /` and `/static/*`: the chat page and its files, as served (the browser tests drive the page)."""

import re
import tomllib
from pathlib import Path, PurePosixPath

import httpx

from service.http.routes.page import STATIC_DIR

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


async def test_the_page_is_served_at_the_root_with_a_strict_csp(asgi_client: httpx.AsyncClient) -> None:
    response = await asgi_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    for element in ("query", "api-key", "send", "stop", "status", "transcript", "notice"):
        assert f'id="{element}"' in response.text, element


async def test_every_file_the_page_references_is_served_with_its_media_type(asgi_client: httpx.AsyncClient) -> None:
    page = (await asgi_client.get("/")).text
    referenced = re.findall(r'(?:src|href)="(static/[^"]+)"', page)
    assert sorted(referenced) == ["static/chat.js", "static/style.css"]
    imports = re.findall(r'from "\./([^"]+)"', (STATIC_DIR / "chat.js").read_text())
    assert imports == ["markdown.mjs", "sse-client.mjs"]
    assert re.findall(r'from "\./([^"]+)"', (STATIC_DIR / "markdown.mjs").read_text()) == [
        "vendor/markdown-it.esm.min.mjs"
    ]
    expected = {
        "static/chat.js": "text/javascript; charset=utf-8",
        "static/style.css": "text/css; charset=utf-8",
        "static/sse-client.mjs": "text/javascript; charset=utf-8",
        "static/markdown.mjs": "text/javascript; charset=utf-8",
        "static/vendor/markdown-it.esm.min.mjs": "text/javascript; charset=utf-8",
    }
    for path, media_type in expected.items():
        response = await asgi_client.get(f"/{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"] == media_type
        assert response.headers["cache-control"] == "no-cache"
        assert response.content == (STATIC_DIR / path.removeprefix("static/")).read_bytes()


async def test_unknown_static_files_are_404_in_the_error_shape(asgi_client: httpx.AsyncClient) -> None:
    unknown = ("/static/nope.js", "/static/index.html", "/static/..%2F__init__.py", "/static/", "/static/vendor/")
    for path in (*unknown, "/static/vendor/README.md", "/static/vendor%2F..%2Fchat.js"):
        response = await asgi_client.get(path)
        assert response.status_code == 404, path
        body = response.json()
        assert body["type"] == "http_error" and body["retryable"] is False, path


async def test_the_page_is_not_part_of_the_api_schema(asgi_client: httpx.AsyncClient) -> None:
    paths = (await asgi_client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)


def test_every_static_file_ships_in_the_package_and_the_vendored_code_with_its_licence() -> None:
    patterns = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["service"]
    for path in STATIC_DIR.rglob("*"):
        relative = PurePosixPath(path.relative_to(STATIC_DIR.parents[1]).as_posix())  # from service/
        shipped = any(len(relative.parts) == len(PurePosixPath(p).parts) and relative.match(p) for p in patterns)
        assert path.is_dir() or shipped, f"{relative} is not in the package data"
    assert "Permission is hereby granted, free of charge" in (STATIC_DIR / "vendor" / "markdown-it.LICENSE").read_text()
    assert "@license MIT" in (STATIC_DIR / "vendor" / "markdown-it.esm.min.mjs").read_text()[:200]
