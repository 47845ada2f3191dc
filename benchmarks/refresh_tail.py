"""The tail of get_token across refreshes: msi_credential against azure-identity's ManagedIdentityCredential.

Both credentials talk to the same loopback emulator (App Service protocol) answering after 0.3 s with tokens of
20 s, so a run of a minute covers several refresh cycles. Run:

    python benchmarks/refresh_tail.py                   # 60 s per run
    python benchmarks/refresh_tail.py --duration 30     # shorter

This prints figures; nothing here asserts a timing. Needs the dev extra (azure-identity, aiohttp).

Method (also printed under the table):
- Each run is a fresh interpreter of its own (``--worker``): one credential, its first token, then 4 threads (sync)
  or 4 tasks of one event loop (async) call ``get_token`` in a loop for the duration, pausing ``--interval`` between
  calls (the async tasks pause with ``asyncio.sleep``, which also lets the loop run its other tasks).
- Latency is the time one ``get_token`` call took, for every call after the first token; worst, 99.9th and 99th
  percentiles over all the calls of a run.
- Requests are those the emulator received during the run (the first token's included).
- Expired: calls that returned a token whose ``expires_on`` had passed when the call returned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

OURS = "msi_credential"
THEIRS = "azure-identity"
SIDES = (OURS, THEIRS)
SCOPE = "https://storage.azure.com/.default"
LATENCY = 0.3  # seconds the emulator takes to answer
LIFETIME = 20  # seconds a token lives
WORKERS = 4


# ---------------------------------------------------------------------------------------------- worker side


def build(side: str, asynchronous: bool) -> Any:
    if side == OURS:
        if asynchronous:
            from msi_credential.aio import ManagedIdentityCredential as AsyncOurs

            return AsyncOurs(share_cache=False)
        from msi_credential import ManagedIdentityCredential as Ours

        return Ours(share_cache=False)
    if asynchronous:
        from azure.identity.aio import ManagedIdentityCredential as AsyncTheirs

        return AsyncTheirs()
    from azure.identity import ManagedIdentityCredential as Theirs

    return Theirs()


def summary(latencies: list[float], expired: int) -> dict[str, float]:
    ordered = sorted(latencies)

    def percentile(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

    return {
        "calls": float(len(ordered)),
        "worst": ordered[-1] if ordered else 0.0,
        "p999": percentile(0.999),
        "p99": percentile(0.99),
        "expired": float(expired),
    }


def worker_sync(side: str, duration: float, interval: float) -> dict[str, float]:
    credential = build(side, asynchronous=False)
    credential.get_token(SCOPE)  # the first token: not counted
    ends = time.monotonic() + duration
    latencies: list[list[float]] = [[] for _ in range(WORKERS)]
    expired = [0] * WORKERS

    def work(index: int) -> None:
        mine = latencies[index]
        pause = threading.Event()
        while time.monotonic() < ends:
            started = time.perf_counter()
            token = credential.get_token(SCOPE)
            mine.append(time.perf_counter() - started)
            if token.expires_on <= time.time():
                expired[index] += 1
            pause.wait(interval)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    credential.close()
    return summary([value for values in latencies for value in values], sum(expired))


async def worker_async(side: str, duration: float, interval: float) -> dict[str, float]:
    credential = build(side, asynchronous=True)
    await credential.get_token(SCOPE)  # the first token: not counted
    ends = time.monotonic() + duration
    latencies: list[float] = []
    expired = [0]

    async def work() -> None:
        while time.monotonic() < ends:
            started = time.perf_counter()
            token = await credential.get_token(SCOPE)
            latencies.append(time.perf_counter() - started)
            if token.expires_on <= time.time():
                expired[0] += 1
            await asyncio.sleep(interval)

    await asyncio.gather(*(work() for _ in range(WORKERS)))
    await credential.close()
    return summary(latencies, expired[0])


def worker(spec: dict[str, Any]) -> dict[str, float]:
    if spec["face"] == "async":
        return asyncio.run(worker_async(spec["side"], spec["duration"], spec["interval"]))
    return worker_sync(spec["side"], spec["duration"], spec["interval"])


# ---------------------------------------------------------------------------------------------- parent side


def run(emulator: Any, **spec: Any) -> tuple[dict[str, float], int]:
    """One fresh interpreter: its figures, and the requests the emulator received while it ran."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().endswith("_PROXY") and name not in ("MSI_ENDPOINT", "MSI_SECRET")
    }
    environment.update(emulator.environ)
    environment["NO_PROXY"] = "*"
    emulator.clear()
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    if result.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{result.stderr}")
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures, len(emulator.requests)


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds each run calls get_token")
    parser.add_argument(
        "--interval", type=float, default=0.001, help="seconds each caller pauses between calls"
    )
    parser.add_argument("--face", choices=("sync", "async", "both"), default="both")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    try:
        import azure.identity  # noqa: F401
    except ImportError:
        print('benchmarks/refresh_tail.py needs azure-identity: pip install -e ".[dev]"', file=sys.stderr)
        return 2

    from msi_credential.emulator import Emulator

    faces = ("sync", "async") if args.face == "both" else (args.face,)
    header = ("face", "credential", "calls", "worst", "p99.9", "p99", "token requests", "expired tokens")
    rows: list[tuple[str, ...]] = []
    with Emulator("app_service", token_lifetime=LIFETIME) as emulator:
        emulator.delay = LATENCY
        for face in faces:
            for side in SIDES:
                figures, requests = run(
                    emulator, side=side, face=face, duration=args.duration, interval=args.interval
                )
                rows.append(
                    (
                        face,
                        side,
                        f"{int(figures['calls'])}",
                        fmt_time(figures["worst"]),
                        fmt_time(figures["p999"]),
                        fmt_time(figures["p99"]),
                        f"{requests}",
                        f"{int(figures['expired'])}",
                    )
                )
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    print(" | ".join(name.ljust(width) for name, width in zip(header, widths)))
    print("-|-".join("-" * width for width in widths))
    for row in rows:
        print(" | ".join(value.ljust(width) for value, width in zip(row, widths)))
    print()
    print(
        f"{WORKERS} {'threads / tasks'} per run, {args.duration:g} s each after the first token, "
        f"{args.interval * 1e3:g} ms pause between calls; emulator (App Service) answering after {LATENCY:g} s "
        f"with {LIFETIME} s tokens; Python {sys.version.split()[0]}."
    )
    print(__doc__.split("Method (also printed under the table):\n", 1)[1].rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
