"""The demo model's knobs and faults, and the per-request directives that override them.

- Per request, the behaviour is ``by_prompt[prompt]`` if the last user prompt is a key of
  it, else ``behaviour`` (both on the server); tests mix faults in one concurrent burst
  that way. With ``fail_first_n`` the fault hits only the first N requests served under
  that Behaviour object (counted on it), and the ones after get a clean answer: an
  upstream that recovers.
- On top of that, for load runs that mix faults through one service process: with
  ``directives=True`` (``--directives``), a ``[[demo key=value ...]]`` directive in the prompt
  overrides the server's behaviour for that request (``tokens``, ``token_delay``,
  ``first_token_delay``, ``fault``, ``fault_after``, ``stall``; ``none`` clears ``tokens`` or
  ``fault``). Off by default, so a prompt is only ever text unless the operator asks; a bad
  directive gets a 400.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from service.demo_model.wire import HttpError

FAULTS = (
    "http_401",
    "http_403",
    "http_404",
    "http_429",
    "http_500",
    "http_503",
    "reset",
    "malformed",
    "empty_chunk",
    "no_done",
    "close_mid",
    "stall_before_headers",
    "stall_mid",
    "large_chunk",
)
MID_FAULTS = frozenset({"reset", "malformed", "empty_chunk", "close_mid", "stall_mid"})
_DIRECTIVE = re.compile(r"\[\[demo\s([^\]]*)\]\]")
_DIRECTIVE_FIELDS: dict[str, type] = {
    "tokens": int,
    "token_delay": float,
    "first_token_delay": float,
    "fault": str,
    "fault_after": int,
    "stall": float,
}


@dataclass
class Behaviour:
    tokens: int | None = None
    token_delay: float = 0.03
    first_token_delay: float = 0.2
    fault: str | None = None
    fault_after: int = 0
    stall: float = 3600.0
    retry_after: int = 1  # the Retry-After seconds of an http_429
    large_chunk_chars: int = 1_000_000
    token_chars: int | None = None  # pad each ``tokens=N`` token to this many characters
    answer: tuple[str, ...] | None = None  # stream exactly these token texts instead (``tokens`` is then ignored)
    fail_first_n: int | None = None  # the fault hits only the first N requests, then none
    faults_served: int = field(default=0, init=False, compare=False)


def prompt_behaviour(prompt: str, behaviour: Behaviour) -> Behaviour:
    """``behaviour`` overridden by the prompt's ``[[demo key=value ...]]`` directive, if it has one."""
    match = _DIRECTIVE.search(prompt)
    if match is None:
        return dataclasses.replace(behaviour)
    overrides: dict[str, Any] = {}
    for item in match.group(1).split():
        key, _, text = item.partition("=")
        kind = _DIRECTIVE_FIELDS.get(key)
        if kind is None:
            raise HttpError(400, f"unknown demo directive field {key!r}")
        try:
            overrides[key] = None if text == "none" and key in ("tokens", "fault") else kind(text)
        except ValueError as exc:
            raise HttpError(400, f"demo directive {key}: {exc}") from exc
    if overrides.get("fault") not in (None, *FAULTS):
        raise HttpError(400, f"unknown demo fault {overrides['fault']!r}")
    return dataclasses.replace(behaviour, **overrides)


def fault_cut(behaviour: Behaviour, count: int) -> int:
    """How many of ``count`` content chunks go out before a mid-stream fault fires."""
    return min(max(behaviour.fault_after, 0), count)
