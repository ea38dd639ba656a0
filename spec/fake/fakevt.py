#!/usr/bin/env python3
"""Fake VirusTotal server for the vt specs and demo; see README.md beside this file.

Prints one line, "LISTENING <main_port> <storage_port> <pid>", then serves until SIGTERM or
SIGINT, until its parent process dies, or until --max-lifetime seconds have passed."""

import sys

sys.dont_write_bytecode = True      # keep __pycache__ out of the repository

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from vtfake.server import FakeVT  # noqa: E402
from vtfake.suffixes import DEFAULT_PATH as DEFAULT_SUFFIX_LIST  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Fake VirusTotal server (v3, v2, storage host)")
    parser.add_argument("--key", action="append", dest="keys", metavar="KEY",
                        help="a valid API key (repeatable; default: test-key)")
    parser.add_argument("--premium-key", action="append", dest="premium_keys", default=[],
                        metavar="KEY", help="a valid API key with premium privileges (repeatable)")
    parser.add_argument("--samples", default=os.path.join(HERE, "samples"),
                        help="folder of sample bodies (default: samples/ beside this script)")
    parser.add_argument("--analysis-steps", type=int, default=3, metavar="N",
                        help="GETs of an analysis until it answers completed (0: at once)")
    parser.add_argument("--max-lifetime", type=float, default=3600, metavar="SECONDS",
                        help="exit after this long whatever happens (default 3600)")
    parser.add_argument("--storage-host", default="127.0.0.2",
                        help="loopback address of the storage host (default 127.0.0.2)")
    parser.add_argument("--suffix-list", default=DEFAULT_SUFFIX_LIST, metavar="FILE",
                        help=f"Public Suffix List that decides valid domains (default "
                             f"{DEFAULT_SUFFIX_LIST}, Debian package publicsuffix)")
    args = parser.parse_args(argv)
    if args.analysis_steps < 0:
        parser.error("--analysis-steps must be >= 0")
    return args


def main(argv):
    # Read before the LISTENING line: a parent that exits right after reading it must
    # still be seen as gone.
    parent = os.getppid()
    args = parse_args(argv)
    keys = args.keys or ([] if args.premium_keys else ["test-key"])
    fake = FakeVT(keys + args.premium_keys, args.premium_keys, args.samples,
                  args.analysis_steps, args.storage_host, args.suffix_list)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    fake.start()
    print(f"LISTENING {fake.main_port} {fake.storage_port} {os.getpid()}", flush=True)
    # Never outlive the test run: a changed parent pid means the parent died.
    deadline = time.monotonic() + args.max_lifetime
    while not stop.wait(0.25):
        if os.getppid() != parent or time.monotonic() >= deadline:
            break
    fake.close()


if __name__ == "__main__":
    main(sys.argv[1:])
