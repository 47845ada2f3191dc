"""Side-by-side benchmarks: msi_credential against azure-identity's ManagedIdentityCredential.

Both credentials talk to the same loopback emulator (App Service protocol, which both support). Run:

    python benchmarks/compare.py            # prints a comparison table
    python benchmarks/compare.py --quick    # fewer repetitions

This prints figures; nothing here asserts a timing. Needs the dev extra (azure-identity, aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

try:
    from msi_credential.emulator import Emulator
except ImportError:  # run from a checkout without the package installed; main() says what to install
    Emulator = None  # type: ignore[assignment,misc]

OURS = "msi_credential"
THEIRS = "azure-identity"
SCOPE = "https://storage.azure.com/.default"
RESOURCES = [f"https://resource{i}.example.com/.default" for i in range(50)]


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sync_credential(kind: str) -> Any:
    if kind == OURS:
        from msi_credential import ManagedIdentityCredential

        return ManagedIdentityCredential(share_cache=False)
    from azure.identity import ManagedIdentityCredential as Theirs

    return Theirs()


def async_credential(kind: str) -> Any:
    if kind == OURS:
        from msi_credential.aio import ManagedIdentityCredential

        return ManagedIdentityCredential(share_cache=False)
    from azure.identity.aio import ManagedIdentityCredential as Theirs

    return Theirs()


def in_fresh_interpreter(code: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ)
    )
    parsed: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


IMPORT_CODE = """
import json, resource, time
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
{statement}
elapsed = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": elapsed, "peak_kib": after, "added_kib": after - before}}))
"""

IMPORTS = {
    OURS: "from msi_credential import ManagedIdentityCredential",
    THEIRS: "from azure.identity import ManagedIdentityCredential",
}
# Our package loads azure-core and requests when the first credential is built: show that cost too.
CONSTRUCTS = {kind: statement + "; ManagedIdentityCredential()" for kind, statement in IMPORTS.items()}


def measure_import(kind: str, runs: int, statements: dict[str, str] = IMPORTS) -> tuple[float, float]:
    samples = [in_fresh_interpreter(IMPORT_CODE.format(statement=statements[kind])) for _ in range(runs)]
    return (
        statistics.median(s["seconds"] for s in samples),
        statistics.median(s["peak_kib"] for s in samples) / 1024,
    )


def measure_cold(kind: str, emulator: Emulator, runs: int) -> float:
    samples = []
    for _ in range(runs):
        credential = sync_credential(kind)
        started = time.perf_counter()
        credential.get_token(SCOPE)
        samples.append(time.perf_counter() - started)
        credential.close()
    return statistics.median(samples)


def per_call(function: Callable[[], Any], calls: int) -> float:
    gc.collect()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        function()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def measure_cached(kind: str, resources: list[str], calls: int) -> float:
    credential = sync_credential(kind)
    for scope in resources:
        credential.get_token(scope)
    get_token = credential.get_token
    rounds = max(1, calls // len(resources))

    def loop() -> None:
        for _ in range(rounds):
            for scope in resources:
                get_token(scope)

    value = per_call(loop, rounds * len(resources))
    credential.close()
    return value


def measure_provider(kind: str, calls: int) -> float:
    """Per call of get_bearer_token_provider's callable, the token cached (each library's own provider)."""
    credential = sync_credential(kind)
    if kind == OURS:
        from msi_credential import get_bearer_token_provider
    else:
        from azure.identity import get_bearer_token_provider
    provider = get_bearer_token_provider(credential, SCOPE)
    provider()

    def loop() -> None:
        for _ in range(calls):
            provider()

    value = per_call(loop, calls)
    credential.close()
    return value


def measure_provider_async(kind: str, calls: int) -> float:
    """Per await of the async token provider, the token cached."""
    if kind == OURS:
        from msi_credential.aio import get_bearer_token_provider
    else:
        from azure.identity.aio import get_bearer_token_provider

    async def run() -> float:
        credential = async_credential(kind)
        provider = get_bearer_token_provider(credential, SCOPE)
        await provider()
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                await provider()
            best = min(best, (time.perf_counter() - started) / calls)
        await credential.close()
        return best

    return asyncio.run(run())


def measure_cached_async(kind: str, calls: int) -> float:
    async def run() -> float:
        credential = async_credential(kind)
        await credential.get_token(SCOPE)
        get_token = credential.get_token

        async def loop() -> None:
            for _ in range(calls):
                await get_token(SCOPE)

        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            await loop()
            best = min(best, (time.perf_counter() - started) / calls)
        await credential.close()
        return best

    return asyncio.run(run())


def measure_threads(kind: str, emulator: Emulator, threads: int) -> int:
    emulator.clear()
    credential = sync_credential(kind)
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            credential.get_token(SCOPE)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    credential.close()
    if errors:
        raise errors[0]
    return emulator.tokens_issued


def measure_tasks(kind: str, emulator: Emulator, tasks: int) -> tuple[int, float]:
    emulator.clear()

    async def run() -> float:
        credential = async_credential(kind)
        started = time.perf_counter()
        await asyncio.gather(*(credential.get_token(SCOPE) for _ in range(tasks)))
        elapsed = time.perf_counter() - started
        await credential.close()
        return elapsed

    elapsed = asyncio.run(run())
    return emulator.tokens_issued, elapsed


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.2f} us"


def missing_requirements() -> list[str]:
    """The distributions this benchmark needs that cannot be imported here."""
    missing = []
    for module, distribution in (
        ("msi_credential.emulator", "msi-credential"),
        ("azure.identity", "azure-identity"),
        ("aiohttp", "aiohttp"),
    ):
        try:
            __import__(module)
        except ImportError:
            missing.append(distribution)
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    missing = missing_requirements()
    if missing:
        print(
            f"benchmarks/compare.py needs {', '.join(missing)}, which are not installed in {sys.executable}.\n"
            'Install the dev extra from the checkout: pip install -e ".[dev]"\n'
            f"(or just what it needs: pip install -e . {' '.join(m for m in missing if m != 'msi-credential')})",
            file=sys.stderr,
        )
        return 2
    import_runs, cold_runs, calls = (3, 5, 20_000) if args.quick else (7, 15, 200_000)

    rows: list[tuple[str, str, str, str]] = []

    def add(metric: str, ours: float, theirs: float, formatter: Callable[[float], str]) -> None:
        ratio = f"{ours / theirs:.3f}" if theirs else "n/a"
        rows.append((metric, formatter(ours), formatter(theirs), ratio))

    ours_import, ours_memory = measure_import(OURS, import_runs)
    theirs_import, theirs_memory = measure_import(THEIRS, import_runs)
    add("import time (fresh interpreter)", ours_import, theirs_import, fmt_time)
    add("peak RSS after import", ours_memory, theirs_memory, lambda v: f"{v:.1f} MiB")
    ours_built, ours_built_memory = measure_import(OURS, import_runs, CONSTRUCTS)
    theirs_built, theirs_built_memory = measure_import(THEIRS, import_runs, CONSTRUCTS)
    add("import + first credential built", ours_built, theirs_built, fmt_time)
    add("peak RSS after first credential", ours_built_memory, theirs_built_memory, lambda v: f"{v:.1f} MiB")

    with Emulator("app_service", token_lifetime=24 * 3600) as emulator, environment(emulator.environ):
        add(
            "cold get_token",
            measure_cold(OURS, emulator, cold_runs),
            measure_cold(THEIRS, emulator, cold_runs),
            fmt_time,
        )
        add(
            "cached get_token, 1 resource",
            measure_cached(OURS, [SCOPE], calls),
            measure_cached(THEIRS, [SCOPE], calls),
            fmt_time,
        )
        add(
            "token provider call (cached)",
            measure_provider(OURS, calls),
            measure_provider(THEIRS, calls),
            fmt_time,
        )
        add(
            "cached get_token, 50 resources",
            measure_cached(OURS, RESOURCES, calls),
            measure_cached(THEIRS, RESOURCES, calls),
            fmt_time,
        )
        add(
            "cached async get_token",
            measure_cached_async(OURS, calls // 4),
            measure_cached_async(THEIRS, calls // 4),
            fmt_time,
        )
        add(
            "async token provider call (cached)",
            measure_provider_async(OURS, calls // 4),
            measure_provider_async(THEIRS, calls // 4),
            fmt_time,
        )
        add(
            "requests, 64 threads cold",
            measure_threads(OURS, emulator, 64),
            measure_threads(THEIRS, emulator, 64),
            lambda v: f"{int(v)}",
        )
        ours_requests, ours_wall = measure_tasks(OURS, emulator, 500)
        theirs_requests, theirs_wall = measure_tasks(THEIRS, emulator, 500)
        add("requests, 500 tasks cold", ours_requests, theirs_requests, lambda v: f"{int(v)}")
        add("wall time, 500 tasks cold", ours_wall, theirs_wall, fmt_time)

    widths = [max(len(row[i]) for row in [("metric", OURS, THEIRS, "ratio"), *rows]) for i in range(4)]
    header = ("metric", OURS, THEIRS, "ratio (ours/theirs)")
    print(f"{header[0]:<{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]:>{widths[2]}}  {header[3]}")
    print("-" * (sum(widths) + 26))
    for metric, ours, theirs, ratio in rows:
        print(f"{metric:<{widths[0]}}  {ours:>{widths[1]}}  {theirs:>{widths[2]}}  {ratio:>{widths[3]}}")
    print(f"\nPython {sys.version.split()[0]} on {sys.platform}; emulator on loopback; medians / best of 5.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
