"""`InputGuard`: stop questions that hold a blocked term before they cost an upstream call.

A term matches case-insensitively as a whole word or phrase (`"bomb"` blocks "Bomb?" but not
"bombastic"); whitespace inside a phrase matches any run of whitespace. With no terms configured
(the default) the guard blocks nothing and costs nothing.
"""

import re
from collections.abc import Iterable


class InputGuard:
    def __init__(self, terms: Iterable[str]) -> None:
        patterns = [r"\s+".join(map(re.escape, term.split())) for term in terms if term.strip()]
        self._blocked = re.compile(rf"(?<!\w)(?:{'|'.join(patterns)})(?!\w)", re.IGNORECASE) if patterns else None

    def blocks(self, text: str) -> bool:
        return self._blocked is not None and self._blocked.search(text) is not None
