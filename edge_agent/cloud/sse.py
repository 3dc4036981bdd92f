"""Server-sent events: the framing of a streamed /chat/completions body.

Only what the chat stream uses: ``data:`` fields (several lines of one event are
joined with "\\n"), events ended by a blank line, comments and other fields
(``event:``, ``id:``, ``retry:``) skipped, lines ended by LF, CRLF or CR. The
payload is not interpreted here (JSON and ``[DONE]`` are the caller's).

A server owes us no newline: the text held for one event is bounded
(``MAX_EVENT_BYTES``), so a line that never ends costs that much and no more.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator

MAX_EVENT_BYTES = 1 << 20
"""Bytes of one event, its unfinished line included. A model's delta is a few
bytes and a tool call's arguments at most MAX_ARGUMENT_CHARS (llm.py): a larger
event is a broken or hostile stream."""


class SSEError(ValueError):
    """The stream is not server-sent events we can use (an event too long, or
    text that is not UTF-8)."""


class EventDecoder:
    """Incremental: ``feed`` bytes as they arrive, get the data of each event they
    complete. Bytes are split into lines before decoding, so a character cut in
    two by the network is joined first."""

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self._limit = limit
        self._partial = bytearray()
        """The line still waiting for its end."""
        self._after_cr = False
        """The last line ended with CR: a LF opening the next bytes belongs to it."""
        self._data: list[str] = []
        self._size = 0
        """Bytes held for the current event (its data lines)."""

    def feed(self, chunk: bytes) -> Iterator[str]:
        """The data of every event ``chunk`` completes (often none, sometimes many),
        each as soon as it is complete: those before a bad line still come out."""
        if not chunk:
            return
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = False
        for piece in chunk.splitlines(keepends=True):
            if not piece.endswith((b"\n", b"\r")):  # the last piece, its end still to come
                self._partial += piece
                self._check(len(self._partial))
                break
            self._after_cr = piece.endswith(b"\r")
            line = piece.rstrip(b"\r\n")
            if self._partial:
                line = bytes(self._partial) + line
                self._partial.clear()
            event = self._line(line)
            if event is not None:
                yield event

    def _line(self, line: bytes) -> str | None:
        if not line:  # a blank line ends the event
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data, self._size = [], 0
            return data
        name, _, value = line.partition(b":")
        if name != b"data":  # a comment (empty name) or a field the chat stream has no use for
            return None
        value = value.removeprefix(b" ")
        self._check(len(value))
        try:
            self._data.append(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise SSEError(f"an event is not UTF-8 ({exc.reason})") from None
        self._size += len(value) + 1
        return None

    def _check(self, pending: int) -> None:
        if self._size + pending > self._limit:
            raise SSEError(f"an event longer than {self._limit} bytes")


async def events(chunks: AsyncIterable[bytes], limit: int = MAX_EVENT_BYTES) -> AsyncIterator[str]:
    """The data of each event in a body read chunk by chunk; an event the body
    leaves unfinished is dropped, as the SSE rules say."""
    decoder = EventDecoder(limit)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
