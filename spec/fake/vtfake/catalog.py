"""The fake's starting knowledge: the real sample bodies, the relationships they record, and
related objects and comments synthesized deterministically where no recording has any. Built
once at start-up and never mutated (the changing state lives in state.Store as an overlay)."""

import base64
import calendar
import glob
import hashlib
import ipaddress
import itertools
import json
import os
import re
import time
import urllib.parse

from . import objects
from .objects import (COLLECTIONS, TYPES, analysed_attributes, object_aliases, resolution,
                      self_link, url_id)

# Relationships served per collection: name -> collection (or "resolutions") of the items.
RELATIONSHIPS = {
    "domains": {"communicating_files": "files", "downloaded_files": "files",
                "referrer_files": "files", "urls": "urls", "resolutions": "resolutions",
                "subdomains": "domains"},
    "ip_addresses": {"communicating_files": "files", "downloaded_files": "files",
                     "referrer_files": "files", "urls": "urls", "resolutions": "resolutions"},
    "files": {"contacted_domains": "domains", "contacted_ips": "ip_addresses",
              "contacted_urls": "urls", "execution_parents": "files"},
    "urls": {"downloaded_files": "files", "contacted_domains": "domains",
             "contacted_ips": "ip_addresses"},
}
RELATED_COUNT = {"domains": 23, "ip_addresses": 23, "files": 12, "urls": 12}
COMMENTS_PER_SAMPLE = 12
BASE_DATE = 1700000000          # dates of synthesized things count back from here
SYNTHETIC_DOMAIN = "example.net"    # synthesized host names live under it (RFC 2606)

# Public resolvers and big sites and CDNs: what they are related to is mostly harmless traffic,
# so their synthesized related objects are clean. A domain counts with its subdomains.
WELL_KNOWN_IPS = {"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
                  "208.67.222.222", "208.67.220.220", "2001:4860:4860::8888",
                  "2001:4860:4860::8844", "2606:4700:4700::1111", "2606:4700:4700::1001"}
WELL_KNOWN_DOMAINS = {"google.com", "github.com", "microsoft.com", "windows.com", "apple.com",
                      "amazon.com", "amazonaws.com", "cloudflare.com", "cloudfront.net",
                      "akamai.net", "akamaiedge.net", "fastly.net", "googleapis.com",
                      "gstatic.com", "dropbox.com", "example.com"}

# The empty content: the service has known it for ever.
EMPTY_HASHES = ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "d41d8cd98f00b204e9800998ecf8427e", "da39a3ee5e6b4b0d3255bfef95601890afd80709")
EMPTY_FIRST_SEEN = 1148301722

# v2 domain and IP reports list related samples under these names.
V2_SAMPLE_LISTS = {"downloaded_files": "downloaded", "communicating_files": "communicating",
                   "referrer_files": "referrer"}

HEX = {32: "md5", 40: "sha1", 64: "sha256"}
HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+"
                       r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])$")


def hash_kind(text):
    return HEX.get(len(text)) if HEX_RE.match(text) else None


def decode_url_identifier(ident):
    """The URL behind an unpadded URL-safe base64 identifier, or None."""
    try:
        return base64.urlsafe_b64decode(ident + "=" * (-len(ident) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def normal_ip(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def normal_domain(text):
    """A syntactically valid domain name, lower-case (v2's rule: no suffix list)."""
    name = text.lower().rstrip(".")
    return name if DOMAIN_RE.match(name) else None


def v2_epoch(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def interleaved(detected, undetected):
    """One relationship from v2's detected_ and undetected_ lists: one of each in turn, each
    list in its recorded order (the service's v3 order of the two is not recorded)."""
    pairs = itertools.zip_longest(detected, undetected)
    return [item for pair in pairs for item in pair if item is not None]


def host_of(coll, ident, obj):
    """A host name to hang synthesized URLs and domains from."""
    if coll in ("domains", "ip_addresses"):
        return ident
    if coll == "urls":
        url = obj["attributes"].get("url") if obj else None
        host = urllib.parse.urlsplit(url).hostname if url else None
        return host or f"u{ident[:12]}.{SYNTHETIC_DOMAIN}"
    return f"f{ident[:12]}.{SYNTHETIC_DOMAIN}"


def well_known(coll, ident, obj):
    """Is this object a public resolver, or a big site or CDN (or a URL on one)?"""
    if coll == "ip_addresses":
        return ident in WELL_KNOWN_IPS
    if coll not in ("domains", "urls"):
        return False
    host = host_of(coll, ident, obj)
    labels = host.split(".")
    return any(".".join(labels[i:]) in WELL_KNOWN_DOMAINS for i in range(len(labels)))


def synthesized_detections(i, clean):
    """Malicious engines of item i (0-based) of a synthesized relationship."""
    return 0 if clean or i % 2 else i


class Catalog:
    def __init__(self, samples_dir, suffixes):
        self.suffixes = suffixes
        self.objects = {}        # (collection, id) -> object (the "data" member)
        self.aliases = {}        # (collection, md5/sha1/sha256/id) -> id
        self.analyses = {}       # analysis id -> whole response body
        self.v2 = {}             # (endpoint, object id) -> v2 body
        # (collection, id, relationship) -> [("ref", coll, id) or an inline object]
        self.relations = {}
        self.samples = set()     # (collection, id) of objects read from sample files
        self.file_engines = []   # [(name, version)] in report order
        self.url_engines = []
        self._recorded = {}      # (coll, id) of recorded related objects -> what was recorded
        self._seen = {}          # (collection, id, relationship) -> ids recorded in it
        self._load(samples_dir)
        self._build_recorded()
        self._add_empty_file()
        for coll, ident in sorted(self.samples):
            for rel, target in RELATIONSHIPS[coll].items():
                if not self.relations.get((coll, ident, rel)):
                    self._synthesize(coll, ident, rel, target)

    # ---- loading -------------------------------------------------------------------------

    def _load(self, samples_dir):
        with open(os.path.join(samples_dir, "index.json")) as f:
            index = json.load(f)
        pages = index.get("relationship_pages", {})
        embedded = index.get("embedded_relationships", {})
        v2_bodies = []
        for path in sorted(glob.glob(os.path.join(samples_dir, "v3", "*.json"))):
            with open(path) as f:
                body = json.load(f)
            name = os.path.basename(path)
            if name in pages:
                page = pages[name]
                for item in body["data"]:
                    self._record(page["collection"], page["id"], page["relationship"], item)
            elif name in embedded:
                owner = embedded[name]
                for rel, member in body.items():
                    for item in member["data"]:
                        self._record(owner["collection"], owner["id"], rel, item)
            elif body["data"]["type"] == "analysis":
                self.analyses[body["data"]["id"]] = body
            else:
                self._add_sample(body["data"])
        for name, entry in sorted(index.get("v2", {}).items()):
            with open(os.path.join(samples_dir, "v2", name)) as f:
                body = json.load(f)
            self._add_v2(entry, body)
            v2_bodies.append((entry, body))
        # After the v3 recordings, so that their (newer) order comes first.
        for entry, body in v2_bodies:
            if entry["endpoint"] in ("domain/report", "ip-address/report"):
                self._record_v2_lists(entry, body)

    def _add_sample(self, obj):
        coll = COLLECTIONS[obj["type"]]
        if coll == "urls":
            # One recorded body carries an analysis-style id; the service always answers with
            # the sha256 of the URL, so that is the id the fake uses.
            obj["id"] = url_id(obj["attributes"]["url"])
        self._engines_from(coll, obj["attributes"].get("last_analysis_results") or {})
        self.add(coll, obj)
        self.samples.add((coll, obj["id"]))

    def _engines_from(self, coll, results):
        if coll == "files" and not self.file_engines:
            self.file_engines = [(name, r.get("engine_version")) for name, r in results.items()]
        elif coll == "urls" and not self.url_engines:
            self.url_engines = list(results)

    def _add_v2(self, entry, body):
        endpoint = entry["endpoint"]
        if endpoint == "file/report":
            coll, ident = "files", body["sha256"]
        elif endpoint == "url/report":
            coll, ident = "urls", url_id(body["url"])
        else:
            coll = "domains" if endpoint == "domain/report" else "ip_addresses"
            ident = entry["resource"]
        self.v2[(endpoint, ident)] = body
        if (coll, ident) not in self.objects and coll in ("files", "urls"):
            self.add(coll, self._object_from_v2(coll, ident, body))
        self.samples.add((coll, ident))

    def _object_from_v2(self, coll, ident, body):
        """A v3 object for a resource only the v2 samples know."""
        date = v2_epoch(body["scan_date"])
        results = {}
        for engine, scan in body["scans"].items():
            bad = bool(scan.get("detected"))
            if coll == "files":
                results[engine] = {"category": "malicious" if bad else "undetected",
                                   "engine_name": engine, "engine_version": scan.get("version"),
                                   "result": scan.get("result"), "method": "blacklist",
                                   "engine_update": scan.get("update")}
            else:
                verdict = (scan.get("result") or "unrated site").replace(" site", "")
                results[engine] = {"category": "malicious" if bad else "harmless",
                                   "engine_name": engine, "method": "blacklist",
                                   "result": verdict}
        if coll == "files":
            attrs = {"md5": body["md5"], "sha1": body["sha1"], "sha256": body["sha256"],
                     "names": [], "tags": []}
        else:
            attrs = {"url": body["url"], "last_final_url": body["url"], "tags": []}
        attrs.update(analysed_attributes(coll, results, date))
        return {"type": TYPES[coll], "id": ident, "links": self_link(coll, ident),
                "attributes": attrs}

    def add(self, coll, obj):
        ident = obj["id"]
        self.objects.setdefault((coll, ident), obj)
        for alias in object_aliases(coll, obj):
            self.aliases.setdefault((coll, alias), ident)

    # ---- recorded relationships ----------------------------------------------------------

    def _record(self, coll, ident, rel, item, detail=None):
        """Append a recorded related item (an object, a descriptor or a resolution) in
        recorded order; an item seen before keeps its place and its details, and gains those
        it had not."""
        items = self.relations.setdefault((coll, ident, rel), [])
        seen = self._seen.setdefault((coll, ident, rel), set())
        if item["id"] not in seen:
            seen.add(item["id"])
            items.append(item if item["type"] == "resolution"
                         else ("ref", COLLECTIONS[item["type"]], item["id"]))
        if item["type"] == "resolution":
            return
        target = COLLECTIONS[item["type"]]
        if "attributes" in item:
            self.add(target, item)
        recorded = self._recorded.setdefault((target, item["id"]), {})
        for name, value in (detail or {}).items():
            recorded.setdefault(name, value)

    def _record_v2_lists(self, entry, body):
        """The related lists of a recorded v2 domain or IP report, as v3 relationships."""
        coll = "domains" if entry["endpoint"] == "domain/report" else "ip_addresses"
        ident = entry["resource"]
        for rel, name in V2_SAMPLE_LISTS.items():
            detected = body.get(f"detected_{name}_samples", [])
            undetected = body.get(f"undetected_{name}_samples", [])
            details = {}    # a file in both lists (two scans) keeps its detected_ record
            for sample in detected + undetected:
                details.setdefault(sample["sha256"], {
                    "positives": sample.get("positives", 0), "total": sample.get("total", 0),
                    "date": sample.get("date")})
            for sample in interleaved(detected, undetected):
                self._record(coll, ident, rel, {"type": "file", "id": sample["sha256"]},
                             details[sample["sha256"]])
        detected = [(u["url"], u["positives"], u["total"], u["scan_date"])
                    for u in body.get("detected_urls", [])]
        undetected = [(u[0], u[2], u[3], u[4]) for u in body.get("undetected_urls", [])]
        details = {}
        for url, positives, total, date in detected + undetected:
            details.setdefault(url_id(url), {"url": url, "positives": positives,
                                             "total": total, "date": date})
        for url, *_ in interleaved(detected, undetected):
            ref = url_id(url)
            if ref:
                self._record(coll, ident, "urls", {"type": "url", "id": ref}, details[ref])
        for res in body.get("resolutions", []):
            date = v2_epoch(res["last_resolved"])
            ip, host = (res["ip_address"], ident) if coll == "domains" else (ident, res["hostname"])
            self._record(coll, ident, "resolutions", resolution(ip, host, date))
        for name in body.get("subdomains", []):
            domain = self.suffixes.domain(name)
            if domain:
                self._record(coll, ident, "subdomains", {"type": "domain", "id": domain})

    def _build_recorded(self):
        """Objects for the recorded related items that no sample describes: what the
        recording says (detections, total, date; a URL's address), the rest derived; no
        recorded detections means none."""
        for (coll, ident), detail in sorted(self._recorded.items()):
            if (coll, ident) in self.objects:
                continue
            date = v2_epoch(detail["date"]) if detail.get("date") else BASE_DATE
            if coll == "files":
                obj = objects.derived_file(ident, 1024 + int(ident[:4], 16) % 65536, [],
                                           objects.FILE_KINDS[0][1], date)
            elif coll == "urls":
                obj = objects.new_url(detail["url"], date)
            elif coll == "domains":
                obj = objects.new_domain(ident, date)
            else:
                obj = objects.new_ip(ident, date)
            results = self.results(coll, detail.get("positives", 0), "FakeVT.Recorded", date,
                                   detail.get("total"))
            obj["attributes"].update(analysed_attributes(coll, results, date))
            self.add(coll, obj)

    def _add_empty_file(self):
        sha256, md5, sha1 = EMPTY_HASHES
        obj = objects.new_file(sha256, md5, sha1, 0, ["empty", "empty.txt", "null.txt"],
                               objects.EMPTY, EMPTY_FIRST_SEEN)
        obj["attributes"].update({"times_submitted": 2850412, "unique_sources": 612345,
                                  "last_submission_date": BASE_DATE})
        obj["attributes"].update(analysed_attributes(
            "files", self.results("files", 0, None, BASE_DATE), BASE_DATE))
        self.add("files", obj)

    # ---- synthesis -----------------------------------------------------------------------

    def _synthesize(self, coll, ident, rel, target):
        items = self.relations.setdefault((coll, ident, rel), [])
        parent = self.objects.get((coll, ident))
        clean = well_known(coll, ident, parent)
        host = host_of(coll, ident, parent)
        for i in range(RELATED_COUNT[coll]):
            seed = f"{coll}/{ident}/{rel}/{i}"
            date = BASE_DATE - i * 86400
            if target == "resolutions":
                items.append(self._resolution(coll, ident, i, date))
                continue
            if target == "files":
                sha256 = hashlib.sha512(seed.encode()).hexdigest()[:64]
                obj = objects.derived_file(sha256, 1024 + 37 * i, [f"{rel}_{i}.exe"],
                                           objects.FILE_KINDS[0][1], date)
            elif target == "urls":
                obj = objects.new_url(f"http://{host}/{rel}/{i}", date)
            elif target == "domains":
                label = f"sub{i}" if rel == "subdomains" else f"{rel.replace('_', '-')}-{i}"
                obj = objects.new_domain(f"{label}.{host}", date)
            else:
                octets = hashlib.sha256(seed.encode()).digest()
                obj = objects.new_ip(f"45.{octets[0]}.{octets[1]}.{octets[2]}", date)
            malicious = synthesized_detections(i, clean)
            obj["attributes"].update(analysed_attributes(
                target, self.results(target, malicious, "FakeVT.Related", date), date))
            self.add(target, obj)
            items.append(("ref", target, obj["id"]))

    @staticmethod
    def _resolution(coll, ident, i, date):
        if coll == "domains":
            return resolution(f"198.51.100.{i + 1}", ident, date)
        host = f"host{i}.{ident.replace('.', '-').replace(':', '-')}.{SYNTHETIC_DOMAIN}"
        return resolution(ident, host, date)

    def comments(self, coll, ident):
        """Synthesized comments; only objects read from the samples have any."""
        if (coll, ident) not in self.samples:
            return []
        return [objects.comment(objects.child_id(coll, ident, f"{coll}/{ident}/comment/{i}"),
                                f"Fake comment {i + 1} on {ident} #fakevt",
                                BASE_DATE - i * 3600,
                                {"positive": i % 3, "negative": 0, "abuse": 0})
                for i in range(COMMENTS_PER_SAMPLE)]

    # ---- object builders (also used for uploads, URL scans and feeds) ---------------------

    def results(self, coll, malicious, label, date, total=None):
        """Per-engine results with the first `malicious` engines detecting; only the first
        `total` engines ran when it is given."""
        if coll == "files":
            update = objects.ymd(date)
            engines = self.file_engines[:total]
            return {name: {"category": "malicious" if i < malicious else "undetected",
                           "engine_name": name, "engine_version": version,
                           "result": label if i < malicious else None, "method": "blacklist",
                           "engine_update": update}
                    for i, (name, version) in enumerate(engines)}
        return {name: {"category": "malicious" if i < malicious else "harmless",
                       "engine_name": name, "method": "blacklist",
                       "result": "malicious" if i < malicious else "clean"}
                for i, name in enumerate(self.url_engines[:total])}
