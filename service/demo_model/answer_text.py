"""What text the demo model answers: its content chunks, and what a client assembles from them."""

from __future__ import annotations

from service.demo_model.behaviour import Behaviour, fault_cut

_ECHO_WORDS = 24
_ECHO_CHARS = 200
_LARGE_PATTERN = "0123456789abcdefghijklmnopqrstuvwxyz"


def _echo(prompt: str) -> str:
    words = prompt.split()
    echo = " ".join(words[:_ECHO_WORDS])
    if len(words) > _ECHO_WORDS or len(echo) > _ECHO_CHARS:
        echo = echo[:_ECHO_CHARS].rstrip() + "..."
    return echo or "(nothing)"


def answer_tokens(prompt: str, tokens: int | None, token_chars: int | None = None) -> list[str]:
    """The exact token texts the server streams for this prompt (deterministic).

    ``tokens=None``: a 37-60 token answer that says it comes from the demo model and echoes
    the prompt (whitespace collapsed, cut after 24 words or 200 characters); each token is
    a word plus its following space. ``tokens=N``: ``["tok0 ", "tok1 ", ...]``, N of them;
    with ``token_chars``, each padded to that length (``"tok0:0123...xyz01 "``).
    The large_chunk fault sends one extra chunk; ``expected_text`` accounts for it.
    """
    if tokens is not None:
        if tokens < 0:
            raise ValueError("tokens must be >= 0")
        if token_chars is None:
            return [f"tok{i} " for i in range(tokens)]
        return [_padded(f"tok{i}:", token_chars) for i in range(tokens)]
    text = (
        f'This is the demo model, not a real LLM. You asked: "{_echo(prompt)}". '
        "A real model's answer would stream here word by word; start the service "
        "without --demo and point it at a real upstream to get one."
    )
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


def _padded(head: str, chars: int) -> str:
    return head + large_chunk_text(max(chars - len(head) - 1, 0)) + " "


def large_chunk_text(chars: int) -> str:
    """The text of the large_chunk fault's one big content chunk."""
    return (_LARGE_PATTERN * (chars // len(_LARGE_PATTERN) + 1))[:chars]


def content_chunks(prompt: str, behaviour: Behaviour) -> list[str]:
    """The content chunks of one answer: its tokens, plus the large_chunk fault's big chunk."""
    if behaviour.answer is not None:
        chunks = list(behaviour.answer)
    else:
        chunks = answer_tokens(prompt, behaviour.tokens, behaviour.token_chars)
    if behaviour.fault == "large_chunk":
        chunks.insert(fault_cut(behaviour, len(chunks)), large_chunk_text(behaviour.large_chunk_chars))
    return chunks


def expected_text(prompt: str, behaviour: Behaviour) -> str:
    """Exactly the text a correct client assembles from the streamed answer.

    The full answer for no fault, empty_chunk, no_done, stall_* (once the stall is over)
    and large_chunk (whose big chunk comes after ``fault_after`` tokens); the first
    ``fault_after`` tokens for reset, malformed and close_mid. http_* faults raise
    ValueError: they carry no text.
    """
    if behaviour.fault is not None and behaviour.fault.startswith("http_"):
        raise ValueError(f"{behaviour.fault} answers with an HTTP error, not text")
    chunks = content_chunks(prompt, behaviour)
    if behaviour.fault in ("reset", "malformed", "close_mid"):
        chunks = chunks[: fault_cut(behaviour, len(chunks))]
    return "".join(chunks)
