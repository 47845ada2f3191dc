"""The first token of a process: msi_credential against azure-identity, in fresh interpreters.

What a serverless instance pays on every cold start: import the credential, build it, get the first token from the
endpoint. Both credentials talk to the same loopback emulator (App Service protocol, which both support). Run:

    python benchmarks/cold_start.py             # prints a comparison table and the method
    python benchmarks/cold_start.py --runs 41   # more fresh interpreters per cell

This prints figures; nothing here asserts a timing. Needs the dev extra (azure-identity, azure-storage-blob).

Method (also printed under the table):
- Each figure is the median of fresh interpreters (``--worker``), the two sides alternating. In each, the clock
  starts just before ``from <library> import ManagedIdentityCredential`` and stops when the first ``get_token``
  returns: import, construction and the first request, everything a cold start pays for the credential.
- "standalone": nothing imported before but what the interpreter imports itself. "SDK imported first":
  ``azure.storage.blob`` is imported before the clock starts, as in an application whose client library is
  loaded before its credential (azure-core, requests and aiohttp are then already in memory).
- Byte-code caches are present: every cell runs once untimed first, so what is measured is loading, not
  compiling, as from an installed wheel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

OURS = "msi-credential"
THEIRS = "azure-identity"
SIDES = (OURS, THEIRS)
SCOPE = "https://storage.azure.com/.default"
PRELOADS = {"standalone": None, "SDK imported first (azure.storage.blob)": "azure.storage.blob"}


def worker(side: str, preload: str | None) -> dict[str, float]:
    """In a fresh interpreter: the time from the credential's import to its first token."""
    if preload:
        __import__(preload)
    started = time.perf_counter()
    if side == OURS:
        from msi_credential import ManagedIdentityCredential
    else:
        from azure.identity import ManagedIdentityCredential  # type: ignore[no-redef]
    credential = ManagedIdentityCredential()
    credential.get_token(SCOPE)
    first_token = time.perf_counter() - started
    credential.close()
    return {"first_token": first_token}


def run_worker(side: str, preload: str | None, environ: dict[str, str]) -> dict[str, float]:
    spec = json.dumps({"side": side, "preload": preload})
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", spec],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{completed.stderr}")
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=21, help="fresh interpreters per side and cell (default 21)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec: dict[str, Any] = json.loads(args.worker)
        print(json.dumps(worker(spec["side"], spec["preload"])))
        return 0

    from msi_credential.emulator import Emulator

    rows: list[tuple[str, str, str, str]] = []
    with Emulator("app_service", token_lifetime=24 * 3600) as emulator:
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.upper().endswith("_PROXY") and key not in emulator.environ
        }
        environ.update(emulator.environ)
        environ["NO_PROXY"] = environ["no_proxy"] = "*"
        # byte-code caches written by the untimed runs and read by the timed ones, as from an installed wheel
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
        for label, preload in PRELOADS.items():
            for side in SIDES:  # byte-code caches written, disk caches warm
                run_worker(side, preload, environ)
            figures: dict[str, list[float]] = {side: [] for side in SIDES}
            for _ in range(args.runs):
                for side in SIDES:
                    figures[side].append(run_worker(side, preload, environ)["first_token"])
            ours = statistics.median(figures[OURS])
            theirs = statistics.median(figures[THEIRS])
            rows.append((f"first token, {label}", fmt_ms(ours), fmt_ms(theirs), f"{ours / theirs:.2f}x"))

    header = ("", OURS, THEIRS, "ours / theirs")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
            )
        )
    print(
        f"\nMedians of {args.runs} fresh interpreters per cell, the sides alternating; each cell ran once untimed "
        "first (byte-code caches present).\nThe clock starts before the credential's import and stops when its "
        "first get_token returns (import + construction + one request to the loopback emulator)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
