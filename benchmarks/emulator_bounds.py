"""What a long-running emulator keeps: memory after many large request bodies, and Azure Arc key files on disk after
many challenges. Figures only; tests/emulator/test_wire.py and tests/emulator/sources/test_azure_arc.py assert the bounds themselves (records kept, files on disk).

    python benchmarks/emulator_bounds.py                 # 150 bodies of 1 MiB, 500 Arc challenges
    python benchmarks/emulator_bounds.py --bodies 300 --challenges 2000
"""

from __future__ import annotations

import argparse
import gc
import http.client
import os
import resource
import sys
import tracemalloc
from urllib.parse import urlsplit

from msi_credential.emulator import Emulator

MIB = 1024 * 1024


def _post(emulator: Emulator, body: bytes) -> int:
    parts = urlsplit(emulator.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request(
            "POST", parts.path, body=body, headers={"Content-Type": "application/octet-stream"}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _rss() -> float:
    """This process's resident memory in MiB now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
        return peak / MIB if sys.platform == "darwin" else peak / 1024


def memory_after_bodies(count: int) -> tuple[float, float, int]:
    """(MiB traced after ``count`` bodies of 1 MiB, MiB of RSS growth, requests kept)."""
    with Emulator("imds") as emulator:
        gc.collect()
        tracemalloc.start()
        rss_before = _rss()
        baseline = tracemalloc.get_traced_memory()[0]
        body = os.urandom(MIB)
        for _ in range(count):
            _post(emulator, body)
        del body
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - baseline
        tracemalloc.stop()
        rss_after = _rss()
        kept = len(emulator.requests)
    return traced / MIB, rss_after - rss_before, kept


def arc_files_after_challenges(count: int) -> int:
    """Key files in the Arc key directory after ``count`` unanswered challenges."""
    with Emulator("azure_arc") as emulator:
        parts = urlsplit(emulator.url)
        for _ in range(count):
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
            try:
                connection.request(
                    "GET",
                    f"{parts.path}?api-version=2020-06-01&resource=https://storage.azure.com",
                    headers={"Metadata": "true"},
                )
                connection.getresponse().read()
            finally:
                connection.close()
        directory = emulator.key_directory
        assert directory is not None
        return len(os.listdir(directory))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=150)
    parser.add_argument("--challenges", type=int, default=500)
    args = parser.parse_args()
    traced, rss, kept = memory_after_bodies(args.bodies)
    files = arc_files_after_challenges(args.challenges)
    print(f"{'figure':<52} {'value':>10}")
    print(f"{f'traced memory kept after {args.bodies} x 1 MiB bodies (MiB)':<52} {traced:>10.1f}")
    print(f"{'RSS growth meanwhile (MiB)':<52} {rss:>10.1f}")
    print(f"{'requests kept (emulator.requests)':<52} {kept:>10}")
    print(f"{f'Arc key files on disk after {args.challenges} challenges':<52} {files:>10}")


if __name__ == "__main__":
    main()
