"""Legacy API v2 under /vtapi/v2/: the key is the `apikey` query or form field; answers are
`response_code` bodies (1 found, 0 not found, -2 queued, -1 invalid); quota is HTTP 204."""

import re

from .catalog import hash_kind, normal_domain, normal_ip
from .content import url_verdict
from .objects import GUI, url_id, v2_date
from .httpio import V2_JSON, HTTPError, Response, empty, json_response, read_form
from .policy import quota_exceeded
from .uploads import DIRECT_LIMIT, read_upload

SCAN_ID = re.compile(r"^[0-9a-f]{64}-\d+$")
RAN = ("malicious", "suspicious", "undetected", "harmless")    # engines a v2 report lists

QUEUED = "Your resource is queued for analysis"
SUBMITTED = "Scan request successfully queued, come back later for the report"
FILE_MISSING = "The requested resource is not among the finished, queued or pending scans"
URL_MISSING = "Resource does not exist in the dataset"


def reply(obj):
    return json_response(200, obj, V2_JSON)


def one_or_many(items):
    """A batch request answers with an array, a single resource with one object."""
    return reply(items if len(items) > 1 else items[0])


def required(params, name):
    if not params.get(name, "").strip():
        raise HTTPError(empty(400))
    return params[name].strip()


# ---- v3 objects in v2 shape ------------------------------------------------------------------


def engines_ran(attrs):
    return {name: result for name, result in (attrs.get("last_analysis_results") or {}).items()
            if result.get("category") in RAN}


def detections(attrs):
    """(positives, total) as v2 counts them."""
    ran = engines_ran(attrs)
    return sum(r["category"] == "malicious" for r in ran.values()), len(ran)


def file_report(obj, resource):
    attrs, sha256 = obj["attributes"], obj["id"]
    date = attrs.get("last_analysis_date") or 0
    scans = {}
    for name, result in engines_ran(attrs).items():
        detected = result["category"] == "malicious"
        scans[name] = {"detected": detected, "version": result.get("engine_version"),
                       "result": result.get("result") if detected else None,
                       "update": result.get("engine_update")}
    positives, total = detections(attrs)
    return {"scans": scans, "scan_id": f"{sha256}-{date}", "sha1": attrs.get("sha1"),
            "resource": resource, "response_code": 1, "scan_date": v2_date(date),
            "permalink": f"{GUI}/file/{sha256}/analysis/{date}/",
            "verbose_msg": "Scan finished, information embedded", "total": total,
            "positives": positives, "sha256": sha256, "md5": attrs.get("md5")}


def url_report(obj, resource):
    attrs, ident = obj["attributes"], obj["id"]
    date = attrs.get("last_analysis_date") or 0
    scans = {name: {"detected": r["category"] == "malicious",
                    "result": f"{r.get('result') or 'unrated'} site"}
             for name, r in engines_ran(attrs).items()}
    positives, total = detections(attrs)
    return {"scan_id": f"{ident}-{date}", "resource": resource, "url": attrs.get("url"),
            "response_code": 1, "scan_date": v2_date(date),
            "permalink": f"{GUI}/url/{ident}/analysis/{date}/",
            "verbose_msg": "Scan finished, scan information embedded in this object",
            "filescan_id": None, "positives": positives, "total": total, "scans": scans}


def related_lists(store, coll, ident):
    """The detected_/undetected_ URL and sample lists of a v2 domain or IP report."""
    out = {}
    for rel, name in (("downloaded_files", "downloaded"), ("communicating_files", "communicating"),
                      ("referrer_files", "referrer")):
        detected, undetected = [], []
        for obj in store.related(coll, ident, rel) or []:
            positives, total = detections(obj["attributes"])
            (detected if positives else undetected).append(
                {"date": v2_date(obj["attributes"].get("last_analysis_date") or 0),
                 "positives": positives, "total": total, "sha256": obj["id"]})
        out[f"detected_{name}_samples"] = detected
        out[f"undetected_{name}_samples"] = undetected
    out["detected_urls"], out["undetected_urls"] = [], []
    for obj in store.related(coll, ident, "urls") or []:
        attrs = obj["attributes"]
        positives, total = detections(attrs)
        scan_date = v2_date(attrs.get("last_analysis_date") or 0)
        if positives:
            out["detected_urls"].append({"url": attrs["url"], "positives": positives,
                                         "total": total, "scan_date": scan_date})
        else:
            out["undetected_urls"].append([attrs["url"], obj["id"], 0, total, scan_date])
    return out


def domain_report(store, obj):
    attrs = obj["attributes"]
    resolutions = store.related("domains", obj["id"], "resolutions")
    return dict(related_lists(store, "domains", obj["id"]), **{
        "response_code": 1, "verbose_msg": "Domain found in dataset",
        "resolutions": [{"last_resolved": v2_date(r["attributes"]["date"]),
                         "ip_address": r["attributes"]["ip_address"]} for r in resolutions],
        "subdomains": [d["id"] for d in store.related("domains", obj["id"], "subdomains")],
        "domain_siblings": [], "pcaps": [],
        "categories": sorted(set((attrs.get("categories") or {}).values())),
        "whois": attrs.get("whois", ""), "whois_timestamp": attrs.get("whois_date")})


def ip_report(store, obj):
    attrs = obj["attributes"]
    resolutions = store.related("ip_addresses", obj["id"], "resolutions")
    return dict(related_lists(store, "ip_addresses", obj["id"]), **{
        "response_code": 1, "verbose_msg": "IP address in dataset",
        "asn": attrs.get("asn"), "as_owner": attrs.get("as_owner"),
        "country": attrs.get("country"), "continent": attrs.get("continent"),
        "network": attrs.get("network"),
        "resolutions": [{"last_resolved": v2_date(r["attributes"]["date"]),
                         "hostname": r["attributes"]["host_name"]} for r in resolutions],
        "whois": attrs.get("whois", ""), "whois_timestamp": attrs.get("whois_date")})


# ---- endpoints -------------------------------------------------------------------------------


class V2:
    def __init__(self, fake):
        self.fake = fake
        self.store = fake.store

    def guard(self, handler, upload=False):
        """Read the parameters (query, then form fields; a file part is streamed to the content
        store when the endpoint takes one), then check the key and the quota."""
        def guarded(req):
            if upload:
                fields, info = read_upload(req, DIRECT_LIMIT)
            else:
                fields, info = read_form(req.body.chunks(), req.headers.get("content-type")), None
            params = dict(fields, **req.query)
            req.key = params.get("apikey")
            if not req.key or req.key not in self.fake.keys:
                return empty(403)
            if not self.fake.quotas.admit(req.key):
                return quota_exceeded("v2")
            return handler(params, info) if upload else handler(params)
        return guarded

    def batch(self, params, name, separator):
        """The resources of a batch parameter, in order; at most 4 per request, 25 on a
        premium key."""
        items = [item.strip() for item in required(params, name).split(separator)
                 if item.strip()]
        if not items:
            raise HTTPError(empty(400))
        if len(items) > self.fake.batch_limit(params["apikey"]):
            # UNVERIFIED: the service documents the ceilings, not its answer beyond them.
            raise HTTPError(empty(403))
        return items

    def lookup(self, coll, resource, key):
        """("found", id) | ("queued", None) | ("missing", None) for a resource given as
        `key` (a hash or URL id) or as a scan_id. Polling a scan_id (or a submission not yet
        completed) advances its analysis as a v3 GET would."""
        analysis = self.store.analysis(self.store.v2_scan_ids.get(resource.lower()))
        if analysis is None and self.store.resolve(coll, key) is None:
            analysis = self.store.analysis(self.store.pending.get((coll, key)))
        if analysis is not None:
            if self.store.poll(analysis) != "completed":
                return "queued", None
            return "found", analysis.target
        canonical = self.store.resolve(coll, key)
        return ("found", canonical) if canonical else ("missing", None)

    def report(self, coll, endpoint, resource, key, build, missing):
        if key is None:
            return {"response_code": -1, "resource": resource,
                    "verbose_msg": "Invalid resource, check what you are submitting"}
        state, canonical = self.lookup(coll, resource, key)
        if state == "queued":
            return {"response_code": -2, "resource": resource, "verbose_msg": QUEUED}
        if state == "missing":
            return {"response_code": 0, "resource": resource, "verbose_msg": missing}
        sample = self.store.v2_sample(endpoint, coll, canonical)
        if sample:
            return dict(sample, resource=resource)
        return build(self.store.get(coll, canonical), resource)

    @staticmethod
    def file_key(resource):
        low = resource.lower()
        if SCAN_ID.match(low):
            return low.split("-")[0]
        return low if hash_kind(low) else None

    @staticmethod
    def url_key(resource):
        low = resource.lower()
        return low.split("-")[0] if SCAN_ID.match(low) else url_id(resource)

    def file_report(self, params):
        return one_or_many([self.report("files", "file/report", r, self.file_key(r),
                                        file_report, FILE_MISSING)
                            for r in self.batch(params, "resource", ",")])

    def url_report(self, params):
        reports = []
        for resource in self.batch(params, "resource", "\n"):
            report = self.report("urls", "url/report", resource, self.url_key(resource),
                                 url_report, URL_MISSING)
            if report["response_code"] == 0 and params.get("scan") == "1":
                report = self.submit_url(resource)
            reports.append(report)
        return one_or_many(reports)

    def submit_url(self, url):
        if url_id(url) is None:
            return {"response_code": -1, "resource": url, "verbose_msg": "Invalid URL"}
        analysis = self.store.submit_url(url, url_verdict(url))
        return {"permalink": f"{GUI}/url/{analysis.target}/analysis/{analysis.date}/",
                "resource": url, "url": analysis.fresh["attributes"]["url"], "response_code": 1,
                "scan_date": v2_date(analysis.date), "scan_id": analysis.v2_scan_id,
                "verbose_msg": SUBMITTED}

    def url_scan(self, params):
        return one_or_many([self.submit_url(u) for u in self.batch(params, "url", "\n")])

    def file_scan(self, params, info):
        if info is None:
            raise HTTPError(empty(400))
        analysis = self.store.submit_file(info)
        return reply({"scan_id": analysis.v2_scan_id, "sha1": info.sha1, "resource": info.sha256,
                      "response_code": 1, "sha256": info.sha256,
                      "permalink": f"{GUI}/file/{info.sha256}/analysis/{analysis.date}/",
                      "md5": info.md5, "verbose_msg": SUBMITTED})

    def file_rescan(self, params):
        answers = []
        for resource in self.batch(params, "resource", ","):
            key = self.file_key(resource)
            obj = self.store.get("files", key) if key else None
            if obj is None:
                answers.append({"response_code": 0, "resource": resource,
                                "verbose_msg": FILE_MISSING})
                continue
            analysis = self.store.reanalyse("files", obj)
            answers.append({"permalink": f"{GUI}/file/{obj['id']}/analysis/{analysis.date}/",
                            "response_code": 1, "sha256": obj["id"], "resource": resource,
                            "scan_id": analysis.v2_scan_id})
        return one_or_many(answers)

    def file_download(self, params):
        key = self.file_key(required(params, "hash"))
        canonical = self.store.resolve("files", key) if key else None
        if canonical is None or not self.store.content.has(canonical):
            return empty(404)
        return Response(302, b"", "text/html; charset=utf-8",
                        [("Location", self.fake.storage_url(canonical))])

    def domain_report(self, params):
        domain = required(params, "domain")
        return self.network_report("domains", "domain/report", normal_domain(domain),
                                   domain_report, "Domain not found", "Invalid domain")

    def ip_report(self, params):
        ip = required(params, "ip")
        return self.network_report("ip_addresses", "ip-address/report", normal_ip(ip),
                                   ip_report, "IP address not in dataset", "Invalid IP address")

    def network_report(self, coll, endpoint, key, build, missing, invalid):
        if key is None:
            return reply({"response_code": -1, "verbose_msg": invalid})
        obj = self.store.get(coll, key)
        if obj is None:
            return reply({"response_code": 0, "verbose_msg": missing})
        return reply(self.store.v2_sample(endpoint, coll, obj["id"])
                     or build(self.store, obj))


def register(router, fake):
    api = V2(fake)
    for methods, endpoint, handler, upload in (
            ("GET,POST", "file/report", api.file_report, False),
            ("POST", "file/scan", api.file_scan, True),
            ("POST", "file/rescan", api.file_rescan, False),
            ("GET", "file/download", api.file_download, False),
            ("GET,POST", "url/report", api.url_report, False),
            ("POST", "url/scan", api.url_scan, False),
            ("GET", "domain/report", api.domain_report, False),
            ("GET", "ip-address/report", api.ip_report, False)):
        router.add(methods, "/vtapi/v2/" + endpoint, api.guard(handler, upload))
