"""Feeds: one batch a minute per kind (GET /api/v3/feeds/{kind}/{YYYYMMDDhhmm}), a bzip2 file of
JSON lines, one object per line. Batches are built deterministically from the minute (the same
minute always gives the same bytes), streamed through the compressor into a file so that a
big minute never sits in memory, and kept for the next request. The feed clock, the
publication delay and the minutes that are missing, late or corrupt are the tests' to set."""

import bz2
import calendar
import hashlib
import json
import os
import re
import shutil
import threading
import time

from . import objects
from .objects import API, stats_of

KINDS = ("files", "urls", "domains", "ip_addresses", "file-behaviours")
MINUTE_RE = re.compile(r"^\d{12}$")
CORRUPTIONS = ("truncated", "badline", "garbage")
DEFAULTS = {"count": 50, "delay": 60, "retention": 7 * 24 * 60, "delivery": "redirect"}
SAMPLE_EVERY = 500          # line j is a sample object when j % SAMPLE_EVERY == 0
SANDBOXES = ("VirusTotal Jujubox", "VirusTotal Observer", "Zenbox", "CAPE Sandbox")
WINDOWS_HOME = "C:\\Users\\user\\AppData"
FEED_KINDS = objects.FILE_KINDS + [(b"", objects.TEXT)]


def minute_epoch(minute):
    """Epoch of a YYYYMMDDhhmm minute; ValueError when it is not one."""
    if not MINUTE_RE.match(minute):
        raise ValueError(f"{minute!r} is not a minute (YYYYMMDDhhmm)")
    return calendar.timegm(time.strptime(minute, "%Y%m%d%H%M"))


def minute_of(epoch):
    return time.strftime("%Y%m%d%H%M", time.gmtime(epoch))


def synthetic_domain(seed):
    """A registrable synthetic domain for feed objects (a valid domain pattern)."""
    return f"feed{seed[14] % 16}.example.net"


class FeedError(Exception):
    """A batch the service would refuse: (status, code, message)."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Feeds:
    def __init__(self, catalog, root, origin):
        self.catalog = catalog
        self.root = root
        self.origin = origin            # the API origin download links in file lines use
        self._lock = threading.Lock()
        self._building = {}             # batch path -> lock held while it is built
        self._analyses = {}             # (coll, detections, day) -> (results, stats)
        self.reset()

    def reset(self):
        with self._lock:
            self.settings = dict(DEFAULTS)
            self.offset = 0.0           # feed clock = time.time() + offset ...
            self.frozen = None          # ... or this fixed epoch
            self.minutes = {}           # minute -> its overrides
            self.requests = {}          # (kind, minute) -> requests seen (for "late")

    # ---- configuration -------------------------------------------------------------------

    def now(self):
        return self.frozen if self.frozen is not None else time.time() + self.offset

    def configure(self, spec):
        """Apply a control request (see README, "Feeds"); raises ValueError on a bad one."""
        with self._lock:
            for name in ("count", "delay", "retention"):
                if name in spec:
                    if not isinstance(spec[name], int) or spec[name] < 0:
                        raise ValueError(f"{name} must be a non-negative integer")
                    self.settings[name] = spec[name]
            if "delivery" in spec:
                if spec["delivery"] not in ("redirect", "direct"):
                    raise ValueError('delivery must be "redirect" or "direct"')
                self.settings["delivery"] = spec["delivery"]
            if "now" in spec or "running" in spec:
                now = spec.get("now", self.now())
                if isinstance(now, str):
                    now = minute_epoch(now)
                if not isinstance(now, (int, float)):
                    raise ValueError("now must be an epoch or a YYYYMMDDhhmm minute")
                running = spec.get("running", self.frozen is None)
                self.frozen = None if running else float(now)
                self.offset = float(now) - time.time()
            for minute, override in (spec.get("minutes") or {}).items():
                minute_epoch(minute)
                self.minutes[minute] = self._checked_override(override)

    @staticmethod
    def _checked_override(override):
        if not isinstance(override, dict):
            raise ValueError("each minute takes an object")
        kinds = override.get("kinds", list(KINDS))
        if not set(kinds) <= set(KINDS):
            raise ValueError(f"kinds must be among {list(KINDS)}")
        if "late" in override and (not isinstance(override["late"], int) or override["late"] < 0):
            raise ValueError("late must be a non-negative integer")
        if "count" in override and (not isinstance(override["count"], int)
                                    or override["count"] < 0):
            raise ValueError("count must be a non-negative integer")
        if override.get("corrupt") not in (None,) + CORRUPTIONS:
            raise ValueError(f"corrupt must be one of {list(CORRUPTIONS)}")
        return dict(override, kinds=list(kinds))

    def state(self):
        now = self.now()
        with self._lock:
            return dict(self.settings, now=now, now_minute=minute_of(now),
                        running=self.frozen is None,
                        latest=minute_of(now - self.settings["delay"] * 60),
                        minutes=dict(self.minutes))

    def _override(self, kind, minute):
        override = self.minutes.get(minute)
        return override if override and kind in override["kinds"] else {}

    # ---- serving -------------------------------------------------------------------------

    def check(self, kind, minute):
        """Count one API request for a batch and decide its fate: None when it is published,
        else raises FeedError (the service's 400/404)."""
        try:
            start = minute_epoch(minute)
        except ValueError:
            raise FeedError(400, "InvalidArgumentError",
                            f'"{minute}" is not a valid time, use the format YYYYMMDDhhmm')
        now = self.now()
        with self._lock:
            override = self._override(kind, minute)
            seen = self.requests[(kind, minute)] = self.requests.get((kind, minute), 0) + 1
            delay, retention = self.settings["delay"], self.settings["retention"]
        if override.get("missing") or start < now - retention * 60:
            raise FeedError(404, "NotFoundError", f"Feed batch {kind}/{minute} not found")
        if seen <= override.get("late", 0) or start + delay * 60 > now:
            raise FeedError(400, "NotAvailableYet",
                            f"Feed batch {kind}/{minute} is not available yet")

    def batch_path(self, kind, minute):
        """The batch file of a published minute, built on first use."""
        with self._lock:
            override = self._override(kind, minute)
            count = override.get("count", self.settings["count"])
        corrupt = override.get("corrupt")
        path = os.path.join(self.root, f"{kind}-{minute}-{count}-{corrupt or 'ok'}.bz2")
        with self._lock:
            building = self._building.setdefault(path, threading.Lock())
        with building:
            if not os.path.exists(path):
                self._build(path, kind, minute, count, corrupt)
        return path

    def clear(self):
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root, exist_ok=True)

    # ---- building ------------------------------------------------------------------------

    def _build(self, path, kind, minute, count, corrupt):
        os.makedirs(self.root, exist_ok=True)
        partial = path + ".partial"
        with open(partial, "wb") as out:
            if corrupt == "garbage":
                out.write(b"<html>not a bzip2 batch</html>\n" * 64)
            else:
                compressor = bz2.BZ2Compressor(1)   # fastest; the stream is as valid
                lines = self.lines(kind, minute, count)
                for j, line in enumerate(lines):
                    if corrupt == "badline" and j == count // 2:
                        line = b'{"type": "file", "id": "broken", "attributes": {\n'
                    out.write(compressor.compress(line))
                out.write(compressor.flush())
        if corrupt == "truncated":
            os.truncate(partial, os.path.getsize(partial) // 2)
        os.replace(partial, path)

    def lines(self, kind, minute, count):
        """The JSON lines of one batch, made one at a time."""
        start = minute_epoch(minute)
        samples = self._samples(kind)
        build = getattr(self, "_" + kind.replace("-", "_"))
        for j in range(count):
            date = start + j * 60 // max(count, 1)
            seed = hashlib.sha512(f"feed/{kind}/{minute}/{j}".encode()).digest()
            if samples and j % SAMPLE_EVERY == 0:
                sample = samples[(j // SAMPLE_EVERY + start // 60) % len(samples)]
                obj = self._from_sample(kind, sample, seed, date)
            else:
                obj = build(seed, date)
            text = json.dumps(obj, separators=(",", ":"))
            yield text.replace(f'"{API}/', f'"{self.origin}/api/v3/').encode() + b"\n"

    def _samples(self, kind):
        coll = "files" if kind == "file-behaviours" else kind
        return [self.catalog.objects[key] for key in sorted(self.catalog.samples)
                if key[0] == coll and key in self.catalog.objects]

    @staticmethod
    def _detections(seed):
        """A quarter of the synthesized objects are detected, by 1 to 24 engines."""
        return seed[8] % 24 + 1 if seed[7] < 64 else 0

    def _analysed(self, coll, obj, seed, date):
        """Feed lines keep, of last_analysis_results, the engines that detect (the stats
        count them all), so that a big minute stays small. Results are shared by the lines
        of one day with the same detections."""
        malicious = self._detections(seed)
        key = (coll, malicious, date // 86400)
        if key not in self._analyses:
            results = self.catalog.results(coll, malicious, "FakeVT.Feed", date)
            self._analyses[key] = ({name: r for name, r in results.items()
                                    if r["category"] == "malicious"}, stats_of(coll, results))
        detecting, stats = self._analyses[key]
        obj["attributes"].update({"last_analysis_results": detecting,
                                  "last_analysis_stats": stats, "last_analysis_date": date,
                                  "last_modification_date": date})
        return obj

    def _file_context(self, obj, seed):
        obj["context_attributes"] = {
            "download_url": f"{API}/feeds/files/{obj['id']}/download",
            "submitter": {"id": seed[16:20].hex(), "method": ("api", "web", "email")[seed[9] % 3],
                          "country": ("ES", "US", "DE", "JP", "BR")[seed[10] % 5],
                          "interface": "api"}}
        return obj

    def _from_sample(self, kind, sample, seed, date):
        if kind == "file-behaviours":
            return self._behaviour(sample["id"], sample["attributes"], seed, date)
        obj = {"type": sample["type"], "id": sample["id"], "links": sample.get("links"),
               "attributes": sample["attributes"]}
        return self._file_context(dict(obj), seed) if kind == "files" else obj

    def _files(self, seed, date):
        sha256 = seed[:32].hex()
        kind = FEED_KINDS[seed[11] % len(FEED_KINDS)][1]
        size = 512 + int.from_bytes(seed[12:15], "big") % 4000000
        obj = objects.derived_file(sha256, size, [f"{sha256[:10]}.{kind.extension or 'bin'}"],
                                   kind, date)
        return self._file_context(self._analysed("files", obj, seed, date), seed)

    def _urls(self, seed, date):
        digest = seed.hex()
        url = f"http://u{digest[:10]}.{synthetic_domain(seed)}/{digest[10:18]}"
        obj = objects.new_url(url, date)
        obj["context_attributes"] = {"submitter": {"id": seed[16:20].hex(), "method": "api"}}
        return self._analysed("urls", obj, seed, date)

    def _domains(self, seed, date):
        return self._analysed("domains",
                              objects.new_domain(f"d{seed.hex()[:10]}.{synthetic_domain(seed)}",
                                                 date), seed, date)

    def _ip_addresses(self, seed, date):
        return self._analysed("ip_addresses",
                              objects.new_ip(f"45.{seed[0]}.{seed[1]}.{seed[2]}", date),
                              seed, date)

    def _file_behaviours(self, seed, date):
        sha256 = seed[:32].hex()
        attrs = objects.derived_file(sha256, 0, [], objects.FILE_KINDS[0][1], date)["attributes"]
        return self._behaviour(sha256, attrs, seed, date)

    def _behaviour(self, sha256, file_attrs, seed, date):
        """A sandbox report summary (file_behaviour object) of one file."""
        sandbox = SANDBOXES[seed[13] % len(SANDBOXES)]
        ident = f"{sha256}_{sandbox.replace(' ', '_')}"
        host = f"c2-{seed.hex()[:8]}.{synthetic_domain(seed)}"
        ip = f"45.{seed[0]}.{seed[1]}.{seed[2]}"
        malicious = self._detections(seed) > 0
        report = f"{API}/file_behaviours/{ident}"
        return {"type": "file_behaviour", "id": ident, "links": {"self": report},
                "attributes": {
                    "sandbox_name": sandbox, "analysis_date": date,
                    "behash": hashlib.md5(ident.encode()).hexdigest(),
                    "has_html_report": True, "has_pcap": True, "has_evtx": False,
                    "has_memdump": False, "last_modification_date": date,
                    "verdicts": ["MALWARE"] if malicious else ["CLEAN"],
                    "tags": ["DETECT_DEBUG_ENVIRONMENT"] if malicious else [],
                    "processes_created": [f"{WINDOWS_HOME}\\Local\\Temp\\{sha256[:8]}.exe"],
                    "files_written": [f"{WINDOWS_HOME}\\Roaming\\{sha256[8:16]}.dat"],
                    "dns_lookups": [{"hostname": host, "resolved_ips": [ip]}],
                    "ip_traffic": [{"destination_ip": ip, "destination_port": 443,
                                    "transport_layer_protocol": "TCP"}],
                    "http_conversations": [{"url": f"https://{host}/gate.php",
                                            "request_method": "POST"}]},
                "context_attributes": {
                    "file_md5": file_attrs.get("md5"), "file_sha1": file_attrs.get("sha1"),
                    "file_type_tag": file_attrs.get("type_tag"),
                    "html_report": f"{report}/html", "pcap": f"{report}/pcap",
                    "evtx": None, "memdump": None}}
