"""SSE framing, tested the way sse-starlette tests its own: multi-line data, ids, comments."""

import json

import pytest

from service.streaming.sse import EVENTS, KEEPALIVE_FRAME, Event, comment, encode, json_string
from tests.support.sse import parse_sse


def test_event_with_id_name_and_data() -> None:
    assert encode(Event("data", '"hi"', 3)) == b'id: 3\nevent: data\ndata: "hi"\n\n'


def test_event_without_id_or_name() -> None:
    assert encode(Event("", "x")) == b"data: x\n\n"


@pytest.mark.parametrize("data", ["a\nb", "a\r\nb", "a\rb", "a\n\nb", "\nlead", "trail\n", ""])
def test_multiline_data_round_trips_through_a_spec_parser(data: str) -> None:
    frame = encode(Event("message", data, 1)).decode()
    (event,) = parse_sse(frame).events
    # CRLF and CR become LF: that is what the spec's parser hands the application.
    assert event.data == data.replace("\r\n", "\n").replace("\r", "\n")


def test_each_line_break_starts_a_data_line() -> None:
    assert encode(Event("e", "a\r\nb\rc\nd")) == b"event: e\ndata: a\ndata: b\ndata: c\ndata: d\n\n"


def test_unicode_line_separators_are_not_line_breaks() -> None:
    # str.splitlines would split here, and a client would then see a different text.
    data = "a\u2028b\u2029c\x85d\x0be"
    assert encode(Event("e", data)) == f"event: e\ndata: {data}\n\n".encode()


@pytest.mark.parametrize("text", ["a\u2028b\u2029c\x85d", "\x0b\x0c\x1c\x1d\x1e", 'é 日本 "\\ \n', ""])
def test_json_strings_carry_no_line_break_str_splitlines_knows(text: str) -> None:
    encoded = json_string(text)
    assert json.loads(encoded) == text
    assert encode(Event("", encoded)).decode().splitlines() == [f"data: {encoded}", ""]


def test_json_strings_keep_other_non_ascii_as_is() -> None:
    assert json_string("é 日本\u2028") == '"é 日本\\u2028"'
    assert json_string("é 日本") == json.dumps("é 日本", ensure_ascii=False)


@pytest.mark.parametrize("bad", ["x\ny", "x\ry", "x\r\ny", "x\0y"])
def test_id_and_event_cannot_break_the_frame(bad: str) -> None:
    frame = encode(Event(bad, "d", bad))
    assert frame == b"id: xy\nevent: xy\ndata: d\n\n"


def test_comment_and_keepalive_are_ignored_by_a_parser() -> None:
    parser = parse_sse((KEEPALIVE_FRAME + comment("two\nlines") + encode(Event("e", "d"))).decode())
    assert parser.comments == ["keep-alive", "two", "lines"]
    assert [(e.event, e.data) for e in parser.events] == [("e", "d")]


def test_non_ascii_is_utf8() -> None:
    assert encode(Event("e", "héllo ✓")) == "event: e\ndata: héllo ✓\n\n".encode()


@pytest.mark.parametrize("data", [json_string('a\u2028b é \n\r"x"'), json_string(""), '"a\nb"', '"a\r"', "{}"])
def test_the_run_encoder_frames_data_events_as_the_general_path_does(data: str) -> None:
    # A data event takes a one-step path (no splitting); it must give the very bytes `encode` gives,
    # raw line breaks included (they still go the general way).
    assert EVENTS(Event("data", data), "run_x:7") == encode(Event("data", data, "run_x:7"))
    assert EVENTS(Event("end", data), "run_x:8") == encode(Event("end", data, "run_x:8"))
