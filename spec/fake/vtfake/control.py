"""The control API under /_fake/ (no key, JSON in and out; not logged, never faulted, never
counted against a quota)."""

import json
import time

from .httpio import V2_JSON, HTTPError, json_response


def answer(obj, status=200):
    return json_response(status, obj, V2_JSON)


def json_body(req):
    raw = req.body.read_all()
    try:
        return json.loads(raw or b"{}")
    except ValueError as err:
        raise HTTPError(answer({"error": f"invalid JSON body: {err}"}, 400))


def checked(action, *args):
    """Run a configuration action; a bad value becomes a 400 naming the problem."""
    try:
        return action(*args)
    except (ValueError, TypeError, KeyError) as err:
        raise HTTPError(answer({"error": str(err)}, 400))


class Control:
    def __init__(self, fake):
        self.fake = fake

    def log(self, req):
        since = checked(int, req.query.get("since", "0"))
        entries = self.fake.log.entries(req.query.get("listener"), since)
        return answer({"entries": entries, "now": time.time()})

    def reset(self, req):
        self.fake.reset()
        return answer({"ok": True})

    def list_faults(self, req):
        return answer({"faults": self.fake.faults.list()})

    def add_faults(self, req):
        body = json_body(req)
        specs = body if isinstance(body, list) else [body]
        faults = [checked(self.fake.faults.add, spec) for spec in specs]
        return answer({"ok": True, "ids": [f.id for f in faults]})

    def quota(self, req):
        body = json_body(req)
        checked(self.fake.quotas.configure, body.get("key", self.fake.default_key), body)
        return answer({"ok": True})

    def register_file(self, req):
        writer = self.fake.store.content.writer(req.query.get("name"))
        try:
            for data in req.body.chunks():
                writer.write(data)
            writer.close()
        finally:
            writer.discard()
        self.fake.store.register_file(writer.info)
        info = writer.info
        return answer(dict(info.public(), download_url=self.fake.storage_url(info.sha256)))

    def set_key(self, req):
        body = json_body(req)
        key, premium = body.get("key"), body.get("premium", False)
        if not isinstance(key, str) or not key or not isinstance(premium, bool):
            raise HTTPError(answer({"error": "needs a non-empty string key and a boolean premium"},
                                   400))
        self.fake.set_key(key, premium)
        return answer({"ok": True, "key_count": len(self.fake.keys),
                       "batch_limit": self.fake.batch_limit(key)})

    def get_feeds(self, req):
        return answer(self.fake.feeds.state())

    def set_feeds(self, req):
        checked(self.fake.feeds.configure, json_body(req))
        return answer(self.fake.feeds.state())

    def analysis_steps(self, req):
        steps = checked(int, json_body(req).get("steps"))
        if steps < 0:
            raise HTTPError(answer({"error": "steps must be >= 0"}, 400))
        self.fake.store.set_steps(steps)
        return answer({"ok": True, "steps": steps})


def register(router, fake):
    control = Control(fake)
    router.add("GET", "/_fake/log", control.log)
    router.add("POST", "/_fake/reset", control.reset)
    router.add("GET", "/_fake/faults", control.list_faults)
    router.add("POST", "/_fake/faults", control.add_faults)
    router.add("POST", "/_fake/quota", control.quota)
    router.add("POST", "/_fake/files", control.register_file)
    router.add("POST", "/_fake/analysis_steps", control.analysis_steps)
    router.add("POST", "/_fake/keys", control.set_key)
    router.add("GET", "/_fake/feeds", control.get_feeds)
    router.add("POST", "/_fake/feeds", control.set_feeds)
