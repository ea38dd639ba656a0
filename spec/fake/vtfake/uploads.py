"""Receiving a multipart file upload (v3 POST /files, the upload URL, v2 file/scan)."""

from .httpio import DiscardSink, TooLarge, limited, read_form

DIRECT_LIMIT = 32 * 1024 * 1024         # POST /files, v2 file/scan
UPLOAD_URL_LIMIT = 650 * 1024 * 1024    # POST to an upload URL


def read_upload(req, limit):
    """Stream a multipart body; the part named "file" goes to the content store.
    Returns (other fields, FileInfo or None). Raises TooLarge past `limit` body bytes."""
    if req.body.declared is not None and req.body.declared > limit:
        raise TooLarge()
    writers = []

    def open_file(name, filename):
        if name != "file" or writers:
            return DiscardSink()
        writers.append(req.fake.store.content.writer(filename))
        return writers[0]

    try:
        fields = read_form(limited(req.body, limit), req.headers.get("content-type"), open_file)
    finally:
        for writer in writers:
            writer.discard()        # removes the temp file unless the part completed
    return fields, (writers[0].info if writers else None)
