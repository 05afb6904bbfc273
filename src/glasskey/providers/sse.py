"""An incremental Server-Sent Events parser: bytes in, complete events out.

Upstreams split events across network chunks at arbitrary points; the parser keeps the
unfinished tail and yields each event once its blank line arrives (the WHATWG rules: ``event:``,
``data:`` lines joined by newlines, comments ignored, CRLF accepted).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

MAX_EVENT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    event: str
    data: str


class SSEParser:
    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[Event]:
        """The events ``chunk`` completes, each as soon as it is parsed.

        A generator: when an upstream's answer arrives in one read (a fast host sends a whole
        stream at once), the first event goes on before the rest of the read is parsed. The caller
        consumes it to the end before feeding the next chunk.
        """
        buffer = self._buffer + chunk if self._buffer else chunk
        if len(buffer) > MAX_EVENT_BYTES:
            raise ValueError("an upstream event is larger than the limit")
        self._buffer = b""
        start = 0
        find = buffer.find
        while (index := find(b"\n", start)) >= 0:
            # An offset instead of cutting the buffer after each line: one copy per read, not per line.
            line = buffer[start:index]
            start = index + 1
            event = self._line(line.rstrip(b"\r").decode("utf-8", errors="replace"))
            if event is not None:
                yield event
        self._buffer = buffer[start:]

    def _line(self, line: str) -> Event | None:
        if not line:
            if not self._data and not self._event:
                return None
            event = Event(event=self._event or "message", data="\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def close(self) -> list[Event]:
        """Events still pending when the stream ends (a last event with no blank line)."""
        events = list(self.feed(b"\n")) if self._buffer else []
        tail = self._line("")
        return [*events, tail] if tail is not None else events


class Pause:
    """A stream's word, between its chunks, that it is about to wait (a network read, a pause).

    A relay buffers what it forwards and sends it when the stream is about to wait: every event
    parsed from one network read goes out in one write instead of one write (and one system call)
    per event, and nothing waits in the buffer while the stream waits. Providers hand this back as
    data, only to a caller that asks for it (``stream_chat(..., pauses=True)``); the gateway decides
    what to write to the client.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "PAUSE"


PAUSE = Pause()
