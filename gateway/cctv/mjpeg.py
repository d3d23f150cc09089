"""Split an HTTP MJPEG stream (multipart/x-mixed-replace) into JPEG images.

Cameras and microcontrollers bend RFC 2046 in several ways, and a strict
parser loses frames to each of them. This parser accepts:

- a boundary parameter that already holds the two dashes
  (``boundary=--myboundary``, parts introduced by ``--myboundary``), and any
  number of dashes before the boundary on the delimiter line;
- a body that starts with the first part's headers, or with the JPEG itself,
  without a leading delimiter line;
- parts without ``Content-Length``: the part then ends at the next delimiter,
  or, when the stream ends, at the end of the data if that is a whole JPEG;
- LF instead of CRLF line ends, a quoted boundary, and a stream that ends
  without a closing delimiter.

A part is kept only when it holds a whole JPEG (starts FF D8, ends FF D9):
a truncated last part is counted, never passed on as a frame.
"""

from __future__ import annotations

import re

__all__ = ["MjpegParser", "boundary_of"]

JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"
# A part's header block larger than this is not a header block.
MAX_HEADER_BYTES = 8192
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BOUNDARY_PARAM = re.compile(r'boundary\s*=\s*("([^"]*)"|[^;\s]+)', re.IGNORECASE)


def boundary_of(content_type: str) -> str | None:
    """Return the boundary without its leading dashes, or None when unnamed."""
    match = _BOUNDARY_PARAM.search(content_type)
    if match is None:
        return None
    value = match.group(2) if match.group(2) is not None else match.group(1)
    core = value.strip().lstrip("-")
    return core or None


class MjpegParser:
    """Feed it the body's bytes as they come; it returns each whole JPEG.

    Args:
        max_part_bytes: a part longer than this is refused with ValueError,
            so a stream without delimiters cannot fill the memory.
    """

    def __init__(self, content_type: str, max_part_bytes: int = 16 << 20) -> None:
        core = boundary_of(content_type)
        self._max_part_bytes = max_part_bytes
        self._buffer = bytearray()
        self._length: int | None = None  # Content-Length of the part being read
        self._in_body = False
        self.truncated_parts = 0
        self.skipped_bytes = 0
        if core is None:
            self._delimiter: re.Pattern[bytes] | None = None
            self._delimiter_line: re.Pattern[bytes] | None = None
        else:
            escaped = re.escape(core.encode("latin-1"))
            self._delimiter = re.compile(rb"\r?\n-*" + escaped)
            self._delimiter_line = re.compile(rb"-*" + escaped + rb"(--)?[ \t]*\r?\n")

    def feed(self, data: bytes) -> list[bytes]:
        """Take more bytes of the body; return the JPEGs completed by them."""
        self._buffer += data
        images: list[bytes] = []
        while True:
            image, progressed = self._step()
            if image is not None:
                images.append(image)
            if not progressed:
                break
        if len(self._buffer) > self._max_part_bytes:
            raise ValueError(
                f"MJPEG part longer than {self._max_part_bytes} bytes without a "
                "delimiter: not a multipart JPEG stream"
            )
        return images

    def finish(self) -> list[bytes]:
        """Say the stream ended; return its last JPEG if it arrived whole."""
        images = self.feed(b"")
        if self._in_body and self._length is None:
            body = bytes(self._buffer).rstrip(b"\r\n")
            if _whole_jpeg(body):
                images.append(body)
            elif body:
                self.truncated_parts += 1
        elif self._in_body:
            self.truncated_parts += 1
        self._buffer.clear()
        self._in_body = False
        return images

    def _step(self) -> tuple[bytes | None, bool]:
        """Parse what the buffer allows; return (image or None, progressed)."""
        if self._in_body:
            return self._read_body()
        return None, self._read_part_start()

    def _read_part_start(self) -> bool:
        buffer = self._buffer
        stripped = len(buffer) - len(buffer.lstrip(b"\r\n \t"))
        if stripped:
            del buffer[:stripped]
        if not buffer:
            return False
        if buffer.startswith(JPEG_START):
            # A part without headers: the JPEG follows the delimiter directly.
            self._in_body, self._length = True, None
            return True
        if self._delimiter_line is not None and buffer.startswith(b"-"):
            match = self._delimiter_line.match(buffer)
            if match:
                del buffer[: match.end()]
                return True
            if b"\n" not in buffer[:MAX_HEADER_BYTES]:
                return False  # the delimiter line is not complete yet
        return self._read_headers()

    def _read_headers(self) -> bool:
        buffer = self._buffer
        end = _HEADER_END.search(buffer, 0, MAX_HEADER_BYTES)
        if end is None:
            if len(buffer) < MAX_HEADER_BYTES and JPEG_START not in buffer:
                return False  # wait for the rest of the header block
            return self._resynchronise()
        length: int | None = None
        for line in bytes(buffer[: end.start()]).splitlines():
            name, colon, value = line.partition(b":")
            if not colon:
                return self._resynchronise()
            if name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = None  # unreadable: find the end by delimiter
        del buffer[: end.end()]
        self._in_body, self._length = True, length
        return True

    def _resynchronise(self) -> bool:
        # Not a delimiter, not headers, not a JPEG: skip to the next JPEG start.
        start = self._buffer.find(JPEG_START, 1)
        skipped = len(self._buffer) if start < 0 else start
        self.skipped_bytes += skipped
        del self._buffer[:skipped]
        return start >= 0

    def _read_body(self) -> tuple[bytes | None, bool]:
        buffer = self._buffer
        if self._length is not None:
            if len(buffer) < self._length:
                return None, False
            body = bytes(buffer[: self._length])
            del buffer[: self._length]
        else:
            end = self._body_end()
            if end is None:
                return None, False
            body = bytes(buffer[:end]).rstrip(b"\r\n")
            del buffer[:end]
        self._in_body = False
        if _whole_jpeg(body):
            return body, True
        self.truncated_parts += 1
        return None, True

    def _body_end(self) -> int | None:
        """Return where a part without Content-Length ends, if it has arrived."""
        if self._delimiter is not None:
            match = self._delimiter.search(self._buffer)
            return None if match is None else match.start()
        # No boundary was named: the JPEG's own end marker ends the part.
        end = self._buffer.find(JPEG_END)
        return None if end < 0 else end + len(JPEG_END)


def _whole_jpeg(body: bytes) -> bool:
    return body.startswith(JPEG_START) and body.rstrip(b"\r\n").endswith(JPEG_END)
