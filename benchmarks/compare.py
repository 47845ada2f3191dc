"""Side-by-side benchmarks: msi_credential against azure-identity's ManagedIdentityCredential.

Both credentials talk to the same loopback emulator (App Service protocol, which both support). Run:

    python benchmarks/compare.py            # prints a comparison table and the method
    python benchmarks/compare.py --quick    # fewer repetitions

This prints figures; nothing here asserts a timing. Needs the dev extra (azure-identity, aiohttp).

Method (also printed under the table):
- Every figure of a credential is measured in a fresh interpreter of its own (``--worker``), the two sides
  alternating, so neither side pays for or profits from the other's imports, caches or warm-up.
- Requests are those the emulator received (its recorded requests), not tokens the clients returned.
- Cached calls: the timed loop minus the same loop with no call in it (the empty-loop figure is shown), divided by
  the number of calls; best of 5 rounds. ``get_token_info`` is timed as well as ``get_token``: azure-core's bearer
  policy calls ``get_token_info`` on credentials that have it.
- Memory: the resident set the library adds, i.e. RSS after import + a credential + its first token, minus RSS of
  the same fresh interpreter after ``import azure.core.pipeline`` (both libraries build on azure-core).
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
from typing import Any, Callable

OURS = "msi_credential"
THEIRS = "azure-identity"
SIDES = (OURS, THEIRS)
SCOPE = "https://storage.azure.com/.default"
RESOURCES = [f"https://resource{i}.example.com/.default" for i in range(50)]
ROUNDS = 5


# ---------------------------------------------------------------------------------------------- worker side


def rss_kib() -> float:
    """The current resident set size in KiB (Linux /proc), else the peak (other POSIX)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1024
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 if sys.platform == "darwin" else float(peak)


def credential_class(side: str, asynchronous: bool = False) -> Any:
    if side == OURS:
        if asynchronous:
            from msi_credential.aio import ManagedIdentityCredential as AsyncOurs

            return AsyncOurs
        from msi_credential import ManagedIdentityCredential as Ours

        return Ours
    if asynchronous:
        from azure.identity.aio import ManagedIdentityCredential as AsyncTheirs

        return AsyncTheirs
    from azure.identity import ManagedIdentityCredential as Theirs

    return Theirs


def build(side: str, asynchronous: bool = False) -> Any:
    cls = credential_class(side, asynchronous)
    return cls(share_cache=False) if side == OURS else cls()


def best_per_call(loop: Callable[[], None], empty: Callable[[], None], calls: int) -> dict[str, float]:
    """Best of ROUNDS for the loop and for the same loop without the call; per-call figures in seconds."""
    gc.collect()
    timed, bare = float("inf"), float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        empty()
        bare = min(bare, time.perf_counter() - started)
        started = time.perf_counter()
        loop()
        timed = min(timed, time.perf_counter() - started)
    return {"per_call": max(timed - bare, 0.0) / calls, "empty_loop": bare / calls}


def worker_cold(side: str) -> dict[str, float]:
    started = time.perf_counter()
    credential = build(side)
    built = time.perf_counter() - started
    started = time.perf_counter()
    credential.get_token(SCOPE)
    cold = time.perf_counter() - started
    credential.close()
    return {"construct": built, "cold": cold}


def worker_import(side: str) -> dict[str, float]:
    started = time.perf_counter()
    credential_class(side)
    return {"import": time.perf_counter() - started}


def worker_memory(side: str) -> dict[str, float]:
    import azure.core.pipeline  # noqa: F401 - the baseline both libraries share

    gc.collect()
    baseline = rss_kib()
    credential = build(side)
    credential.get_token(SCOPE)
    gc.collect()
    added = rss_kib() - baseline
    for scope in RESOURCES:
        credential.get_token(scope)
    gc.collect()
    added_50 = rss_kib() - baseline
    credential.close()
    return {"added_kib": added, "added_50_kib": added_50}


def worker_cached(side: str, method: str, resources: list[str], calls: int) -> dict[str, float]:
    credential = build(side)
    for scope in resources:
        credential.get_token(scope)
    call = getattr(credential, method)
    rounds = max(1, calls // len(resources))

    def loop() -> None:
        for _ in range(rounds):
            for scope in resources:
                call(scope)

    def empty() -> None:
        for _ in range(rounds):
            for _scope in resources:
                pass

    figures = best_per_call(loop, empty, rounds * len(resources))
    credential.close()
    return figures


def worker_cached_async(side: str, method: str, calls: int) -> dict[str, float]:
    async def run() -> dict[str, float]:
        credential = build(side, asynchronous=True)
        await credential.get_token(SCOPE)
        call = getattr(credential, method)

        async def nothing(scope: str) -> None:
            return None

        async def loop(function: Callable[[str], Any]) -> float:
            started = time.perf_counter()
            for _ in range(calls):
                await function(SCOPE)
            return time.perf_counter() - started

        timed, bare = float("inf"), float("inf")
        for _ in range(ROUNDS):
            bare = min(bare, await loop(nothing))
            timed = min(timed, await loop(call))
        await credential.close()
        # the empty loop here awaits a coroutine that does nothing: what any awaited call costs
        return {"per_call": max(timed - bare, 0.0) / calls, "empty_loop": bare / calls}

    return asyncio.run(run())


def _provider_factory(side: str, asynchronous: bool) -> Any:
    if side == OURS:
        if asynchronous:
            from msi_credential.aio import get_bearer_token_provider as make_async

            return make_async
        from msi_credential import get_bearer_token_provider as make

        return make
    if asynchronous:
        from azure.identity.aio import get_bearer_token_provider as theirs_async

        return theirs_async
    from azure.identity import get_bearer_token_provider as theirs

    return theirs


def worker_provider(side: str, calls: int) -> dict[str, float]:
    """Per call of get_bearer_token_provider's callable, the token cached (each library's own provider)."""
    credential = build(side)
    provider = _provider_factory(side, asynchronous=False)(credential, SCOPE)
    provider()

    def loop() -> None:
        for _ in range(calls):
            provider()

    def empty() -> None:
        for _ in range(calls):
            pass

    figures = best_per_call(loop, empty, calls)
    credential.close()
    return figures


def worker_provider_async(side: str, calls: int) -> dict[str, float]:
    """Per await of the async token provider, the token cached; the empty loop awaits a no-op."""

    async def run() -> dict[str, float]:
        credential = build(side, asynchronous=True)
        provider = _provider_factory(side, asynchronous=True)(credential, SCOPE)
        await provider()

        async def nothing() -> None:
            return None

        async def loop(function: Callable[[], Any]) -> float:
            started = time.perf_counter()
            for _ in range(calls):
                await function()
            return time.perf_counter() - started

        timed, bare = float("inf"), float("inf")
        for _ in range(ROUNDS):
            bare = min(bare, await loop(nothing))
            timed = min(timed, await loop(provider))
        await credential.close()
        return {"per_call": max(timed - bare, 0.0) / calls, "empty_loop": bare / calls}

    return asyncio.run(run())


def worker_threads(side: str, threads: int) -> dict[str, float]:
    credential = build(side)
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            credential.get_token(SCOPE)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    credential.close()
    if errors:
        raise errors[0]
    return {"wall": elapsed}


def worker_tasks(side: str, tasks: int) -> dict[str, float]:
    async def run() -> float:
        credential = build(side, asynchronous=True)
        started = time.perf_counter()
        await asyncio.gather(*(credential.get_token(SCOPE) for _ in range(tasks)))
        elapsed = time.perf_counter() - started
        await credential.close()
        return elapsed

    return {"wall": asyncio.run(run())}


def worker(spec: dict[str, Any]) -> dict[str, float]:
    kind, side = spec["kind"], spec["side"]
    if kind == "import":
        return worker_import(side)
    if kind == "cold":
        return worker_cold(side)
    if kind == "memory":
        return worker_memory(side)
    if kind == "cached":
        resources = RESOURCES if spec["resources"] == 50 else [SCOPE]
        return worker_cached(side, spec["method"], resources, spec["calls"])
    if kind == "cached_async":
        return worker_cached_async(side, spec["method"], spec["calls"])
    if kind == "provider":
        return worker_provider(side, spec["calls"])
    if kind == "provider_async":
        return worker_provider_async(side, spec["calls"])
    if kind == "threads":
        return worker_threads(side, spec["count"])
    if kind == "tasks":
        return worker_tasks(side, spec["count"])
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------- parent side


class Bench:
    """Runs workers in fresh interpreters against one emulator and counts the requests it received."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.environment = {
            name: value
            for name, value in os.environ.items()
            if not name.upper().endswith("_PROXY") and name not in ("MSI_ENDPOINT", "MSI_SECRET")
        }
        self.environment.update(emulator.environ)
        self.environment["NO_PROXY"] = "*"

    def run(self, **spec: Any) -> tuple[dict[str, float], int]:
        """One fresh interpreter: its figures, and the requests the emulator received while it ran."""
        self.emulator.clear()
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
            env=self.environment,
        )
        if result.returncode != 0:
            raise RuntimeError(f"worker {spec} failed:\n{result.stderr}")
        figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
        return figures, self.emulator.requests_received

    def medians(self, runs: int, **spec: Any) -> dict[str, dict[str, float]]:
        """Each figure's median over ``runs`` fresh interpreters per side, the sides alternating."""
        samples: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
        for index in range(runs):
            order = SIDES if index % 2 == 0 else SIDES[::-1]
            for side in order:
                samples[side].append(self.run(side=side, **spec)[0])
        return {
            side: {key: statistics.median(sample[key] for sample in values) for key in values[0]}
            for side, values in samples.items()
        }


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e9:.0f} ns"


def fmt_mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


METHOD = """\
Method: each figure comes from fresh interpreters, one per side and run, the sides alternating ({runs} runs
for import, construction, cold and memory: medians). Cached rows: best of {rounds} rounds of {calls:,} calls,
minus the same loop without the call (the empty-loop row), per call; the async empty loop awaits a coroutine
that does nothing. "requests" are the requests the emulator received. Memory: RSS after import + credential +
first token (and after 50 resources), minus RSS after `import azure.core.pipeline` in the same interpreter.
Emulator: App Service protocol on loopback, 24 h tokens, in the parent process."""


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
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    missing = missing_requirements()
    if missing:
        print(
            f"benchmarks/compare.py needs {', '.join(missing)}, which are not installed in {sys.executable}.\n"
            'Install the dev extra from the checkout: pip install -e ".[dev]"\n'
            f"(or just what it needs: pip install -e . {' '.join(m for m in missing if m != 'msi-credential')})",
            file=sys.stderr,
        )
        return 2
    runs, calls = (3, 20_000) if args.quick else (9, 200_000)

    from msi_credential.emulator import Emulator

    rows: list[tuple[str, str, str, str]] = []

    def add(metric: str, ours: float, theirs: float, formatter: Callable[[float], str]) -> None:
        ratio = f"{ours / theirs:.3f}" if theirs else "n/a"
        rows.append((metric, formatter(ours), formatter(theirs), ratio))

    def pair(figures: dict[str, float]) -> tuple[float, float]:
        return figures[OURS], figures[THEIRS]

    def count(value: float) -> str:
        return f"{int(value)}"

    with Emulator("app_service", token_lifetime=24 * 3600) as emulator:
        bench = Bench(emulator)
        imported = bench.medians(runs, kind="import")
        add("import (fresh interpreter)", imported[OURS]["import"], imported[THEIRS]["import"], fmt_time)
        cold = bench.medians(runs, kind="cold")
        add("construct the credential", cold[OURS]["construct"], cold[THEIRS]["construct"], fmt_time)
        add("cold get_token (fresh interpreter)", cold[OURS]["cold"], cold[THEIRS]["cold"], fmt_time)
        cold_requests = {side: bench.run(kind="cold", side=side)[1] for side in SIDES}
        add("  requests received for it", *pair(cold_requests), count)
        memory = bench.medians(runs, kind="memory")
        add(
            "RSS added: import + credential + token",
            memory[OURS]["added_kib"],
            memory[THEIRS]["added_kib"],
            fmt_mib,
        )
        add(
            "RSS added: ... + 50 resources cached",
            memory[OURS]["added_50_kib"],
            memory[THEIRS]["added_50_kib"],
            fmt_mib,
        )
        empty_rows: list[tuple[str, dict[str, float]]] = []
        for method in ("get_token", "get_token_info"):
            for resources in (1, 50):
                figures = {
                    side: bench.run(kind="cached", side=side, method=method, resources=resources, calls=calls)
                    for side in SIDES
                }
                label = f"cached {method}, {resources} resource{'s' if resources > 1 else ''}"
                add(label, figures[OURS][0]["per_call"], figures[THEIRS][0]["per_call"], fmt_time)
                add("  requests received (warm-up and loop)", figures[OURS][1], figures[THEIRS][1], count)
                empty_rows.append((f"  empty loop, {resources} resource(s)", figures[OURS][0]))
        provider = {side: bench.run(kind="provider", side=side, calls=calls)[0] for side in SIDES}
        add(
            "token provider call (cached)", provider[OURS]["per_call"], provider[THEIRS]["per_call"], fmt_time
        )
        for label, figures_ours in empty_rows[:2]:
            rows.append((label, fmt_time(figures_ours["empty_loop"]), "(same loop)", ""))
        for method in ("get_token", "get_token_info"):
            figures = {
                side: bench.run(kind="cached_async", side=side, method=method, calls=calls // 4)
                for side in SIDES
            }
            add(
                f"cached async {method}",
                figures[OURS][0]["per_call"],
                figures[THEIRS][0]["per_call"],
                fmt_time,
            )
        provider_async = {
            side: bench.run(kind="provider_async", side=side, calls=calls // 4)[0] for side in SIDES
        }
        add(
            "async token provider call (cached)",
            provider_async[OURS]["per_call"],
            provider_async[THEIRS]["per_call"],
            fmt_time,
        )
        rows.append(("  empty async loop (await a no-op)", fmt_time(figures[OURS][0]["empty_loop"]), "", ""))
        threads = {side: bench.run(kind="threads", side=side, count=64) for side in SIDES}
        add("requests received, 64 threads cold", threads[OURS][1], threads[THEIRS][1], count)
        add("wall time, 64 threads cold", threads[OURS][0]["wall"], threads[THEIRS][0]["wall"], fmt_time)
        tasks = {side: bench.run(kind="tasks", side=side, count=500) for side in SIDES}
        add("requests received, 500 tasks cold", tasks[OURS][1], tasks[THEIRS][1], count)
        add("wall time, 500 tasks cold", tasks[OURS][0]["wall"], tasks[THEIRS][0]["wall"], fmt_time)

    header = ("metric", OURS, THEIRS, "ours/theirs")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print(f"{header[0]:<{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]:>{widths[2]}}  {header[3]}")
    print("-" * (sum(widths) + 6))
    for metric, ours, theirs, ratio in rows:
        print(f"{metric:<{widths[0]}}  {ours:>{widths[1]}}  {theirs:>{widths[2]}}  {ratio:>{widths[3]}}")
    print(f"\nPython {sys.version.split()[0]} on {sys.platform}.")
    print(METHOD.format(runs=runs, rounds=ROUNDS, calls=calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
