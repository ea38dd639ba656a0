"""File contents the fake knows (uploads and registered files): kept on disk under their
sha256, hashed and scanned for the verdict markers while they stream in."""

import hashlib
import os
import re
import shutil
import tempfile

from .objects import file_kind

MARKER = re.compile(rb"VT-FAKE-MALICIOUS=(\d+)")
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_DETECTIONS = 60
SCAN_WINDOW = 96        # longer than the EICAR string and any marker: matches may span chunks


class Verdict:
    """Decides how many engines call a content malicious (see README, "Verdict rule")."""

    def __init__(self):
        self._tail = b""
        self.marker = None
        self.eicar = False

    def feed(self, data, final=False):
        window = self._tail + data
        if self.marker is None:
            match = MARKER.search(window)
            # A digit run that touches the end of the window may continue in the next chunk.
            if match and (final or match.end() < len(window)):
                self.marker = int(match.group(1))
        if not self.eicar and EICAR in window:
            self.eicar = True
        self._tail = window[-SCAN_WINDOW:]

    @property
    def malicious(self):
        if self.marker is not None:
            return self.marker
        return EICAR_DETECTIONS if self.eicar else 0

    @property
    def label(self):
        if self.marker is None and self.eicar:
            return "EICAR-Test-File (not a virus)"
        return "FakeVT.Malicious"


def url_verdict(url):
    match = MARKER.search(url.encode("utf-8", "replace"))
    return int(match.group(1)) if match else 0


class FileInfo:
    def __init__(self, md5, sha1, sha256, size, head, verdict, name):
        self.md5, self.sha1, self.sha256 = md5, sha1, sha256
        self.size, self.head, self.name = size, head, name
        self.malicious = verdict.malicious
        self.label = verdict.label

    def kind(self):
        return file_kind(self.head, self.size)

    def public(self):
        return {"md5": self.md5, "sha1": self.sha1, "sha256": self.sha256,
                "size": self.size, "malicious": self.malicious}


class Writer:
    """A sink that streams one content to a temp file, hashing and scanning it."""

    def __init__(self, store, name):
        self._store, self._name = store, name
        fd, self._path = tempfile.mkstemp(dir=store.root, prefix="incoming-")
        self._file = os.fdopen(fd, "wb")
        self._hashes = [hashlib.md5(), hashlib.sha1(), hashlib.sha256()]
        self._verdict = Verdict()
        self._head = b""
        self.size = 0
        self.info = None

    def write(self, data):
        self.size += len(data)
        if len(self._head) < 16:
            self._head = (self._head + data)[:16]
        for digest in self._hashes:
            digest.update(data)
        self._verdict.feed(data)
        self._file.write(data)

    def close(self):
        """End of the part: the content gets its final name (its sha256)."""
        self._file.close()
        self._verdict.feed(b"", final=True)
        md5, sha1, sha256 = (digest.hexdigest() for digest in self._hashes)
        os.replace(self._path, self._store.path(sha256))
        self.info = FileInfo(md5, sha1, sha256, self.size, self._head, self._verdict, self._name)

    def discard(self):
        if not self._file.closed:
            self._file.close()
        if self.info is None and os.path.exists(self._path):
            os.unlink(self._path)


class ContentStore:
    """Directory of contents named by sha256."""

    def __init__(self, root):
        self.root = root
        os.makedirs(root, exist_ok=True)

    def path(self, sha256):
        return os.path.join(self.root, sha256)

    def has(self, sha256):
        return os.path.exists(self.path(sha256))

    def writer(self, name):
        return Writer(self, name)

    def clear(self):
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root, exist_ok=True)
