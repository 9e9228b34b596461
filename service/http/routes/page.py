"""`GET /`: a small chat page, and its few static files under `/static/`.

The files live in `service/http/static/`, third-party code in `service/http/static/vendor/` with its licence;
they ship with the package and nothing is built. Only the files that are there at start-up are
served, with media types named here rather than guessed from the machine's MIME tables (a module
script must come as JavaScript). The page takes an API key, so it is sent with a strict
Content-Security-Policy: its own scripts only, and requests to its own origin only. It shows model
output as Markdown; that is rendered with raw HTML escaped (see `chat.js`), and the policy is the
second line of defence: no inline script or event handler runs even if some markup got through.
"""

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_PAGE = STATIC_DIR / "index.html"


def _served(directory: Path, prefix: str = "") -> dict[str, Path]:
    return {prefix + path.name: path for path in directory.iterdir() if path.suffix in _MEDIA_TYPES and path != _PAGE}


_FILES = _served(STATIC_DIR) | _served(STATIC_DIR / "vendor", "vendor/")
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADERS = _HEADERS | {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(_PAGE, media_type=_MEDIA_TYPES[".html"], headers=_PAGE_HEADERS)


@router.get("/static/{name:path}")
async def static_file(name: str) -> FileResponse:
    path = _FILES.get(name)
    if path is None:
        raise HTTPException(404, "no such static file")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_HEADERS)
