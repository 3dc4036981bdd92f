"""edge_agent.cloud.sse: server-sent events framed from bytes however the network
cuts them, and input that is no such thing refused with a bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from edge_agent.cloud.sse import EventDecoder, SSEError, events

STREAM = (b'data: {"a": 1}\n\n'
          b": keep-alive comment\n\n"
          b"event: message\nid: 7\nretry: 100\ndata: two\ndata:  lines\n\n"
          b"data: caf\xc3\xa9\n\n"
          b"data: [DONE]\n\n")
EXPECTED = ['{"a": 1}', "two\n lines", "café", "[DONE]"]


def decode(*chunks: bytes, limit: int = 1 << 20) -> list[str]:
    decoder = EventDecoder(limit)
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def test_events_in_one_chunk() -> None:
    assert decode(STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_cut_gives_the_same_events(size: int) -> None:
    # A cut may fall inside "data:", inside a UTF-8 character or between CR and LF.
    for stream in (STREAM, STREAM.replace(b"\n", b"\r\n"), STREAM.replace(b"\n", b"\r")):
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        assert decode(*chunks) == EXPECTED


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    assert decode(b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n") == ["x", "y"]


def test_a_field_without_value_and_blank_lines_alone() -> None:
    assert decode(b"\n\n\ndata\n\ndata:\n\n") == ["", ""]


def test_an_unfinished_event_is_not_delivered() -> None:
    assert decode(b"data: whole\n\ndata: cut") == ["whole"]
    assert decode(b"data: no blank line after it\n") == []


def test_a_line_that_never_ends_is_bounded() -> None:
    decoder = EventDecoder(limit=1000)
    assert list(decoder.feed(b"data: ")) == []
    with pytest.raises(SSEError, match="longer than 1000 bytes"):
        for _ in range(100):
            list(decoder.feed(b"x" * 64))


def test_an_event_of_many_lines_is_bounded() -> None:
    with pytest.raises(SSEError, match="longer than"):
        decode(b"data: 0123456789\n" * 200, limit=1000)


def test_many_small_events_are_not_limited_together() -> None:
    assert len(decode(b"data: 0123456789\n\n" * 1000, limit=100)) == 1000


def test_events_before_a_bad_line_still_come_out() -> None:
    decoder = EventDecoder(limit=100)
    out = []
    with pytest.raises(SSEError):
        out.extend(decoder.feed(b"data: first\n\ndata: " + b"x" * 200))
    assert out == ["first"]


def test_text_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(SSEError, match="UTF-8"):
        decode(b"data: \xff\xfe\n\n")
    assert issubclass(SSEError, ValueError)  # a malformed response, as bad JSON is


def test_events_from_an_async_body() -> None:
    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(STREAM), 5):
            yield STREAM[i:i + 5]
        yield b"data: left unfinished"

    async def collect() -> list[str]:
        return [event async for event in events(body())]

    assert asyncio.run(collect()) == EXPECTED
