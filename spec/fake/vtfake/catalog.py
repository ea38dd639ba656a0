"""The fake's starting knowledge: the real sample bodies, plus related objects and comments
synthesized from them deterministically. Built once at start-up and never mutated (the
changing state lives in state.Store as an overlay)."""

import base64
import calendar
import glob
import hashlib
import ipaddress
import json
import os
import re
import time
import urllib.parse

API = "https://www.virustotal.com/api/v3"     # rewritten to the fake's own origin when sent
GUI = "https://www.virustotal.com"

TYPES = {"files": "file", "urls": "url", "domains": "domain", "ip_addresses": "ip_address"}
LABELS = {"files": "File", "urls": "URL", "domains": "Domain", "ip_addresses": "IP address"}
FILE_STATS = ["harmless", "type-unsupported", "suspicious", "confirmed-timeout", "timeout",
              "failure", "malicious", "undetected"]
URL_STATS = ["harmless", "malicious", "suspicious", "undetected", "timeout"]

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

HEX = {32: "md5", 40: "sha1", 64: "sha256"}
HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+"
                       r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])$")


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def hash_kind(text):
    return HEX.get(len(text)) if HEX_RE.match(text) else None


def canonical_url(url):
    """A light version of VirusTotal's URL canonicalisation: default scheme http, lower-case
    scheme and host, "/" for an empty path. None when there is no host."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    netloc = parts.netloc
    host_at = netloc.rfind("@") + 1
    netloc = netloc[:host_at] + netloc[host_at:].lower()
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path or "/",
                                    parts.query, parts.fragment))


def url_id(url):
    canonical = canonical_url(url)
    return sha256_hex(canonical) if canonical else None


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
    name = text.lower().rstrip(".")
    return name if DOMAIN_RE.match(name) else None


def ymd(epoch):
    return time.strftime("%Y%m%d", time.gmtime(epoch))


def v2_date(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def self_link(coll, ident):
    return {"self": f"{API}/{coll}/{ident}"}


def host_of(coll, ident, obj):
    """A host name to hang synthesized URLs and domains from."""
    if coll in ("domains", "ip_addresses"):
        return ident
    if coll == "urls":
        url = obj["attributes"].get("url") if obj else None
        host = urllib.parse.urlsplit(url).hostname if url else None
        return host or f"u{ident[:12]}.example"
    return f"f{ident[:12]}.example"


class Catalog:
    def __init__(self, samples_dir):
        self.objects = {}        # (collection, id) -> object (the "data" member)
        self.aliases = {}        # (collection, md5/sha1/sha256/id) -> id
        self.analyses = {}       # analysis id -> whole response body
        self.v2 = {}             # (endpoint, object id) -> v2 body
        # (collection, id, relationship) -> [("ref", coll, id) or an inline object]
        self.relations = {}
        self.samples = set()     # (collection, id) of objects read from sample files
        self.file_engines = []   # [(name, version)] in report order
        self.url_engines = []
        self._load(samples_dir)
        for coll, ident in sorted(self.samples):
            for rel, target in RELATIONSHIPS[coll].items():
                self._synthesize(coll, ident, rel, target)

    # ---- loading -------------------------------------------------------------------------

    def _load(self, samples_dir):
        with open(os.path.join(samples_dir, "index.json")) as f:
            index = json.load(f)
        pages = index.get("relationship_pages", {})
        for path in sorted(glob.glob(os.path.join(samples_dir, "v3", "*.json"))):
            with open(path) as f:
                body = json.load(f)
            name = os.path.basename(path)
            if name in pages:
                page = pages[name]
                key = (page["collection"], page["id"], page["relationship"])
                self.relations.setdefault(key, []).extend(body["data"])
            elif body["data"]["type"] == "analysis":
                self.analyses[body["data"]["id"]] = body
            else:
                self._add_sample(body["data"])
        for name, entry in sorted(index.get("v2", {}).items()):
            with open(os.path.join(samples_dir, "v2", name)) as f:
                self._add_v2(entry, json.load(f))

    def _add_sample(self, obj):
        coll = {t: c for c, t in TYPES.items()}[obj["type"]]
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
        date = calendar.timegm(time.strptime(body["scan_date"], "%Y-%m-%d %H:%M:%S"))
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

    # ---- synthesis -----------------------------------------------------------------------

    def _synthesize(self, coll, ident, rel, target):
        items = self.relations.setdefault((coll, ident, rel), [])
        parent = self.objects.get((coll, ident))
        for i in range(len(items), RELATED_COUNT[coll]):
            seed = f"{coll}/{ident}/{rel}/{i}"
            date = BASE_DATE - i * 86400
            malicious = i if i % 2 == 0 else 0
            host = host_of(coll, ident, parent)
            if target == "resolutions":
                items.append(self._resolution(coll, ident, i, date))
                continue
            if target == "files":
                digest = hashlib.sha512(seed.encode()).hexdigest()
                obj = self.new_file(digest[:64], digest[64:96], digest[96:136], 1024 + 37 * i,
                                    [f"{rel}_{i}.exe"], ("Win32 EXE", "peexe", "exe",
                                                         "PE32 executable (GUI) Intel 80386"), date)
            elif target == "urls":
                obj = self.new_url(f"http://{host}/{rel}/{i}", date)
            elif target == "domains":
                label = f"sub{i}" if rel == "subdomains" else f"{rel.replace('_', '-')}-{i}"
                obj = self.new_domain(f"{label}.{host}", date)
            else:
                octets = hashlib.sha256(seed.encode()).digest()
                obj = self.new_ip(f"45.{octets[0]}.{octets[1]}.{octets[2]}", date)
            obj["attributes"].update(analysed_attributes(
                target, self.results(target, malicious, "FakeVT.Related", date), date))
            self.add(target, obj)
            items.append(("ref", target, obj["id"]))

    def _resolution(self, coll, ident, i, date):
        if coll == "domains":
            ip, host = f"198.51.100.{i + 1}", ident
        else:
            ip, host = ident, f"host{i}.{ident.replace('.', '-').replace(':', '-')}.example"
        return {"type": "resolution", "id": ip + host, "links": self_link("resolutions", ip + host),
                "attributes": {"date": date, "host_name": host, "ip_address": ip,
                               "resolver": "VirusTotal"}}

    def comments(self, coll, ident):
        """Synthesized comments; only objects read from the samples have any."""
        if (coll, ident) not in self.samples:
            return []
        letter = TYPES[coll][0]
        out = []
        for i in range(COMMENTS_PER_SAMPLE):
            cid = f"{letter}-{ident}-{sha256_hex(f'{coll}/{ident}/comment/{i}')[:8]}"
            text = f"Fake comment {i + 1} on {ident} #fakevt"
            out.append({"type": "comment", "id": cid, "links": self_link("comments", cid),
                        "attributes": {"date": BASE_DATE - i * 3600, "text": text, "html": text,
                                       "tags": ["fakevt"],
                                       "votes": {"positive": i % 3, "negative": 0, "abuse": 0}}})
        return out

    # ---- object builders (also used for uploads and URL scans) ----------------------------

    def results(self, coll, malicious, label, date):
        """Per-engine results with the first `malicious` engines detecting."""
        if coll == "files":
            update = ymd(date)
            return {name: {"category": "malicious" if i < malicious else "undetected",
                           "engine_name": name, "engine_version": version,
                           "result": label if i < malicious else None, "method": "blacklist",
                           "engine_update": update}
                    for i, (name, version) in enumerate(self.file_engines)}
        return {name: {"category": "malicious" if i < malicious else "harmless",
                       "engine_name": name, "method": "blacklist",
                       "result": "malicious" if i < malicious else "clean"}
                for i, name in enumerate(self.url_engines)}

    @staticmethod
    def new_file(sha256, md5, sha1, size, names, file_type, date):
        description, tag, extension, magic = file_type
        return {"type": "file", "id": sha256, "links": self_link("files", sha256),
                "attributes": {"md5": md5, "sha1": sha1, "sha256": sha256, "size": size,
                               "names": list(names), "meaningful_name": names[0] if names else None,
                               "type_description": description, "type_tag": tag,
                               "type_extension": extension, "magic": magic, "tags": [],
                               "reputation": 0, "total_votes": {"harmless": 0, "malicious": 0},
                               "times_submitted": 1, "unique_sources": 1,
                               "first_submission_date": date, "last_submission_date": date}}

    @staticmethod
    def new_url(url, date):
        url = canonical_url(url)
        ident = sha256_hex(url)
        return {"type": "url", "id": ident, "links": self_link("urls", ident),
                "attributes": {"url": url, "last_final_url": url,
                               "title": "Fake page", "last_http_response_code": 200,
                               "categories": {}, "tags": [], "reputation": 0,
                               "total_votes": {"harmless": 0, "malicious": 0},
                               "times_submitted": 1, "first_submission_date": date,
                               "last_submission_date": date}}

    @staticmethod
    def new_domain(name, date):
        return {"type": "domain", "id": name, "links": self_link("domains", name),
                "attributes": {"tld": name.rsplit(".", 1)[-1], "categories": {}, "tags": [],
                               "reputation": 0, "total_votes": {"harmless": 0, "malicious": 0},
                               "last_dns_records": [], "whois": "", "creation_date": date}}

    @staticmethod
    def new_ip(ip, date):
        return {"type": "ip_address", "id": ip, "links": self_link("ip_addresses", ip),
                "attributes": {"asn": 64500, "as_owner": "FakeVT Networks", "country": "ZZ",
                               "continent": "EU", "network": ip.rsplit(".", 1)[0] + ".0/24",
                               "regional_internet_registry": "RIPE NCC", "tags": [],
                               "reputation": 0, "total_votes": {"harmless": 0, "malicious": 0},
                               "whois": "", "whois_date": date}}


def object_aliases(coll, obj):
    if coll == "files":
        attrs = obj["attributes"]
        return [obj["id"]] + [attrs[k] for k in ("md5", "sha1", "sha256") if attrs.get(k)]
    return [obj["id"]]


def stats_of(coll, results):
    counts = dict.fromkeys(FILE_STATS if coll == "files" else URL_STATS, 0)
    for result in results.values():
        counts[result["category"]] = counts.get(result["category"], 0) + 1
    return counts


def analysed_attributes(coll, results, date):
    return {"last_analysis_results": results, "last_analysis_stats": stats_of(coll, results),
            "last_analysis_date": date, "last_modification_date": date}
