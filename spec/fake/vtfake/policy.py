"""Things tests switch on and inspect: the request log, fault switches and per-key quotas."""

import collections
import json
import re
import threading
import time

from .httpio import CHUNK, V3_JSON, Response, empty, v3_error

# ---- request log ------------------------------------------------------------------------


class RequestLog:
    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self):
        with self._lock:
            self._entries = []

    def open(self, **fields):
        """Record a request on arrival; the caller fills in the outcome later. Every key
        exists from the start so that readers never see the entry change shape."""
        entry = {"seq": 0, "time": time.time(), "mono": time.monotonic(), "listener": None,
                 "conn": None, "method": None, "path": None, "query": "", "headers": {},
                 "key": None, "body_length": 0, "status": None, "fault": None, "duration": None}
        entry.update(fields)
        with self._lock:
            entry["seq"] = len(self._entries) + 1
            self._entries.append(entry)
        return entry

    def entries(self, listener=None, since=0):
        with self._lock:
            return [dict(e) for e in self._entries
                    if e["seq"] > since and (listener is None or e["listener"] == listener)]


# ---- fault switches ---------------------------------------------------------------------

# Faults the dispatcher applies to any route, and faults only one route knows how to apply.
GENERIC_FAULTS = {"status", "429", "slow", "slow_body", "cut", "badjson", "wrongtype", "shape",
                  "redirect", "huge", "deep", "drop"}
ROUTE_FAULTS = {"tamper", "redirect_elsewhere"}

DEFAULT_CODES = {400: "BadRequestError", 401: "AuthenticationRequiredError",
                 403: "ForbiddenError", 404: "NotFoundError", 409: "AlreadyExistsError",
                 424: "FailedDependencyError", 429: "TooManyRequestsError",
                 503: "TransientError", 504: "DeadlineExceededError"}

# Wrong-shape variants of a JSON answer (a v3 body {"data": ...}).
SHAPES = {"data_string", "data_null", "data_numbers", "attributes_array", "collection_object",
          "no_data"}
HUGE_DEFAULT = 300 * 1024 * 1024
HUGE_HEAD = b'{"data": {"type": "file", "id": "huge", "attributes": {"padding": "'
HUGE_TAIL = b'"}}}'


def header_text(value):
    """A header value as given: strings verbatim, numbers as JSON wrote them."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return json.dumps(value)


def reshape(body, variant):
    """A JSON answer turned into the wrong shape `variant` (see SHAPES)."""
    try:
        body = json.loads(body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"data": body}
    data = body.get("data")
    if variant == "data_string":
        body["data"] = "x"
    elif variant == "data_null":
        body["data"] = None
    elif variant == "data_numbers":
        body["data"] = [1, 2]
    elif variant == "attributes_array":
        items = data if isinstance(data, list) else [data]
        for item in items:
            if isinstance(item, dict):
                item["attributes"] = []
        if not any(isinstance(item, dict) for item in items):
            body["data"] = {"type": "object", "id": "x", "attributes": []}
    elif variant == "collection_object" and isinstance(data, list):
        body["data"] = data[0] if data else {"type": "object", "id": "x", "attributes": {}}
    elif variant == "no_data":
        body.pop("data", None)
    return json.dumps(body).encode()


def huge_chunks(size):
    """`size` bytes of one JSON object (a padding string), made as they are sent."""
    if size < len(HUGE_HEAD) + len(HUGE_TAIL):
        yield b"[" * size
        return
    yield HUGE_HEAD
    left = size - len(HUGE_HEAD) - len(HUGE_TAIL)
    block = b"a" * CHUNK
    while left > 0:
        yield block[:left]
        left -= min(left, CHUNK)
    yield HUGE_TAIL


class Fault:
    def __init__(self, spec, ident):
        self.id = ident
        self.type = str(spec.get("type"))
        if self.type not in GENERIC_FAULTS | ROUTE_FAULTS:
            raise ValueError(f"unknown fault type {self.type!r}")
        if self.type == "shape" and spec.get("variant") not in SHAPES:
            raise ValueError(f"shape needs a variant among {sorted(SHAPES)}")
        self.spec = dict(spec)
        self.method = (spec.get("method") or "").upper() or None
        self.path = spec.get("path")
        self.regex = re.compile(spec["regex"]) if spec.get("regex") else None
        self.listener = spec.get("listener") or ("storage" if self.type == "tamper" else "main")
        if self.listener not in ("main", "storage", "any"):
            raise ValueError(f"unknown listener {self.listener!r}")
        self.count = int(spec.get("count", 1))
        self.delay = float(spec.get("delay", 2))
        for name in ("at", "size", "depth"):
            if name in spec and (not isinstance(spec[name], int) or spec[name] < 0):
                raise ValueError(f"{name} must be a non-negative integer")

    def matches(self, listener, method, path):
        return (self.count != 0
                and self.listener in (listener, "any")
                and (self.method is None or self.method == method)
                and (self.path is None or path.startswith(self.path))
                and (self.regex is None or self.regex.search(path) is not None))

    def public(self):
        return dict(self.spec, id=self.id, remaining=self.count, listener=self.listener)

    def cut_at(self, length):
        """How many body bytes a "cut" fault lets through."""
        return min(self.spec.get("at", length // 2), length)

    def response(self, req):
        """The answer of a fault that replaces the whole response (None for the others)."""
        spec = self.spec
        headers = [(k, header_text(v)) for k, v in (spec.get("headers") or {}).items()]
        status = int(spec.get("status", {"status": 503, "redirect": 302}.get(self.type, 200)))
        if self.type == "status":
            if "body" in spec:
                return Response(status, spec["body"].encode(), spec.get("content_type"), headers)
            if req.listener == "storage":
                return Response(status, b"Fault injected by the fake", "text/plain", headers)
            if req.path.startswith("/vtapi/v2/"):
                return empty(status, headers)      # v2 errors have no body
            code = spec.get("code") or DEFAULT_CODES.get(status, "InternalError")
            return v3_error(status, code, spec.get("message", "Fault injected by the fake"),
                            headers)
        if self.type == "429":
            code = spec.get("code", "TooManyRequestsError")
            if "retry_after" in spec:
                headers.append(("Retry-After", header_text(spec["retry_after"])))
            default = "Quota exceeded" if code == "QuotaExceededError" else "Too many requests"
            return v3_error(429, code, spec.get("message", default), headers)
        if self.type == "badjson":
            body = spec.get("body", '{"data": {"type": "file", "id": "trunc')
            return Response(status, body.encode(), V3_JSON, headers)
        if self.type == "wrongtype":
            body = spec.get("body", "<html><body><h1>Service Unavailable</h1></body></html>")
            return Response(status, body.encode(), "text/html; charset=utf-8", headers)
        if self.type == "redirect":
            location = spec.get("location") or req.target
            if location.startswith("/"):
                location = req.origin + location
            return Response(status, b"", "text/html; charset=utf-8",
                            headers + [("Location", location)])
        if self.type == "huge":
            size = spec.get("size", HUGE_DEFAULT)
            return Response(status, content_type=spec.get("content_type", V3_JSON),
                            headers=headers, chunks=huge_chunks(size), length=size)
        if self.type == "deep":
            depth = spec.get("depth", 100000)
            return Response(status, b"[" * depth + b"]" * depth, V3_JSON, headers)
        return None

    def reshaped(self, response):
        """The route's answer in the wrong shape (a "shape" fault), as a 200."""
        body = b"".join(response.chunks())
        return Response(200, reshape(body, self.spec["variant"]), V3_JSON,
                        [("Cache-Control", "no-cache")])


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self):
        with self._lock:
            self._faults = []
            self._next_id = 1

    def add(self, spec):
        with self._lock:
            fault = Fault(spec, self._next_id)
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def take(self, types, listener, method, path):
        """The first armed fault of one of `types` matching the request, consumed once."""
        with self._lock:
            for fault in self._faults:
                if fault.type in types and fault.matches(listener, method, path):
                    if fault.count > 0:
                        fault.count -= 1
                    return fault
        return None

    def list(self):
        with self._lock:
            return [f.public() for f in self._faults]


# ---- quotas -----------------------------------------------------------------------------

DEFAULT_ALLOWED = {"hourly": 240, "daily": 500, "monthly": 15500}


def _periods(now):
    """Indexes of the fixed calendar windows (UTC) that `now` falls in."""
    t = time.gmtime(now)
    return {"hourly": int(now // 3600), "daily": int(now // 86400),
            "monthly": t.tm_year * 12 + t.tm_mon}


class Usage:
    """Requests admitted for one key: a sliding minute and fixed windows."""

    def __init__(self):
        self.minute = collections.deque()
        self.fixed = {}             # window name -> (index, count)

    def count(self, name, index):
        seen_index, count = self.fixed.get(name, (None, 0))
        return count if seen_index == index else 0

    def record(self, now, windows):
        self.minute.append(now)
        for name, index in windows.items():
            self.fixed[name] = (index, self.count(name, index) + 1)

    def prune(self, now):
        while self.minute and self.minute[0] <= now - 60:
            self.minute.popleft()


class Limits:
    def __init__(self, spec):
        def number(name):
            value = spec.get(name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name} must be a non-negative number")
            return value
        self.per_minute = number("per_minute")
        self.per_day = number("per_day")
        self.per_month = number("per_month")
        self.windows = []
        for window in spec.get("windows") or []:
            n, per = window.get("n"), window.get("per")
            if not isinstance(n, (int, float)) or not isinstance(per, (int, float)) or per <= 0:
                raise ValueError("each window needs numbers n and per > 0")
            self.windows.append((n, per))


class Quotas:
    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self):
        with self._lock:
            self._limits = {}
            self._usage = {}

    def configure(self, key, spec):
        limits = Limits(spec)
        with self._lock:
            self._limits[key] = limits
            self._usage.pop(key, None)      # a new quota starts from zero

    def _windows(self, limits, now):
        windows = _periods(now)
        for n, per in (limits.windows if limits else []):
            windows[f"every {per}s"] = int(now // per)
        return windows

    def admit(self, key):
        """Count one request for `key`; False (and not counted) when a window is full."""
        now = time.time()
        with self._lock:
            usage = self._usage.setdefault(key, Usage())
            limits = self._limits.get(key)
            windows = self._windows(limits, now)
            usage.prune(now)
            if limits and self._full(usage, limits, windows):
                return False
            usage.record(now, windows)
            return True

    @staticmethod
    def _full(usage, limits, windows):
        checks = [(limits.per_minute, len(usage.minute)),
                  (limits.per_day, usage.count("daily", windows["daily"])),
                  (limits.per_month, usage.count("monthly", windows["monthly"]))]
        checks += [(n, usage.count(f"every {per}s", windows[f"every {per}s"]))
                   for n, per in limits.windows]
        return any(limit is not None and used >= limit for limit, used in checks)

    def report(self, key):
        """overall_quotas figures: used in the current UTC hour/day/month, and allowed."""
        now = time.time()
        with self._lock:
            usage = self._usage.get(key) or Usage()
            limits = self._limits.get(key)
            windows = _periods(now)
            allowed = dict(DEFAULT_ALLOWED)
            if limits:
                for name, value in (("daily", limits.per_day), ("monthly", limits.per_month),
                                    ("hourly", next((n for n, per in limits.windows
                                                     if per == 3600), None))):
                    if value is not None:
                        allowed[name] = value
            return {f"api_requests_{name}": {"user": {"used": usage.count(name, windows[name]),
                                                      "allowed": allowed[name]}}
                    for name in ("hourly", "daily", "monthly")}


def quota_exceeded(api):
    """The service's answer to a request over quota."""
    if api == "v2":
        return empty(204)
    return v3_error(429, "QuotaExceededError", "Quota exceeded")

