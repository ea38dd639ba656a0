"""The official Python client's side of the throughput row: N look-ups of distinct file ids
(the server answers each with the same file object) with vt-py's get_object_async,
CONCURRENCY of them in flight.
usage: /usr/bin/python3 bench/vtpy_batch.py VTPY_DIR BASE_URL HASH N CONCURRENCY
prints "lookups seconds". VTPY_DIR is a checkout of github.com/VirusTotal/vt-py."""
import asyncio
import sys
import time

vtpy_dir, base, file_hash, n, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, vtpy_dir)
import vt  # noqa: E402  (from VTPY_DIR)


async def main():
    async with vt.Client("bench-key", host=base) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i):
            async with gate:
                obj = await client.get_object_async("/files/{}", "%s%08x" % (file_hash[:56], i))
                assert obj.type == "file"

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(1, n + 1)))
        return time.perf_counter() - started


print(n, asyncio.run(main()))
