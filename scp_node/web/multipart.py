"""Incremental ``multipart/related`` parsing (RFC 2387 on RFC 2046 §5.1) for STOW-RS bodies.

The parser is fed the request body chunk by chunk and returns events (part begins with its headers,
part data, part ends). It never holds more than one chunk plus a delimiter's length of body bytes,
so a multi-gigabyte upload is parsed in constant memory; the caller decides where part data goes.
"""

from __future__ import annotations

import email.message
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 16 * 1024


class MultipartError(ValueError):
    """The body is not a well-formed multipart message."""


@dataclass(frozen=True)
class MediaType:
    """A parsed Content-Type value: ``type/subtype`` (lower case) and its parameters."""

    value: str
    params: dict[str, str] = field(default_factory=dict)


def parse_media_type(header: str) -> MediaType:
    """Split a Content-Type header value into media type and parameters (quotes removed)."""
    msg = email.message.Message()
    msg["content-type"] = header
    params: dict[str, str] = {}
    for item in msg.get_params(failobj=[])[1:]:
        key, value = item
        params[key.lower()] = str(value).strip().strip('"')
    main = header.split(";", 1)[0].strip().lower()
    return MediaType(main, params)


@dataclass(frozen=True)
class PartBegin:
    headers: dict[str, str]


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


Event = PartBegin | PartData | PartEnd

_PREAMBLE, _HEADERS, _BODY, _DONE = range(4)


class MultipartParser:
    """Streaming parser for one multipart body with a known boundary.

    ``feed`` returns the events the new bytes complete; ``close`` checks the closing delimiter
    was seen. A body is ``preamble CRLF? --b headers CRLF CRLF data (CRLF --b ...)* CRLF --b--``.
    """

    def __init__(self, boundary: str) -> None:
        if not boundary or len(boundary) > 200:
            raise MultipartError("multipart boundary missing or longer than 200 characters")
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        # A leading CRLF lets the first delimiter (which may open the body) match like the others.
        self._buf = bytearray(b"\r\n")
        self._state = _PREAMBLE

    @property
    def finished(self) -> bool:
        return self._state == _DONE

    def feed(self, chunk: bytes) -> list[Event]:
        if self._state == _DONE:
            return []  # the epilogue is ignored (RFC 2046 §5.1.1)
        self._buf += chunk
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        if self._state != _DONE:
            raise MultipartError("multipart body ended before its closing delimiter")

    def _step(self, events: list[Event]) -> bool:
        """Advance the state machine by one transition; False when more input is needed."""
        if self._state == _PREAMBLE:
            return self._after_delimiter(self._buf.find(self._delimiter), events, in_body=False)
        if self._state == _HEADERS:
            return self._headers(events)
        if self._state == _BODY:
            return self._body(events)
        return False

    def _after_delimiter(self, index: int, events: list[Event], in_body: bool) -> bool:
        keep = len(self._delimiter) - 1
        if index < 0:
            if in_body and len(self._buf) > keep:
                events.append(PartData(bytes(self._buf[:-keep])))
                del self._buf[:-keep]
            elif not in_body and len(self._buf) > keep:
                del self._buf[:-keep]
            return False
        if in_body and index:
            events.append(PartData(bytes(self._buf[:index])))
            del self._buf[:index]
            index = 0
        end = index + len(self._delimiter)
        if len(self._buf) < end + 2:
            return False
        if in_body:
            events.append(PartEnd())
        if self._buf[end : end + 2] == b"--":
            self._state = _DONE
            self._buf.clear()
            return False
        line_end = self._buf.find(b"\r\n", end)
        if line_end < 0:
            if len(self._buf) - end > 1024:
                raise MultipartError("delimiter line too long")
            if in_body:  # PartEnd was emitted: do not emit it again on the next call
                self._state = _PREAMBLE
            return False
        if self._buf[end:line_end].strip(b" \t"):
            raise MultipartError("unexpected characters after a multipart delimiter")
        del self._buf[: line_end + 2]
        self._state = _HEADERS
        return True

    def _headers(self, events: list[Event]) -> bool:
        if self._buf.startswith(b"\r\n"):
            block = b""
            del self._buf[:2]
        else:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEADER_BYTES:
                    raise MultipartError("multipart part headers too long")
                return False
            block = bytes(self._buf[:end])
            del self._buf[: end + 4]
        events.append(PartBegin(_parse_headers(block)))
        self._state = _BODY
        return True

    def _body(self, events: list[Event]) -> bool:
        return self._after_delimiter(self._buf.find(self._delimiter), events, in_body=True)


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError("malformed multipart part header line")
        headers[name.strip().lower()] = value.strip()
    return headers
