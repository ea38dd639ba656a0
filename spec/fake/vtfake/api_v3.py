"""VirusTotal API v3 under /api/v3/ (and the upload URLs under /_ah/upload/)."""

import base64
import json
import urllib.parse

from .catalog import (RELATIONSHIPS, decode_url_identifier, hash_kind, normal_domain,
                      normal_ip)
from .content import url_verdict
from .feeds import FeedError
from .objects import API, LABELS, TYPES, url_id
from .httpio import HTTPError, Response, V3_JSON, read_form, v3_error
from .policy import quota_exceeded
from .uploads import DIRECT_LIMIT, UPLOAD_URL_LIMIT, read_upload

DEFAULT_LIMIT = 10
MAX_LIMIT = 40
SEARCH_KINDS = {"file": "files", "url": "urls", "domain": "domains", "ip": "ip_addresses",
                "ip_address": "ip_addresses"}


def reply(req, obj, status=200):
    """JSON answer whose API links point at the fake itself (as the service's point at it)."""
    text = json.dumps(obj).replace(f'"{API}/', f'"{req.origin}/api/v3/')
    return Response(status, text.encode(), V3_JSON, [("Cache-Control", "no-cache")])


def fail(status, code, message):
    return HTTPError(v3_error(status, code, message))


def descriptor(analysis):
    return {"data": {"type": "analysis", "id": analysis.id,
                     "links": {"self": f"{API}/analyses/{analysis.id}"}}}


def encode_cursor(offset):
    return base64.urlsafe_b64encode(f"fakevt:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor):
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, offset = text.split(":")
        if prefix == "fakevt" and int(offset) >= 0:
            return int(offset)
    except ValueError:
        pass
    raise fail(400, "InvalidArgumentError", f'Invalid cursor "{cursor}"')


def page_params(req):
    raw = req.query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise fail(400, "InvalidArgumentError", f'Invalid limit "{raw}"')
    cursor = req.query.get("cursor")
    return max(1, min(limit, MAX_LIMIT)), decode_cursor(cursor) if cursor else 0


def page(req, items, render, path, params, limit, offset):
    """One collection page: data, and on every page but the last meta.cursor + links.next
    (absolute, on the fake's own origin, repeating the other query parameters)."""
    def link(cursor):
        query = list(params) + ([("cursor", cursor)] if cursor else []) + [("limit", limit)]
        return f"{req.origin}{path}?{urllib.parse.urlencode(query)}"

    body = {"data": [render(item) for item in items[offset:offset + limit]],
            "links": {"self": link(encode_cursor(offset) if offset else None)}}
    if offset + limit < len(items):
        cursor = encode_cursor(offset + limit)
        body["meta"] = {"cursor": cursor}
        body["links"]["next"] = link(cursor)
    return body


def posted_attributes(req, kind):
    """The attributes of a posted `{"data": {"type": kind, "attributes": {...}}}` body."""
    try:
        body = json.loads(req.body.read_all() or b"null")
    except ValueError:
        raise fail(400, "BadRequestError", "The request body is not valid JSON")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("type") != kind or \
            not isinstance(data.get("attributes"), dict):
        raise fail(400, "BadRequestError",
                   f'Expected {{"data": {{"type": "{kind}", "attributes": {{...}}}}}}')
    return data["attributes"]


def type_and_id(obj):
    return {"type": obj["type"], "id": obj["id"]}


class V3:
    def __init__(self, fake):
        self.fake = fake
        self.store = fake.store

    def guard(self, handler, counts=True):
        """Key check (x-apikey header, any case) and quota, before the route runs."""
        def guarded(req, **args):
            req.key = req.headers.get("x-apikey")
            if not req.key:
                raise fail(401, "AuthenticationRequiredError", "X-Apikey header is missing")
            if req.key not in self.fake.keys:
                raise fail(401, "WrongCredentialsError", "Wrong API key")
            if counts and not self.fake.quotas.admit(req.key):
                return quota_exceeded("v3")
            return handler(req, **args)
        return guarded

    # ---- lookups ---------------------------------------------------------------------------

    def find(self, coll, ident):
        """(canonical id, object) or a 400/404 error the service would give."""
        key = ident
        if coll == "urls":
            key = ident.lower() if hash_kind(ident) == "sha256" else url_id(
                decode_url_identifier(ident) or "")
        elif coll == "domains":
            key = self.fake.catalog.suffixes.domain(ident)
            if key is None:
                raise fail(400, "InvalidArgumentError",
                           f'Domain "{ident}" is not a valid domain pattern')
        elif coll == "ip_addresses":
            key = normal_ip(ident)
            if key is None:
                raise fail(400, "InvalidArgumentError", f'"{ident}" is not a valid IP address')
        obj = self.store.get(coll, key) if key else None
        if obj is None:
            raise fail(404, "NotFoundError", f'{LABELS[coll]} "{ident}" not found')
        return obj["id"], obj

    def get_object(self, req, coll, id):
        canonical, obj = self.find(coll, id)
        wanted = [r for r in req.query.get("relationships", "").split(",") if r]
        if wanted:
            obj = dict(obj, relationships={})
            for rel in wanted:
                items = self.store.related(coll, canonical, rel)
                if items is not None:
                    path = f"/api/v3/{coll}/{canonical}/relationships/{rel}"
                    embedded = page(req, items, type_and_id, path, [], DEFAULT_LIMIT, 0)
                    embedded["links"]["related"] = f"{req.origin}/api/v3/{coll}/{canonical}/{rel}"
                    obj["relationships"][rel] = embedded
        return reply(req, {"data": obj})

    def related(self, req, coll, id, rel, descriptors=False):
        canonical, _ = self.find(coll, id)
        items = self.store.related(coll, canonical, rel)
        if items is None:
            raise fail(400, "InvalidArgumentError",
                       f'"{rel}" is not a valid relationship for {TYPES[coll]} objects')
        return self.paged(req, items, descriptors)

    def descriptors(self, req, coll, id, rel):
        return self.related(req, coll, id, rel, descriptors=True)

    def comments(self, req, coll, id):
        canonical, _ = self.find(coll, id)
        return self.paged(req, self.store.all_comments(coll, canonical), False)

    def votes(self, req, coll, id):
        canonical, _ = self.find(coll, id)
        return self.paged(req, self.store.all_votes(coll, canonical), False)

    def post_comment(self, req, coll, id):
        canonical, _ = self.find(coll, id)
        text = posted_attributes(req, "comment").get("text")
        if not isinstance(text, str) or not text.strip():
            raise fail(400, "BadRequestError", 'A comment needs a non-empty "text" attribute')
        return reply(req, {"data": self.store.add_comment(coll, canonical, text)})

    def post_vote(self, req, coll, id):
        canonical, _ = self.find(coll, id)
        verdict = posted_attributes(req, "vote").get("verdict")
        if verdict not in ("harmless", "malicious"):
            raise fail(400, "InvalidArgumentError",
                       'A vote\'s "verdict" must be "harmless" or "malicious"')
        return reply(req, {"data": self.store.add_vote(coll, canonical, verdict)})

    def paged(self, req, items, descriptors):
        limit, offset = page_params(req)
        descriptors = descriptors or req.query.get("descriptors_only") in ("true", "1")
        others = [(k, v) for k, v in req.query.items() if k not in ("cursor", "limit")]
        return reply(req, page(req, items, type_and_id if descriptors else (lambda o: o),
                               req.path, others, limit, offset))

    def search(self, req):
        query = req.query.get("query", "").strip()
        if not query:
            raise fail(400, "BadRequestError", "The query parameter is required")
        return self.paged(req, self.search_items(query), False)

    def search_items(self, query):
        """Exact identifiers give that object; entity:<type> lists every object of that type;
        other text matches file names and tags (case-insensitive substring)."""
        if hash_kind(query):
            found = self.store.get("files", query)
            return [found] if found else []
        if query.startswith("entity:"):
            coll = SEARCH_KINDS.get(query[len("entity:"):].strip())
            return self.store.all(coll) if coll else []
        for coll, key in (("ip_addresses", normal_ip(query)),
                          ("urls", url_id(query) if "://" in query else None),
                          ("domains", normal_domain(query))):
            if key:
                found = self.store.get(coll, key)
                return [found] if found else []
        needle = query.lower()
        return [obj for obj in self.store.all("files")
                if any(needle in str(value).lower()
                       for value in obj["attributes"].get("names", []) +
                       obj["attributes"].get("tags", []))]

    # ---- analyses --------------------------------------------------------------------------

    def get_analysis(self, req, id):
        sample = self.fake.catalog.analyses.get(id)
        if sample:
            return reply(req, sample)
        analysis = self.analysis_or_404(id)
        return reply(req, analysis.body(self.store.poll(analysis)))

    def get_analysis_item(self, req, id):
        """The analysed object as it is now (does not advance the analysis)."""
        sample = self.fake.catalog.analyses.get(id)
        if sample:
            meta = sample.get("meta", {})
            coll, target = (("urls", meta["url_info"]["id"]) if "url_info" in meta
                            else ("files", meta.get("file_info", {}).get("sha256", "")))
        else:
            analysis = self.analysis_or_404(id)
            coll, target = analysis.coll, analysis.target
        obj = self.store.get(coll, target)
        if obj is None:
            raise fail(404, "NotFoundError", f'{LABELS[coll]} "{target}" not found')
        return reply(req, {"data": obj})

    def analysis_or_404(self, id):
        analysis = self.store.analysis(id)
        if analysis is None:
            raise fail(404, "NotFoundError", f'Analysis "{id}" not found')
        return analysis

    # ---- submissions -----------------------------------------------------------------------

    def post_file(self, req):
        return self.receive(req, DIRECT_LIMIT)

    def upload_to_url(self, req, token):
        if not self.store.take_upload_token(token):
            raise fail(404, "NotFoundError", "Upload URL not found or already used")
        return self.receive(req, UPLOAD_URL_LIMIT)

    def receive(self, req, limit):
        _, info = read_upload(req, limit)
        if info is None:
            raise fail(400, "BadRequestError", 'No file: send a multipart part named "file"')
        return reply(req, descriptor(self.store.submit_file(info)))

    def upload_url(self, req):
        token = self.store.new_upload_token()
        fault = req.take_fault("redirect_elsewhere")
        origin = fault.spec.get("origin", self.fake.storage_origin) if fault else req.origin
        return reply(req, {"data": f"{origin}/_ah/upload/{token}/"})

    def post_url(self, req):
        fields = read_form(req.body.chunks(), req.headers.get("content-type"))
        url = fields.get("url", "").strip()
        if not url:
            raise fail(400, "BadRequestError", 'The "url" form field is required')
        if url_id(url) is None:
            raise fail(400, "InvalidArgumentError", "Unable to canonicalize url")
        return reply(req, descriptor(self.store.submit_url(url, url_verdict(url))))

    def analyse(self, req, coll, id):
        _, obj = self.find(coll, id)
        return reply(req, descriptor(self.store.reanalyse(coll, obj)))

    # ---- downloads -------------------------------------------------------------------------

    def storage_url(self, id):
        canonical, _ = self.find("files", id)
        if not self.store.content.has(canonical):
            raise fail(404, "NotFoundError", f'File "{id}" content is not available')
        return self.fake.storage_url(canonical)

    def download(self, req, id):
        return Response(302, b"", "text/html; charset=utf-8",
                        [("Location", self.storage_url(id))])

    def download_url(self, req, id):
        return reply(req, {"data": self.storage_url(id)})

    # ---- feeds -----------------------------------------------------------------------------

    def feed(self, req, feed, minute):
        """A published batch: 302 to the storage host (or the batch itself, when the fake is
        set to deliver directly); NotAvailableYet or NotFoundError otherwise."""
        try:
            self.fake.feeds.check(feed, minute)
        except FeedError as err:
            raise fail(err.status, err.code, err.message)
        if self.fake.feeds.settings["delivery"] == "direct":
            return self.fake.feed_response(feed, minute)
        return Response(302, b"", "text/html; charset=utf-8",
                        [("Location", self.fake.storage_url(f"feeds/{feed}/{minute}"))])

    # ---- account and service ---------------------------------------------------------------

    def overall_quotas(self, req, id):
        return reply(req, {"data": self.fake.quotas.report(req.key)})

    def metadata(self, req):
        catalog = self.fake.catalog
        engines = {name: {"category": "file", "version": version}
                   for name, version in catalog.file_engines}
        for name in catalog.url_engines:
            engines.setdefault(name, {"category": "url", "version": None})
        relationships = {TYPES[coll]: [{"name": rel, "description": f"{target} related to it"}
                                       for rel, target in rels.items()]
                         for coll, rels in RELATIONSHIPS.items()}
        return reply(req, {"data": {"engines": engines, "relationships": relationships,
                                    "privileges": ["public", "intelligence", "downloads"]}})


def register(router, fake):
    api = V3(fake)

    def add(methods, pattern, handler, counts=True):
        router.add(methods, "/api/v3" + pattern, api.guard(handler, counts))

    # Order matters: fixed paths before the generic /{coll}/{id}/... patterns.
    add("GET", "/files/upload_url", api.upload_url)
    add("GET", "/files/{id}/download", api.download)
    add("GET", "/files/{id}/download_url", api.download_url)
    add("POST", "/files", api.post_file)
    add("POST", "/urls", api.post_url)
    add("GET", "/analyses/{id}", api.get_analysis)
    add("GET", "/analyses/{id}/item", api.get_analysis_item)
    add("GET", "/feeds/{feed}/{minute}", api.feed)
    add("GET", "/feeds/files/{id}/download", api.download)
    add("GET", "/search", api.search)
    add("GET", "/intelligence/search", api.search)
    add("GET", "/users/{id}/overall_quotas", api.overall_quotas, counts=False)
    add("GET", "/metadata", api.metadata)
    add("POST", "/{coll}/{id}/analyse", api.analyse)
    add("GET", "/{coll}/{id}/comments", api.comments)
    add("POST", "/{coll}/{id}/comments", api.post_comment)
    add("GET", "/{coll}/{id}/votes", api.votes)
    add("POST", "/{coll}/{id}/votes", api.post_vote)
    add("GET", "/{coll}/{id}/relationships/{rel}", api.descriptors)
    add("GET", "/{coll}/{id}/{rel}", api.related)
    add("GET", "/{coll}/{id}", api.get_object)
    # The upload URL carries its own authorisation (the one-shot token), like the service's.
    router.add("POST", "/_ah/upload/{token}/", api.upload_to_url)
