"""The two listeners (main and storage), request dispatch, routing, and the fake as a whole."""

import hmac
import itertools
import os
import re
import secrets
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import api_v2, api_v3, control
from .catalog import Catalog
from .feeds import KINDS as FEED_KINDS, Feeds
from .httpio import BadBody, Body, HTTPError, Response, TooLarge, v3_error
from .policy import GENERIC_FAULTS, Faults, Quotas, RequestLog
from .state import Store
from .suffixes import SuffixList

# Named path segments with a fixed set of values; others match one path segment.
PLACEHOLDERS = {"coll": "files|urls|domains|ip_addresses",
                "feed": "|".join(FEED_KINDS)}


class Router:
    """Ordered table of (methods, path pattern, handler); the first matching path wins.
    Patterns name path segments as {name}; their values reach the handler as arguments."""

    def __init__(self):
        self._routes = []

    def add(self, methods, pattern, handler):
        regex = re.sub(r"\{(\w+)\}",
                       lambda m: f"(?P<{m.group(1)}>{PLACEHOLDERS.get(m.group(1), '[^/]+')})",
                       pattern)
        self._routes.append((set(methods.split(",")), re.compile(f"^{regex}$"), handler))

    def dispatch(self, req):
        """The handler's response; None when no route has this path."""
        allowed = set()
        for methods, regex, handler in self._routes:
            match = regex.match(req.path)
            if not match:
                continue
            if req.method not in methods:
                allowed |= methods
                continue
            args = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            return handler(req, **args)
        if allowed:
            raise HTTPError(v3_error(405, "BadRequestError", f"Method {req.method} not allowed",
                                     [("Allow", ", ".join(sorted(allowed)))]))
        return None


class Request:
    """One request as routes see it."""

    def __init__(self, handler, listener):
        self.fake = handler.server.fake
        self.listener = listener
        self.method = handler.command
        self.target = handler.path      # path and query as requested
        split = urllib.parse.urlsplit(handler.path)
        self.path = split.path
        self.raw_query = split.query
        self.query = {}
        for name, value in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            self.query.setdefault(name, value)
        self.headers = {name.lower(): value for name, value in handler.headers.items()}
        host, port = handler.server.server_address[:2]
        self.origin = "http://" + self.headers.get("host", f"{host}:{port}")
        self.key = None             # the API key the request used, once an API guard saw it
        self.fault = None           # the fault applied to this request, if any
        self.body = Body(handler)

    def take_fault(self, kind):
        """Consume an armed fault of a route-specific kind that matches this request."""
        fault = self.fake.faults.take({kind}, self.listener, self.method, self.path)
        if fault:
            self.fault = fault
        return fault


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300               # idle keep-alive connections are dropped after this

    def version_string(self):
        return "Google Frontend"

    def log_message(self, *args):
        pass                    # the request log replaces the stderr access log

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: with Nagle on, the body waits
        # for the client's delayed ACK (~40 ms per request on a kept-alive connection).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_id = next(self.server.connections)

    def parse_request(self):
        self.expect_pending = False
        return super().parse_request()

    def handle_expect_100(self):
        # Answer "100 Continue" only when a route reads the body (Body does it), so that an
        # early refusal (401, 413, quota...) spares the client the upload.
        self.expect_pending = True
        return True

    def do_any(self):
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True    # the client gave up (a test's timeout, say)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_any

    def _serve(self):
        try:
            req = Request(self, self.server.listener)
        except HTTPError as err:
            self.close_connection = True
            self._send(err.response, None)
            return
        app = self.server.app
        if app.is_control(req):
            self._finish(req, self._run(app, req), None)
            return
        started = time.monotonic()
        entry = self.server.fake.log.open(
            listener=req.listener, conn=self.conn_id, method=req.method, path=req.path,
            query=req.raw_query, headers=req.headers,
            key=req.headers.get("x-apikey") or req.query.get("apikey"))
        fault = self.server.fake.faults.take(GENERIC_FAULTS, req.listener, req.method, req.path)
        if fault:
            req.fault = fault
            if fault.type == "slow":
                time.sleep(fault.delay)
            if fault.type == "drop":
                # Closed without a byte of answer, as a server that closes an idle kept-alive
                # connection just as a request arrives on it.
                self.close_connection = True
                entry.update(status=0, fault="drop", duration=time.monotonic() - started)
                return
        response = (fault and fault.response(req)) or self._run(app, req)
        if fault and fault.type == "shape":
            response = fault.reshaped(response)
        try:
            self._finish(req, response, req.fault)
        finally:
            entry.update(status=response.status, body_length=req.body.read_bytes,
                         key=req.key or entry["key"], duration=time.monotonic() - started,
                         fault=req.fault.type if req.fault else None)

    def _run(self, app, req):
        try:
            return app.handle(req)
        except HTTPError as err:
            return err.response
        except TooLarge:
            return v3_error(413, "RequestEntityTooLargeError",
                            "Request body too large for this endpoint (direct uploads take up to "
                            "32 MB; use /files/upload_url for bigger files, up to 650 MB)")
        except BadBody as err:
            self.close_connection = True
            return v3_error(400, "BadRequestError", str(err))
        except (ConnectionError, socket.timeout):
            self.close_connection = True
            return v3_error(400, "BadRequestError", "connection lost while reading the body")
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return v3_error(500, "InternalError", "The fake server failed; see its stderr")

    def _finish(self, req, response, fault):
        # A kept-alive connection needs the whole request body read before the next request.
        if not req.body.finished and not self.close_connection:
            if self.expect_pending:
                self.close_connection = True    # the client is still waiting to send it
            else:
                try:
                    req.body.drain()
                except (BadBody, ConnectionError, socket.timeout):
                    self.close_connection = True
        self._send(response, fault)

    def _send(self, response, fault):
        cut = fault if fault and fault.type == "cut" else None
        chunked = bool(cut and cut.spec.get("chunked"))
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif response.status != 204:
            self.send_header("Content-Length", str(response.length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if fault and fault.type == "slow_body":
            time.sleep(fault.delay)
        limit = cut.cut_at(response.length) if cut else response.length
        sent = 0
        for data in response.chunks():
            data = data[: limit - sent]
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            sent += len(data)
            if sent >= limit:
                break
        self.wfile.flush()
        if cut:
            self.close_connection = True
            if cut.spec.get("reset"):
                self._reset()

    def _reset(self):
        """End the connection with a TCP reset (RST) instead of an orderly close (FIN)."""
        time.sleep(0.1)         # let the client read what was sent first
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class Listener(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, fake, name, app):
        self.fake, self.listener, self.app = fake, name, app
        self.connections = itertools.count(1)
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        # A client that resets its connection (the specs' cancelled and timed-out calls do,
        # on purpose) is no error of the fake's: only other exceptions get a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class MainApp:
    def __init__(self, fake):
        self.fake = fake
        self.api = Router()
        api_v3.register(self.api, fake)
        api_v2.register(self.api, fake)
        self.control = Router()
        control.register(self.control, fake)

    @staticmethod
    def is_control(req):
        return req.path.startswith("/_fake/")

    def handle(self, req):
        router = self.control if self.is_control(req) else self.api
        response = router.dispatch(req)
        if response is not None:
            return response
        if req.path.startswith("/vtapi/v2/"):
            return Response(404)
        return v3_error(404, "NotFoundError", f"Resource not found: {req.path}")


DENIED = Response(403, b"AccessDenied: missing or bad signature", "text/plain")


class StorageApp:
    """The "storage host" that download redirects point at: serves contents by sha256 to
    holders of a valid signature, and never needs (nor should get) an API key."""

    def __init__(self, fake):
        self.fake = fake
        self.router = Router()
        self.router.add("GET", "/{sha256}", self.blob)
        self.router.add("GET", "/feeds/{feed}/{minute}", self.feed_batch)

    @staticmethod
    def is_control(req):
        return False

    def handle(self, req):
        return self.router.dispatch(req) or Response(404, b"NoSuchKey", "text/plain")

    def signed(self, req, name):
        return hmac.compare_digest(req.query.get("sig", ""), self.fake.signature(name))

    def feed_batch(self, req, feed, minute):
        if not self.signed(req, f"feeds/{feed}/{minute}"):
            return DENIED
        return self.fake.feed_response(feed, minute)

    def blob(self, req, sha256):
        if not self.signed(req, sha256):
            return DENIED
        try:
            f = open(self.fake.store.content.path(sha256), "rb")
        except FileNotFoundError:
            return Response(404, b"NoSuchKey", "text/plain")
        tampered = req.take_fault("tamper") is not None
        return Response(200, content_type="application/octet-stream",
                        chunks=read_file(f, tampered), length=os.fstat(f.fileno()).st_size)


def read_file(f, tamper):
    """An open file's bytes in chunks, closing it at the end; `tamper` flips every bit of
    the first byte. Opened by the caller, the file stays readable if a reset removes it."""
    with f:
        first = True
        while True:
            data = f.read(1 << 20)
            if not data:
                return
            if tamper and first:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            first = False
            yield data


class FakeVT:
    def __init__(self, keys, premium_keys, samples_dir, steps, storage_host, suffix_list):
        self.start_keys = set(keys) | set(premium_keys)
        self.start_premium = set(premium_keys)
        self.keys, self.premium = set(self.start_keys), set(self.start_premium)
        self.default_key = keys[0]
        self.tmp = tempfile.mkdtemp(prefix="fakevt-")
        self.catalog = Catalog(samples_dir, SuffixList(suffix_list))
        self.store = Store(self.catalog, os.path.join(self.tmp, "content"), steps)
        self.log, self.faults, self.quotas = RequestLog(), Faults(), Quotas()
        self._secret = secrets.token_bytes(16)
        self.main = Listener(("127.0.0.1", 0), self, "main", MainApp(self))
        self.storage = Listener((storage_host, 0), self, "storage", StorageApp(self))
        self.main_port = self.main.server_address[1]
        self.storage_port = self.storage.server_address[1]
        self.storage_origin = f"http://{storage_host}:{self.storage_port}"
        self.feeds = Feeds(self.catalog, os.path.join(self.tmp, "feeds"),
                           f"http://127.0.0.1:{self.main_port}")

    def start(self):
        for listener in (self.main, self.storage):
            threading.Thread(target=listener.serve_forever, args=(0.1,), daemon=True).start()

    def close(self):
        for listener in (self.main, self.storage):
            listener.shutdown()
            listener.server_close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def reset(self):
        self.keys, self.premium = set(self.start_keys), set(self.start_premium)
        self.log.clear()
        self.faults.clear()
        self.quotas.clear()
        self.store.reset()
        self.feeds.reset()

    def set_key(self, key, premium):
        """Make `key` valid, with premium privileges or not."""
        self.keys.add(key)
        (self.premium.add if premium else self.premium.discard)(key)

    def batch_limit(self, key):
        """Resources one v2 report or scan request may carry: 4 on a public key, 25 on a
        premium one (the service's documented ceilings)."""
        return 25 if key in self.premium else 4

    def signature(self, name):
        return hmac.new(self._secret, name.encode(), "sha256").hexdigest()[:32]

    def storage_url(self, name):
        """A signed URL on the storage host for a content (by sha256) or a feed batch."""
        return f"{self.storage_origin}/{name}?sig={self.signature(name)}"

    def feed_response(self, kind, minute):
        """A published feed batch, streamed from its file."""
        f = open(self.feeds.batch_path(kind, minute), "rb")
        return Response(200, content_type="application/octet-stream",
                        chunks=read_file(f, False), length=os.fstat(f.fileno()).st_size)
