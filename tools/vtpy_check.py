#!/usr/bin/env python3
"""Does the fake VirusTotal agree with the real one? Runs the official Python client (vt-py)
through its flows against a running fake and compares what it gets with the real recordings
in vt-samples (or, where there is none, with the rule spec/fake/README.md documents).

    VTPY_DIR=/path/to/vt-py /usr/bin/python3 tools/vtpy_check.py --url http://127.0.0.1:PORT \\
        --key KEY [--samples /path/to/vt-samples]

vt-py is imported from $VTPY_DIR (never copied here); it needs aiohttp (Debian python3-aiohttp).
The fake's control API (same origin, /_fake/) is used to reset it, make analyses complete at
once, register a downloadable file, set quotas and shape the feeds. Prints one line per flow,
"AGREE <flow>" or "DISAGREE <flow>: <why>", then "N of M flows agree"; exits 0 when all agree.
"""

import argparse
import base64
import hashlib
import io
import itertools
import json
import os
import sys
import traceback
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True

REAL_API = "https://www.virustotal.com/api/v3"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The shared folder beside the repository (or beside the folder of worktrees).
SAMPLES_GUESSES = [os.path.join(REPO, "..", "shared", "vt-samples"),
                   os.path.join(REPO, "..", "..", "shared", "vt-samples")]

EXE = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
V2_ONLY_FILE = "b35ef2d8a3ee0d29eecb83acf45c1f192ceca75ab10dec861166af2b7bda373b"
FEED_NOW = "202401011200"           # the feed clock the checks freeze
FEED_MINUTE = "202401011030"        # published: 90 minutes before it

# Recorded GETs of single objects: (flow, path the recording answered, recording).
OBJECT_RECORDINGS = [
    ("file Win32 EXE", f"/files/{EXE}", "v3/file_win32exe_417c0670.json"),
    ("file ELF", "/files/de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740",
     "v3/file_elf_de10ba5e.json"),
    ("file MS Word", "/files/001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c",
     "v3/file_msword_001015aa.json"),
    ("file by sha256 (pwelch)",
     "/files/01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b",
     "v3/bodies/pwelch_file_find.200.json"),
    ("url by base64 id", "/urls/aHR0cDovL2V4YW1wbGUuY29tLw",
     "v3/bodies/ninoseki_url_get_example.com.200.json"),
    ("url by base64 id with _", "/urls/aHR0cHM6Ly93d3cuZHJvcGJveC5jb20vcy9xbWkxMTJyYzRuczc1ZWIv"
     "Q29uZmlkZW50aWFsXzEyMy54bHM_ZGw9MQ",
     "v3/bodies/pwelch_url_encoding_find.200.json"),
    ("url google (recorded id edited)", "/urls/aHR0cDovL3d3dy5nb29nbGUuY29t",
     "v3/bodies/pwelch_url_find.200.json"),
    ("domain github.com", "/domains/github.com",
     "v3/bodies/ninoseki_domain_get_github.com.200.json"),
    ("domain virustotal.com", "/domains/virustotal.com", "v3/bodies/pwelch_domain.200.json"),
    ("domain haiku-os.org", "/domains/haiku-os.org", "v3/domain_haiku-os.org.json"),
    ("ip 1.1.1.1", "/ip_addresses/1.1.1.1", "v3/bodies/ninoseki_ip_get_1.1.1.1.200.json"),
    ("ip 8.8.8.8", "/ip_addresses/8.8.8.8", "v3/bodies/pwelch_ip.200.json"),
]
ANALYSIS_RECORDINGS = ["v3/bodies/pwelch_analysis.200.json",
                       "v3/bodies/ninoseki_analysis_get_url_completed.200.json"]


class Disagree(Exception):
    pass


def expect(condition, why):
    if not condition:
        raise Disagree(why)


def difference(got, want, where="$"):
    """Where two JSON values first differ, or None."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got)):
            if key not in got:
                return f"{where}.{key} missing"
            if key not in want:
                return f"{where}.{key} not recorded"
            found = difference(got[key], want[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return f"{where}: {len(got)} items, recorded {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            found = difference(g, w, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if got == want else f"{where}: {got!r:.60} != recorded {want!r:.60}"


class Check:
    def __init__(self, vt, url, key, samples):
        self.vt, self.url, self.key, self.samples = vt, url.rstrip("/"), key, samples
        self.client = vt.Client(key, host=self.url)
        self.flows = []

    # ---- plumbing ----------------------------------------------------------------------

    def recording(self, name):
        """A recorded body, its API links pointed at the fake (as the fake points them)."""
        with open(os.path.join(self.samples, name)) as f:
            text = f.read()
        return json.loads(text.replace(f'"{REAL_API}/', f'"{self.url}/api/v3/'))

    def control(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        request = urllib.request.Request(self.url + "/_fake/" + path, data=data, method=method)
        with urllib.request.urlopen(request) as answer:
            return json.loads(answer.read())

    def api_error(self, call):
        try:
            call()
        except self.vt.APIError as err:
            return err
        raise Disagree("no error")

    def flow(self, name, function, *args):
        try:
            function(*args)
            self.flows.append((name, None))
        except Disagree as why:
            self.flows.append((name, str(why)))
        except Exception as err:      # a crash of the client or of a flow is a disagreement
            last = traceback.extract_tb(err.__traceback__)[-1]
            self.flows.append((name, f"{type(err).__name__}: {err} (line {last.lineno})"))

    # ---- flows -------------------------------------------------------------------------

    def same_object(self, path, recording):
        want = self.recording(recording)["data"]
        got = self.client.get_object(path).to_dict()
        expect(got["type"] == want["type"], f"type {got['type']}")
        if want["type"] == "url" and want["id"].startswith("u-"):
            # The recorded id was hand-edited; the service answers with the URL's sha256.
            want_id = hashlib.sha256(want["attributes"]["url"].encode()).hexdigest()
        else:
            want_id = want["id"]
        expect(got["id"] == want_id, f"id {got['id']}")
        found = difference(got["attributes"], want["attributes"], "attributes")
        expect(found is None, found)

    def analysis(self, recording):
        want = self.recording(recording)
        got = self.client.get_json(f"/analyses/{want['data']['id']}")
        found = difference(got, want)
        expect(found is None, found)

    def v2_only_file(self):
        """No v3 recording: the object is derived from the v2 one (README rule)."""
        want = self.recording("v2/bodies/ninoseki_v2_file_report.200.json")
        got = self.client.get_object(f"/files/{want['md5']}")
        expect(got.id == want["sha256"] == V2_ONLY_FILE, "id")
        stats = got.last_analysis_stats
        expect(stats["malicious"] == want["positives"], "positives")
        expect(sum(stats.values()) == want["total"], "total")

    def empty_file(self):
        got = self.client.get_object(f"/files/{EMPTY}")
        expect((got.size, got.md5) == (0, "d41d8cd98f00b204e9800998ecf8427e"), "hashes, size")
        expect(got.last_analysis_stats["malicious"] == 0, "detections")
        expect(got.magic == "empty", "magic")

    def embedded_relationships(self):
        want = self.recording("v3/relationships_embedded_ip_1.1.1.1.json")
        got = self.client.get_object(
            "/ip_addresses/1.1.1.1?relationships=communicating_files,referrer_files")
        for rel, member in want.items():
            have = got.relationships.get(rel)
            expect(have, f"{rel} missing")
            ids = [d["id"] for d in have["data"]][:len(member["data"])]
            expect(ids == [d["id"] for d in member["data"]], f"{rel} ids {ids}")
            expect(have["links"]["related"] == member["links"]["related"], f"{rel} related link")
            expect(have.get("meta", {}).get("cursor"), f"{rel} cursor")

    def recorded_page_and_cursor(self):
        """The first page of a recorded relationship, its links and cursor; then vt-py's own
        cursor, which names the server batch after the one being read (so a resumed
        iterator starts there, against the service as against the fake)."""
        want = self.recording("v3/bodies/ninoseki_domain_resolutions_page_cursor.200.json")
        path = "/domains/github.com/resolutions"
        page = self.client.get_json(path, params={"limit": 10})
        for got, rec in zip(page["data"], want["data"]):
            found = difference(got, rec, got["id"])
            expect(found is None, found)
        cursor = page["meta"]["cursor"]
        expect(page["links"]["self"] == want["links"]["self"], page["links"]["self"])
        expect(page["links"]["next"] == want["links"]["next"].replace(
            urllib.parse.quote(want["meta"]["cursor"], safe=""),
            urllib.parse.quote(cursor, safe="")), page["links"]["next"])
        every = [o.id for o in self.client.iterator(path, batch_size=10)]
        first = self.client.iterator(path, batch_size=10)
        expect([o.id for o in itertools.islice(first, 15)] == every[:15], "iteration order")
        resumed = self.client.iterator(path, batch_size=10, cursor=first.cursor)
        expect([o.id for o in itertools.islice(resumed, 3)] == every[20:23],
               "a resumed iterator does not start at the next batch")

    def recorded_v2_lists(self):
        """1.1.1.1's referrer files are those of its recorded v2 report, with their
        detections; github.com's subdomains are those of its report."""
        want = self.recording("v2/bodies/ninoseki_v2_ip_address_report_1.1.1.1.200.json")
        recorded = {}       # a file listed twice (two scans) keeps its first record
        for rec in want["detected_referrer_samples"] + want["undetected_referrer_samples"]:
            recorded.setdefault(rec["sha256"], rec["positives"])
        got = {obj.id: obj.last_analysis_stats["malicious"] for obj in
               self.client.iterator("/ip_addresses/1.1.1.1/referrer_files", batch_size=40)}
        found = difference(got, recorded, "referrer_files")
        expect(found is None, found)
        subdomains = self.recording("v2/bodies/ninoseki_v2_domain_report_github.com.200.json")
        first = next(iter(self.client.iterator("/domains/github.com/subdomains")))
        expect(first.id == subdomains["subdomains"][0], f"subdomain {first.id}")

    def resolver_related_clean(self):
        """No recording of 8.8.8.8's relationships: synthesized, clean (README rule)."""
        for rel in ("communicating_files", "downloaded_files", "referrer_files", "urls"):
            for obj in self.client.iterator(f"/ip_addresses/8.8.8.8/{rel}", batch_size=40):
                expect(obj.last_analysis_stats["malicious"] == 0, f"{rel} {obj.id} detected")

    def comments(self):
        path = f"/files/{EXE}/comments"
        before = [c.id for c in self.client.iterator(path, batch_size=5)]
        posted = self.client.post_object(path, obj=self.vt.Object(
            "comment", obj_attributes={"text": "Seen in a #phishing campaign"}))
        expect(posted.type == "comment" and posted.text == "Seen in a #phishing campaign",
               "posted comment")
        expect(posted.tags == ["phishing"], f"tags {posted.tags}")
        expect(set(posted.votes) == {"positive", "negative", "abuse"}, "votes")
        expect(posted.html and posted.date, "html, date")
        after = [c.id for c in self.client.iterator(path, batch_size=5)]
        expect(after == [posted.id] + before, "the new comment does not come first")

    def votes(self):
        path = "/domains/haiku-os.org/votes"
        before = self.client.get_object("/domains/haiku-os.org").total_votes["malicious"]
        vote = self.client.post_object(path, obj=self.vt.Object(
            "vote", obj_attributes={"verdict": "malicious"}))
        expect((vote.type, vote.verdict, vote.value) == ("vote", "malicious", -1), "vote")
        listed = [v.id for v in self.client.iterator(path)]
        expect(listed[:1] == [vote.id], "not listed")
        after = self.client.get_object("/domains/haiku-os.org").total_votes["malicious"]
        expect(after == before + 1, "total_votes")
        err = self.api_error(lambda: self.client.post_object(path, obj=self.vt.Object(
            "vote", obj_attributes={"verdict": "maybe"})))
        expect(err.code == "InvalidArgumentError", err.code)

    def search(self):
        found = [o.id for o in self.client.iterator("/intelligence/search",
                                                    params={"query": EXE})]
        expect(found == [EXE], f"found {found}")

    def scan_file(self):
        content = b"MZ checked by vt-py VT-FAKE-MALICIOUS=4"
        analysis = self.client.scan_file(io.BytesIO(content), wait_for_completion=True)
        expect(analysis.status == "completed" and analysis.stats["malicious"] == 4, "analysis")
        meta = self.client.get_json(f"/analyses/{analysis.id}")["meta"]
        expect(set(meta["file_info"]) == {"size", "sha256", "sha1", "md5"}, "meta.file_info")
        obj = self.client.get_object(f"/files/{hashlib.sha256(content).hexdigest()}")
        recorded = self.recording("v3/file_win32exe_417c0670.json")["data"]["attributes"]
        for name in ("ssdeep", "tlsh", "vhash", "trid", "magic", "type_tag", "md5", "sha1"):
            expect(name in recorded and obj.get(name), f"{name} missing")

    def scan_url(self):
        url = "http://vtpy-check.example.net/landing"
        analysis = self.client.scan_url(url, wait_for_completion=True)
        expect(analysis.status == "completed", analysis.status)
        meta = self.client.get_json(f"/analyses/{analysis.id}")["meta"]
        for recording in ANALYSIS_RECORDINGS:
            for member, value in self.recording(recording)["meta"].items():
                expect(set(meta.get(member, {})) == set(value), f"meta.{member}")
        obj = self.client.get_object(f"/urls/{self.vt.url_id(url)}")
        recorded = self.recording("v3/bodies/ninoseki_url_get_example.com.200.json")
        for name in recorded["data"]["attributes"]:
            if name.startswith("last_http_response_"):
                expect(obj.get(name) is not None, f"{name} missing")
        expect(meta["file_info"]["sha256"] == obj.last_http_response_content_sha256,
               "file_info is not the fetched content")

    def reanalyse(self):
        want = self.recording("v3/bodies/pwelch_file_analyse.200.json")["data"]
        got = self.client.post(f"/files/{EXE}/analyse").json()["data"]
        expect(got["type"] == want["type"], "type")
        md5, _, epoch = base64.b64decode(got["id"]).decode().partition(":")
        expect(len(md5) == 32 and epoch.isdigit(), f"id {got['id']}")
        url = self.recording("v3/bodies/pwelch_url_analyse.200.json")["data"]
        got = self.client.post("/urls/aHR0cDovL3d3dy5nb29nbGUuY29t/analyse").json()["data"]
        expect(got["id"].rsplit("-", 1)[0] == url["id"].rsplit("-", 1)[0], f"id {got['id']}")

    def upload_url(self):
        want = self.recording("v3/bodies/pwelch_large_file_upload__0.200.json")["data"]
        got = self.client.get_data("/files/upload_url")
        expect(got.startswith(self.url + "/_ah/upload/") and got.endswith("/")
               and want.startswith("https://www.virustotal.com/_ah/upload/"), got)

    def download(self):
        content = b"downloadable by vt-py \x00\x01"
        info = self.control("POST", "files?name=vtpy.bin", raw=content)
        out = io.BytesIO()
        self.client.download_file(info["sha256"], out)
        expect(out.getvalue() == content, "bytes differ")
        url = self.client.get_data(f"/files/{info['md5']}/download_url")
        expect(url == info["download_url"], "download_url")

    def not_found(self):
        want = self.recording("v3/bodies/pwelch_file_not_found.404.json")["error"]
        unknown = "0" * 64
        err = self.api_error(lambda: self.client.get_object(f"/files/{unknown}"))
        expect(err.code == want["code"], err.code)
        expect(err.message == want["message"].replace(
            "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b", unknown),
            err.message)

    def wrong_key(self):
        want = self.recording("v3/error_401_WrongCredentialsError.json")["error"]
        other = self.vt.Client("not-a-valid-key", host=self.url)
        try:
            err = self.api_error(lambda: other.get_object(f"/files/{EXE}"))
        finally:
            other.close()
        expect((err.code, err.message) == (want["code"], want["message"]), err.message)

    def bad_domain(self):
        want = self.recording("v3/bodies/pwelch_domain_bad_request.400.json")["error"]
        err = self.api_error(lambda: self.client.get_object("/domains/xpressco.za"))
        expect((err.code, err.message) == (want["code"], want["message"]), err.message)

    def quota(self):
        want = self.recording("v3/bodies/pwelch_file_rate_limit.429.json")["error"]
        self.control("POST", "quota", {"key": self.key, "per_minute": 0})
        try:
            err = self.api_error(lambda: self.client.get_object(f"/files/{EXE}"))
        finally:
            self.control("POST", "quota", {"key": self.key})
        expect((err.code, err.message) == (want["code"], want["message"]), err.message)

    def feed(self, kind, want_type):
        self.control("POST", "feeds", {"now": FEED_NOW, "running": False, "count": 30})
        objs = list(itertools.islice(self.client.feed(kind, cursor=FEED_MINUTE), 30))
        expect(len(objs) == 30, f"{len(objs)} objects")
        for obj in objs:
            expect(obj.type == want_type and obj.id and obj.to_dict()["attributes"],
                   f"line {obj.id}")
        resumed = self.client.feed(kind, cursor=f"{FEED_MINUTE}-10")
        expect(next(resumed).id == objs[10].id, "resuming from a cursor")
        if kind == self.vt.FeedType.FILES:
            first = objs[0].to_dict()
            sample = self.client.get_object(f"/files/{first['id']}").to_dict()
            expect(difference(first["attributes"], sample["attributes"]) is None,
                   "a sample line differs from the object")
            expect(set(objs[1].context_attributes) == {"download_url", "submitter"},
                   "context_attributes")

    def feed_missing_and_late(self):
        """vt-py skips one missing minute and waits for a late one (its 60 s sleeps are cut
        short here)."""
        self.control("POST", "feeds", {"now": FEED_NOW, "running": False, "count": 5,
                                       "minutes": {"202401011031": {"missing": True},
                                                   "202401011032": {"late": 2}}})
        since = self.control("GET", "log")["entries"][-1]["seq"]
        feed_module = sys.modules["vt.feed"]
        real_asyncio = feed_module.asyncio

        class NoWait:
            @staticmethod
            async def sleep(_):
                await real_asyncio.sleep(0)

        feed_module.asyncio = NoWait
        try:
            feed = self.client.feed(self.vt.FeedType.URLS, cursor="202401011031")
            first = next(feed)
        finally:
            feed_module.asyncio = real_asyncio
        expect(feed.cursor == "202401011032-1", f"cursor {feed.cursor}")
        batch = self.client.feed(self.vt.FeedType.URLS, cursor="202401011032")
        expect(next(batch).id == first.id, "not the next minute's first object")
        log = [e for e in self.control("GET", f"log?since={since}")["entries"]
               if e["path"].startswith("/api/v3/feeds/urls/")]
        statuses = [(e["path"][-4:], e["status"]) for e in log][:4]
        expect(statuses == [("1031", 404), ("1032", 400), ("1032", 400), ("1032", 302)],
               f"requests {statuses}")

    # ---- all of them -------------------------------------------------------------------

    def run(self):
        self.control("POST", "reset")
        self.control("POST", "analysis_steps", {"steps": 0})
        for name, path, recording in OBJECT_RECORDINGS:
            self.flow(f"get {name}", self.same_object, path, recording)
        for recording in ANALYSIS_RECORDINGS:
            self.flow(f"get analysis {os.path.basename(recording)}", self.analysis, recording)
        for name, function, *args in [
                ("file known from v2 only", self.v2_only_file),
                ("empty file", self.empty_file),
                ("embedded relationships of 1.1.1.1", self.embedded_relationships),
                ("iterator with cursor over a recorded page", self.recorded_page_and_cursor),
                ("relationships from recorded v2 lists", self.recorded_v2_lists),
                ("resolver's synthesized related objects are clean", self.resolver_related_clean),
                ("comments: post and list", self.comments),
                ("votes: post, list, total_votes", self.votes),
                ("search", self.search),
                ("scan_file + wait", self.scan_file),
                ("scan_url + wait", self.scan_url),
                ("re-analyse file and URL", self.reanalyse),
                ("upload_url", self.upload_url),
                ("download_file", self.download),
                ("error: not found", self.not_found),
                ("error: wrong key", self.wrong_key),
                ("error: bad domain", self.bad_domain),
                ("error: quota", self.quota),
                ("feed files", self.feed, self.vt.FeedType.FILES, "file"),
                ("feed urls", self.feed, self.vt.FeedType.URLS, "url"),
                ("feed file-behaviours", self.feed, self.vt.FeedType.FILE_BEHAVIOURS,
                 "file_behaviour"),
                ("feed: missing and late minutes", self.feed_missing_and_late)]:
            self.flow(name, function, *args)
        self.client.close()
        for name, why in self.flows:
            print(f"AGREE {name}" if why is None else f"DISAGREE {name}: {why}")
        agree = sum(why is None for _, why in self.flows)
        print(f"{agree} of {len(self.flows)} flows agree")
        return agree == len(self.flows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the fake's origin, http://127.0.0.1:PORT")
    parser.add_argument("--key", required=True, help="an API key the fake accepts")
    parser.add_argument("--samples", default=os.environ.get("VT_SAMPLES"),
                        help="the vt-samples folder (default $VT_SAMPLES, else shared/vt-samples "
                             "beside the repository or its worktree folder)")
    args = parser.parse_args()
    args.samples = args.samples or next((p for p in SAMPLES_GUESSES if os.path.isdir(p)), None)
    if not args.samples:
        sys.exit("no vt-samples folder: give --samples or set VT_SAMPLES")
    vtpy = os.environ.get("VTPY_DIR")
    if not vtpy:
        sys.exit("set VTPY_DIR to a checkout of vt-py")
    sys.path.insert(0, vtpy)
    import vt          # noqa: E402  (from VTPY_DIR, on purpose)
    sys.exit(0 if Check(vt, args.url, args.key, os.path.abspath(args.samples)).run() else 1)


if __name__ == "__main__":
    main()
