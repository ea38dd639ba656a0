"""HTTP plumbing shared by both listeners: request bodies (streamed), multipart, responses."""

import json
import re
import urllib.parse

CHUNK = 1 << 20          # read and write unit for bodies
FIELD_LIMIT = 1 << 20    # largest non-file form field or JSON body kept in memory

V3_JSON = "application/json; charset=utf-8"
V2_JSON = "application/json"


class HTTPError(Exception):
    """Raised anywhere in a handler to answer with a ready-made response."""

    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


class TooLarge(Exception):
    """A body or part went over the limit the route allows."""


class BadBody(Exception):
    """The body is not what its headers announce (bad chunking, broken multipart...)."""


class Response:
    """Status, headers and a body given as bytes or as a chunk iterator of known length."""

    def __init__(self, status, body=b"", content_type=None, headers=None, chunks=None, length=None):
        self.status = status
        self.headers = list(headers or [])
        if content_type:
            self.headers.insert(0, ("Content-Type", content_type))
        self.body = body
        self._chunks = chunks
        self.length = len(body) if chunks is None else length

    def chunks(self):
        if self._chunks is None:
            return iter([self.body] if self.body else [])
        return self._chunks


def json_response(status, obj, content_type=V3_JSON, headers=None):
    body = json.dumps(obj).encode()
    headers = [("Cache-Control", "no-cache")] + list(headers or [])
    return Response(status, body, content_type, headers)


def v3_error(status, code, message, headers=None):
    return json_response(status, {"error": {"code": code, "message": message}}, headers=headers)


def empty(status, headers=None):
    return Response(status, b"", None, headers)


class Body:
    """The request body, read lazily: Content-Length or chunked, with Expect: 100-continue
    answered only when a handler actually wants the body (so early errors need no upload)."""

    def __init__(self, handler):
        self._handler = handler
        self._rfile = handler.rfile
        headers = handler.headers
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self.read_bytes = 0
        if self.chunked:
            self.declared = None
            self._left = 0          # bytes left in the current chunk
            self._ended = False
        else:
            try:
                self.declared = int(headers.get("Content-Length") or 0)
            except ValueError:
                raise HTTPError(v3_error(400, "BadRequestError", "Invalid Content-Length"))
            self._left = self.declared
            self._ended = self.declared == 0

    @property
    def finished(self):
        return self._ended

    def _start(self):
        if self._handler.expect_pending:
            self._handler.expect_pending = False
            self._handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._handler.wfile.flush()

    def chunks(self):
        """Yield the body in pieces of at most CHUNK bytes."""
        self._start()
        while not self._ended:
            data = self._next_piece()
            if data:
                self.read_bytes += len(data)
                yield data

    def _next_piece(self):
        if not self.chunked:
            data = self._rfile.read(min(self._left, CHUNK))
            if not data:
                raise BadBody("body shorter than Content-Length")
            self._left -= len(data)
            self._ended = self._left == 0
            return data
        if self._left == 0:
            size_line = self._rfile.readline(1024)
            try:
                self._left = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadBody("bad chunk size line")
            if self._left == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass            # skip trailers
                self._ended = True
                return b""
        data = self._rfile.read(min(self._left, CHUNK))
        if not data:
            raise BadBody("connection closed inside a chunk")
        self._left -= len(data)
        if self._left == 0:
            self._rfile.readline(16)    # CRLF after the chunk data
        return data

    def read_all(self, limit=FIELD_LIMIT):
        parts, size = [], 0
        for data in self.chunks():
            size += len(data)
            if size > limit:
                raise TooLarge()
            parts.append(data)
        return b"".join(parts)

    def drain(self):
        for _ in self.chunks():
            pass


def header_params(value):
    """Split 'type; a=1; b="x y"' into ('type', {'a': '1', 'b': 'x y'})."""
    main, _, rest = (value or "").partition(";")
    params = {}
    for match in re.finditer(r'\s*([^\s=;]+)\s*=\s*("(?:\\.|[^"\\])*"|[^;]*)\s*;?', rest):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name] = raw
    return main.strip().lower(), params


class MultipartParser:
    """Incremental multipart/form-data parser. feed() takes bytes as they arrive; for each part
    open_part(headers) returns a sink with write(bytes) and close(). Never holds a whole part."""

    def __init__(self, boundary, open_part):
        self._first = b"--" + boundary
        self._sep = b"\r\n--" + boundary
        self._open_part = open_part
        self._buf = b""
        self._state = "preamble"
        self._sink = None

    def feed(self, data):
        self._buf += data
        while True:
            if self._state == "preamble":
                at = self._buf.find(self._first)
                if at < 0:
                    self._buf = self._buf[-len(self._first):]
                    return
                self._buf = self._buf[at + len(self._first):]
                self._state = "delimiter"
            if self._state == "delimiter":
                if len(self._buf) < 2:
                    return
                if self._buf.startswith(b"--"):
                    self._state, self._buf = "done", b""
                    return
                if not self._buf.startswith(b"\r\n"):
                    raise BadBody("garbage after multipart boundary")
                self._buf = self._buf[2:]
                self._state = "headers"
            if self._state == "headers":
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > 65536:
                        raise BadBody("multipart part headers too long")
                    return
                headers = {}
                for line in self._buf[:end].decode("utf-8", "replace").split("\r\n"):
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self._buf = self._buf[end + 4:]
                self._sink = self._open_part(headers)
                self._state = "data"
            if self._state == "data":
                end = self._buf.find(self._sep)
                if end < 0:
                    keep = len(self._sep) - 1      # a separator may straddle two feeds
                    if len(self._buf) > keep:
                        self._sink.write(self._buf[:-keep])
                        self._buf = self._buf[-keep:]
                    return
                self._sink.write(self._buf[:end])
                self._sink.close()
                self._sink = None
                self._buf = self._buf[end + len(self._sep):]
                self._state = "delimiter"
            if self._state == "done":
                self._buf = b""
                return

    def close(self):
        if self._state != "done":
            raise BadBody("multipart body ends before its closing boundary")


class FieldSink:
    """Keeps a small form field in memory."""

    def __init__(self, fields, name):
        self._fields, self._name, self._parts, self._size = fields, name, [], 0

    def write(self, data):
        self._size += len(data)
        if self._size > FIELD_LIMIT:
            raise TooLarge()
        self._parts.append(data)

    def close(self):
        self._fields.setdefault(self._name, b"".join(self._parts).decode("utf-8", "replace"))


class DiscardSink:
    def write(self, data):
        pass

    def close(self):
        pass


def read_form(chunks, content_type, open_file=None):
    """Parse an urlencoded or multipart body (an iterable of byte chunks) into {name: str}.
    File parts (those with a filename) go to open_file(name, filename) -> sink, or are
    discarded. Other bodies are consumed and give no fields."""
    kind, params = header_params(content_type)
    fields = {}
    if kind == "application/x-www-form-urlencoded":
        sink = FieldSink(fields, "body")
        for data in chunks:
            sink.write(data)
        sink.close()
        for name, value in urllib.parse.parse_qsl(fields.pop("body"), keep_blank_values=True):
            fields.setdefault(name, value)
        return fields
    if kind != "multipart/form-data":
        for _ in chunks:
            pass
        return fields
    if not params.get("boundary"):
        raise BadBody("multipart body without a boundary")

    def open_part(headers):
        _, disposition = header_params(headers.get("content-disposition"))
        if "filename*" in disposition:
            raise HTTPError(v3_error(400, "BadRequestError",
                                     "filename* parameters are not supported; use filename="))
        name = disposition.get("name", "")
        if "filename" in disposition:
            return open_file(name, disposition["filename"]) if open_file else DiscardSink()
        return FieldSink(fields, name)

    parser = MultipartParser(params["boundary"].encode(), open_part)
    for data in chunks:
        parser.feed(data)
    parser.close()
    return fields


def limited(body, limit):
    """The body's chunks, raising TooLarge as soon as more than `limit` bytes arrived."""
    for data in body.chunks():
        if body.read_bytes > limit:
            raise TooLarge()
        yield data
