"""The shapes of VirusTotal objects the fake builds (files, URLs, domains, IPs, comments,
votes), their identifiers, and the attributes derived from a content's hashes or a URL:
everything here is a pure function of its arguments, so that the same input always gives the
same object."""

import hashlib
import re
import time
import urllib.parse

API = "https://www.virustotal.com/api/v3"     # rewritten to the fake's own origin when sent
GUI = "https://www.virustotal.com"

TYPES = {"files": "file", "urls": "url", "domains": "domain", "ip_addresses": "ip_address"}
COLLECTIONS = {t: c for c, t in TYPES.items()}
LABELS = {"files": "File", "urls": "URL", "domains": "Domain", "ip_addresses": "IP address"}
FILE_STATS = ["harmless", "type-unsupported", "suspicious", "confirmed-timeout", "timeout",
              "failure", "malicious", "undetected"]
URL_STATS = ["harmless", "malicious", "suspicious", "undetected", "timeout"]
HASHTAG = re.compile(r"#(\w[\w-]*)")    # a comment's #tags become its tags


class FileKind:
    """What the service says of a content's type."""

    def __init__(self, description, tag, extension, magic, trid, vhash_style=None):
        self.description, self.tag, self.extension, self.magic = description, tag, extension, magic
        self.trid = trid                  # [(file_type, probability)]
        self.vhash_style = vhash_style    # "pe" (digits and z), "hex" (32 hex digits) or None


# First bytes -> kind, checked in order; then TEXT (or EMPTY for no bytes at all).
FILE_KINDS = [
    (b"MZ", FileKind("Win32 EXE", "peexe", "exe",
                     "PE32 executable (GUI) Intel 80386, for MS Windows",
                     [("Win32 Executable (generic)", 52.9), ("Generic Win/DOS Executable", 23.5),
                      ("DOS Executable Generic", 23.5)], "pe")),
    (b"\x7fELF", FileKind("ELF", "elf", "", "ELF 64-bit LSB executable, x86-64",
                          [("ELF Executable and Linkable format (Linux)", 50.1),
                           ("ELF Executable and Linkable format (generic)", 49.8)], "hex")),
    (b"%PDF", FileKind("PDF", "pdf", "pdf", "PDF document",
                       [("Adobe Portable Document Format", 100.0)], "hex")),
    (b"PK\x03\x04", FileKind("ZIP", "zip", "zip", "Zip archive data",
                             [("ZIP compressed archive", 80.0), ("PrintFox/Pagefox bitmap", 20.0)],
                             "hex")),
]
TEXT = FileKind("Text", "text", "txt", "ASCII text", [("Text - UTF-8 encoded", 100.0)])
EMPTY = FileKind("Text", "text", "txt", "empty", [])


def file_kind(head, size):
    """The kind of a content from its first bytes."""
    if size == 0:
        return EMPTY
    for magic, kind in FILE_KINDS:
        if head.startswith(magic):
            return kind
    return TEXT


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_url(url):
    """A light version of VirusTotal's URL canonicalisation: default scheme http, lower-case
    scheme and host, "/" for an empty path. None when there is no host."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return None
    if not hostname:
        return None
    netloc = parts.netloc
    host_at = netloc.rfind("@") + 1
    netloc = netloc[:host_at] + netloc[host_at:].lower()
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path or "/",
                                    parts.query, parts.fragment))


def url_id(url):
    canonical = canonical_url(url)
    return sha256_hex(canonical) if canonical else None


def ymd(epoch):
    return time.strftime("%Y%m%d", time.gmtime(epoch))


def v2_date(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def http_date(epoch):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


def self_link(coll, ident):
    return {"self": f"{API}/{coll}/{ident}"}


def stats_of(coll, results):
    counts = dict.fromkeys(FILE_STATS if coll == "files" else URL_STATS, 0)
    for result in results.values():
        counts[result["category"]] = counts.get(result["category"], 0) + 1
    return counts


def analysed_attributes(coll, results, date):
    return {"last_analysis_results": results, "last_analysis_stats": stats_of(coll, results),
            "last_analysis_date": date, "last_modification_date": date}


def object_aliases(coll, obj):
    if coll == "files":
        attrs = obj["attributes"]
        return [obj["id"]] + [attrs[k] for k in ("md5", "sha1", "sha256") if attrs.get(k)]
    return [obj["id"]]


# ---- fingerprints derived from a content's sha256 (the fake never runs ssdeep or TLSH) -------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _stream(seed, n):
    """n deterministic bytes from a seed."""
    out, counter = b"", 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


def fingerprints(sha256, size, kind):
    """ssdeep, tlsh, vhash and trid as the service shows them, derived from the sha256: an
    ssdeep block size of 3·2^k with 64·block ≥ size, TLSH "TNULL" below 50 bytes (as TLSH
    itself), no vhash for text."""
    block = 3
    while block * 64 < size:
        block *= 2
    data = _stream(sha256, 160)
    chunk = min(64, max(0, size // block))
    first = "".join(B64[b % 64] for b in data[:chunk])
    second = "".join(B64[b % 64] for b in data[64:64 + (chunk + 1) // 2])
    attrs = {"ssdeep": f"{block}:{first}:{second}",
             "tlsh": "T1" + data[96:131].hex().upper() if size >= 50 else "TNULL",
             "trid": [{"file_type": t, "probability": p} for t, p in kind.trid]}
    if kind.vhash_style == "hex":
        attrs["vhash"] = data[131:147].hex()
    elif kind.vhash_style == "pe":
        digits = "".join(str(b % 10) for b in data[131:144])
        attrs["vhash"] = f"{digits[:10]}5z{digits[10:]}"
    return attrs


def http_response(url, date):
    """What the service's crawler recorded when it fetched a URL: a 200 text/html page whose
    bytes (and so its sha256 and length) follow from the URL."""
    page = f"<html><head><title>Fake page</title></head><body>{url}</body></html>"
    length = len(page.encode())
    return {"last_http_response_code": 200, "last_http_response_content_length": length,
            "last_http_response_content_sha256": sha256_hex(page),
            "last_http_response_headers": {"content-type": "text/html; charset=UTF-8",
                                           "content-length": str(length),
                                           "date": http_date(date), "server": "fakevt"},
            "last_http_response_cookies": {}}


# ---- objects -----------------------------------------------------------------------------------

def votes_zero():
    return {"harmless": 0, "malicious": 0}


def new_file(sha256, md5, sha1, size, names, kind, date):
    attrs = {"md5": md5, "sha1": sha1, "sha256": sha256, "size": size,
             "names": list(names), "meaningful_name": names[0] if names else None,
             "type_description": kind.description, "type_tag": kind.tag,
             "type_extension": kind.extension, "magic": kind.magic, "tags": [kind.tag],
             "reputation": 0, "total_votes": votes_zero(), "times_submitted": 1,
             "unique_sources": 1, "first_submission_date": date, "last_submission_date": date}
    attrs.update(fingerprints(sha256, size, kind))
    return {"type": "file", "id": sha256, "links": self_link("files", sha256), "attributes": attrs}


def derived_file(sha256, size, names, kind, date):
    """A file the fake knows only by sha256: its other hashes are derived from it."""
    digest = hashlib.sha512(f"file/{sha256}".encode()).hexdigest()
    return new_file(sha256, digest[:32], digest[32:72], size, names, kind, date)


def new_url(url, date):
    url = canonical_url(url)
    ident = sha256_hex(url)
    attrs = {"url": url, "last_final_url": url, "title": "Fake page", "categories": {},
             "tags": [], "reputation": 0, "total_votes": votes_zero(), "times_submitted": 1,
             "first_submission_date": date, "last_submission_date": date}
    attrs.update(http_response(url, date))
    return {"type": "url", "id": ident, "links": self_link("urls", ident), "attributes": attrs}


def new_domain(name, date):
    return {"type": "domain", "id": name, "links": self_link("domains", name),
            "attributes": {"tld": name.rsplit(".", 1)[-1], "categories": {}, "tags": [],
                           "reputation": 0, "total_votes": votes_zero(),
                           "last_dns_records": [], "whois": "", "creation_date": date}}


def new_ip(ip, date):
    return {"type": "ip_address", "id": ip, "links": self_link("ip_addresses", ip),
            "attributes": {"asn": 64500, "as_owner": "FakeVT Networks", "country": "ZZ",
                           "continent": "EU", "network": ip.rsplit(".", 1)[0] + ".0/24",
                           "regional_internet_registry": "RIPE NCC", "tags": [],
                           "reputation": 0, "total_votes": votes_zero(),
                           "whois": "", "whois_date": date}}


def resolution(ip, host, date, resolver="VirusTotal"):
    return {"type": "resolution", "id": ip + host, "links": self_link("resolutions", ip + host),
            "attributes": {"date": date, "host_name": host, "ip_address": ip,
                           "resolver": resolver}}


def child_id(coll, ident, seed):
    """Comment and vote ids: <f|u|d|i>-<parent id>-<8 hex>, as the service's."""
    return f"{TYPES[coll][0]}-{ident}-{sha256_hex(seed)[:8]}"


def comment(ident, text, date, votes=None):
    tags = sorted({tag.lower() for tag in HASHTAG.findall(text)})
    html = (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", "<br />"))
    return {"type": "comment", "id": ident, "links": self_link("comments", ident),
            "attributes": {"date": date, "text": text, "html": html, "tags": tags,
                           "votes": votes or {"positive": 0, "negative": 0, "abuse": 0}}}


def vote(ident, verdict, date):
    return {"type": "vote", "id": ident, "links": self_link("votes", ident),
            "attributes": {"date": date, "verdict": verdict,
                           "value": 1 if verdict == "harmless" else -1}}
