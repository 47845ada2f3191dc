"""N processes started cold together, each getting tokens for two resources: requests to the endpoint and wall time,
msi_credential with and without machine_cache=True, next to azure-identity.

    python benchmarks/machine_cache.py              # N = 8, 16, 32
    python benchmarks/machine_cache.py --n 4 64

Processes import and build their credential first; the clock runs from "go" to the last process's tokens. The
emulator (App Service protocol) is in this process. This prints figures; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from msi_credential.emulator import Emulator

WORKER = str(Path(__file__).resolve().parent.parent / "tests" / "machine_cache_worker.py")
RESOURCES = ["https://storage.azure.com", "https://vault.azure.net"]


def run(face: str, machine_cache: bool, count: int) -> tuple[int, float]:
    with Emulator("app_service") as emulator, tempfile.TemporaryDirectory() as runtime:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "XDG_RUNTIME_DIR": runtime,
            "MSI_CREDENTIAL_MACHINE_CACHE": "1" if machine_cache else "0",
            "NO_PROXY": "*",
            "no_proxy": "*",
            "PYTHONPATH": os.pathsep.join(sys.path),
            **emulator.environ,
        }
        children = [
            subprocess.Popen(
                [sys.executable, WORKER, face, *RESOURCES],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit(f"a {face} worker failed to start")
        began = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            child.communicate(timeout=300)
            if child.returncode != 0:
                raise SystemExit(f"a {face} worker failed")
        wall = time.perf_counter() - began
        requests = sum(1 for r in emulator.requests if r.path.startswith("/msi/token"))
        return requests, wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()
    rows = []
    for count in args.n:
        for label, face, machine in (
            ("msi_credential", "msi", False),
            ("msi_credential machine_cache=True", "msi", True),
            ("azure-identity", "azure-identity", False),
        ):
            requests, wall = run(face, machine, count)
            rows.append((count, label, requests, wall))
    print(f"{'N':>4}  {'credential':<34} {'token requests':>14}  {'wall time (ms)':>14}")
    for count, label, requests, wall in rows:
        print(f"{count:>4}  {label:<34} {requests:>14}  {wall * 1000:>14.1f}")
    print(
        f"(each process gets {len(RESOURCES)} resources; the emulator answers at once, a real endpoint does not)"
    )


if __name__ == "__main__":
    main()
