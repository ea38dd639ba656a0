"""What changes while the fake runs: objects created or updated (an overlay over the
catalog), analyses and their progress, one-shot upload tokens, stored contents."""

import base64
import copy
import secrets
import threading
import time

from . import objects
from .catalog import BASE_DATE, RELATIONSHIPS
from .content import ContentStore
from .objects import API, TYPES, analysed_attributes, object_aliases, stats_of


def analysis_meta(coll, obj):
    """The meta member of an analysis of `obj`: file_info for files; url_info for URLs, with
    the file_info of the content the crawler fetched when there was one (as recorded)."""
    attrs = obj["attributes"]
    if coll == "files":
        return {"file_info": {k: attrs.get(k) for k in ("size", "sha256", "sha1", "md5")}}
    if coll == "urls":
        meta = {"url_info": {"id": obj["id"], "url": attrs.get("url")}}
        if attrs.get("last_http_response_content_sha256"):
            meta["file_info"] = {"sha256": attrs["last_http_response_content_sha256"]}
        return meta
    return None


class Analysis:
    """One submission or re-analysis. The k-th GET (1-based) sees "completed" once k >= steps,
    else "queued" for the first GET and "in-progress" after; steps 0 completes at creation."""

    def __init__(self, ident, coll, target, date, steps, results, meta, v2_scan_id, fresh):
        self.id, self.coll, self.target, self.date = ident, coll, target, date
        self.steps, self.results, self.meta = steps, results, meta
        self.v2_scan_id = v2_scan_id
        self.fresh = fresh          # object to create on completion if the target is unknown
        self.polls = 0
        self.completed = False

    def advance(self):
        """Count one GET; returns the status that GET sees."""
        self.polls += 1
        if self.polls >= self.steps:
            return "completed"
        return "queued" if self.polls == 1 else "in-progress"

    def body(self, status):
        if status == "completed":
            results = self.results
        elif status == "in-progress":
            names = list(self.results)[: len(self.results) // 2]
            results = {name: self.results[name] for name in names}
        else:
            results = {}
        data = {"type": "analysis", "id": self.id,
                "links": {"self": f"{API}/analyses/{self.id}",
                          "item": f"{API}/{self.coll}/{self.target}"},
                "attributes": {"date": self.date, "status": status,
                               "stats": stats_of(self.coll, results), "results": results}}
        body = {"data": data}
        if self.meta:
            body["meta"] = self.meta
        return body


class Store:
    def __init__(self, catalog, content_root, steps):
        self.catalog = catalog
        self.content = ContentStore(content_root)
        self.lock = threading.RLock()
        self.default_steps = steps
        self.reset()

    def reset(self):
        with self.lock:
            self.steps = self.default_steps
            self.objects = {}           # (coll, id) -> object created or changed since start
            self.aliases = {}
            self.analyses = {}
            self.v2_scan_ids = {}       # v2 scan_id -> analysis id
            self.pending = {}           # (coll, target) -> latest analysis id
            self.v2_superseded = set()  # (coll, id) whose v2 sample body is out of date
            self.upload_tokens = {}     # token -> used?
            self.comments = {}          # (coll, id) -> comments posted, newest first
            self.votes = {}             # (coll, id) -> votes cast, newest first
            self.content.clear()

    # ---- objects -----------------------------------------------------------------------

    def resolve(self, coll, ident):
        """The canonical id of a known object (any file hash, any case), or None."""
        key = (coll, ident.lower() if coll != "ip_addresses" else ident)
        with self.lock:
            return self.aliases.get(key) or self.catalog.aliases.get(key)

    def get(self, coll, ident):
        with self.lock:
            canonical = self.resolve(coll, ident)
            if canonical is None:
                return None
            key = (coll, canonical)
            return self.objects.get(key) or self.catalog.objects.get(key)

    def put(self, coll, obj):
        with self.lock:
            self.objects[(coll, obj["id"])] = obj
            for alias in object_aliases(coll, obj):
                self.aliases[(coll, alias)] = obj["id"]

    def all(self, coll):
        """Every object of a collection, by id."""
        with self.lock:
            ids = {i for c, i in self.catalog.objects if c == coll}
            ids.update(i for c, i in self.objects if c == coll)
            return [self.get(coll, i) for i in sorted(ids)]

    def related(self, coll, ident, rel):
        """Full related objects (or inline ones such as resolutions); None if the
        relationship does not exist for that collection."""
        if rel not in RELATIONSHIPS[coll]:
            return None
        items = self.catalog.relations.get((coll, ident, rel), [])
        return [self.get(item[1], item[2]) if isinstance(item, tuple) else item for item in items]

    def v2_sample(self, endpoint, coll, ident):
        with self.lock:
            if (coll, ident) in self.v2_superseded:
                return None
            return self.catalog.v2.get((endpoint, ident))

    # ---- comments and votes ------------------------------------------------------------

    def add_comment(self, coll, ident, text):
        """Post a comment; it comes first in the object's comments from then on."""
        with self.lock:
            posted = self.comments.setdefault((coll, ident), [])
            cid = objects.child_id(coll, ident, f"{coll}/{ident}/posted/{len(posted)}/{text}")
            created = objects.comment(cid, text, int(time.time()))
            posted.insert(0, created)
            return created

    def all_comments(self, coll, ident):
        with self.lock:
            posted = list(self.comments.get((coll, ident), []))
        return posted + self.catalog.comments(coll, ident)

    def add_vote(self, coll, ident, verdict):
        """Cast a vote: it comes first in the object's votes and counts in its total_votes
        (the object is replaced, never changed in place)."""
        with self.lock:
            cast = self.votes.setdefault((coll, ident), [])
            vid = objects.child_id(coll, ident, f"{coll}/{ident}/vote/{len(cast)}")
            created = objects.vote(vid, verdict, int(time.time()))
            cast.insert(0, created)
            obj = copy.deepcopy(self.get(coll, ident))
            totals = obj["attributes"].setdefault("total_votes", objects.votes_zero())
            totals[verdict] = totals.get(verdict, 0) + 1
            self.put(coll, obj)
            return created

    def all_votes(self, coll, ident):
        """The votes cast here, newest first, then one per vote the starting object counts
        (its total_votes: harmless ones first)."""
        with self.lock:
            cast = list(self.votes.get((coll, ident), []))
        start = self.catalog.objects.get((coll, ident))
        totals = (start["attributes"].get("total_votes") or {}) if start else {}
        harmless, malicious = totals.get("harmless", 0), totals.get("malicious", 0)
        return cast + [objects.vote(objects.child_id(coll, ident, f"{coll}/{ident}/votes/{i}"),
                                    "harmless" if i < harmless else "malicious",
                                    BASE_DATE - i * 600)
                       for i in range(harmless + malicious)]

    # ---- analyses ----------------------------------------------------------------------

    def _ids(self, coll, target, md5):
        """Analysis id (the service's formats for files and URLs) and v2 scan_id; the epoch
        is bumped when two submissions of one target land in the same second."""
        epoch = int(time.time())
        while True:
            if coll == "files":
                ident = base64.b64encode(f"{md5}:{epoch}".encode()).decode()
            else:
                ident = f"{TYPES[coll][0]}-{target}-{epoch}"
            if ident not in self.analyses and ident not in self.catalog.analyses:
                return ident, f"{target}-{epoch}", epoch
            epoch += 1

    def _new_analysis(self, coll, target, results, meta, fresh=None, md5=None):
        with self.lock:
            ident, v2_id, date = self._ids(coll, target, md5)
            analysis = Analysis(ident, coll, target, date, self.steps, results, meta,
                                v2_id if coll in ("files", "urls") else None, fresh)
            self.analyses[ident] = analysis
            self.pending[(coll, target)] = ident
            if analysis.v2_scan_id:
                self.v2_scan_ids[analysis.v2_scan_id] = ident
            if analysis.steps == 0:
                self._complete(analysis)
            return analysis

    def submit_file(self, info):
        date = int(time.time())
        results = self.catalog.results("files", info.malicious, info.label, date)
        fresh = objects.new_file(info.sha256, info.md5, info.sha1, info.size,
                                 [info.name] if info.name else [], info.kind(), date)
        return self._new_analysis("files", info.sha256, results, analysis_meta("files", fresh),
                                  fresh, info.md5)

    def submit_url(self, url, malicious):
        fresh = objects.new_url(url, int(time.time()))
        results = self.catalog.results("urls", malicious, None, int(time.time()))
        return self._new_analysis("urls", fresh["id"], results, analysis_meta("urls", fresh),
                                  fresh)

    def reanalyse(self, coll, obj):
        """Re-analysis keeps the object's verdict (its last results, or a clean one)."""
        attrs = obj["attributes"]
        results = attrs.get("last_analysis_results") or \
            self.catalog.results(coll, 0, None, int(time.time()))
        return self._new_analysis(coll, obj["id"], copy.deepcopy(results),
                                  analysis_meta(coll, obj), md5=attrs.get("md5"))

    def analysis(self, ident):
        with self.lock:
            return self.analyses.get(ident)

    def poll(self, analysis):
        """One GET of an analysis: advance it, complete it if due; returns the status."""
        with self.lock:
            status = "completed" if analysis.completed else analysis.advance()
            if status == "completed" and not analysis.completed:
                self._complete(analysis)
            return status

    def _complete(self, analysis):
        """Create or update the analysed object. Objects are replaced, never changed in
        place, so that a response being written from another thread stays consistent."""
        coll, target = analysis.coll, analysis.target
        analysis.completed = True
        current = self.get(coll, target)
        obj = copy.deepcopy(current or analysis.fresh)
        attrs = obj["attributes"]
        if current is not None:
            attrs["times_submitted"] = attrs.get("times_submitted", 0) + 1
            if analysis.fresh:
                names = attrs.setdefault("names", [])
                names.extend(n for n in analysis.fresh["attributes"].get("names", [])
                             if n not in names)
        attrs.update(analysed_attributes(coll, copy.deepcopy(analysis.results), analysis.date))
        attrs["last_submission_date"] = analysis.date
        self.put(coll, obj)
        self.v2_superseded.add((coll, target))

    def register_file(self, info):
        """Known content without an analysis: the file object exists at once."""
        date = int(time.time())
        obj = objects.new_file(info.sha256, info.md5, info.sha1, info.size,
                               [info.name] if info.name else [], info.kind(), date)
        results = self.catalog.results("files", info.malicious, info.label, date)
        obj["attributes"].update(analysed_attributes("files", results, date))
        self.put("files", obj)
        return obj

    # ---- upload URLs ---------------------------------------------------------------------

    def new_upload_token(self):
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.upload_tokens[token] = False
        return token

    def take_upload_token(self, token):
        """True the first time a known token is used, False ever after."""
        with self.lock:
            if self.upload_tokens.get(token) is not False:
                return False
            self.upload_tokens[token] = True
            return True

    def set_steps(self, steps):
        with self.lock:
            self.steps = steps
