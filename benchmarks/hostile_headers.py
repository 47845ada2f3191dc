"""Time to read hostile text: WWW-Authenticate challenges (ManagedIdentityAuth), a CA bundle (AKS token proxy) and
an error description to scrub, at sizes up to 64 KiB; next to azure-core's challenge reader for the headers.

    python benchmarks/hostile_headers.py                      # this checkout
    python benchmarks/hostile_headers.py --against main       # also parse_challenges as it is in git ref "main"

``--against REF`` loads msi_credential/_integrations.py from that git ref in a child process per input, stopped
after ``--timeout`` seconds (an old version may take minutes on these inputs). This prints figures; nothing here
asserts a timing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from msi_credential._engine.detection import ca_problem
from msi_credential._engine.response import scrub
from msi_credential._integrations import claims_from_challenge, parse_challenges

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1024, 8 * 1024, 64 * 1024)
SECRET = "secret-header-value-5c1d"


def headers(size: int) -> dict[str, str]:
    """Challenges built to make a backtracking parser slow, each ``size`` characters long."""
    return {
        "spaces then '='": ("Bearer a=b," + " " * size)[: size - 1] + "=",
        "commas": ("Bearer " + ", " * size)[:size],
        "escaped quotes": ('Bearer a="' + '\\"' * size)[:size],
        "bare words": ("Bearer " + "x " * size)[:size],
    }


def timed(function: Callable[[str], object], text: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function(text)
        best = min(best, time.perf_counter() - started)
    return best


def azure_core_reader(header: str) -> object:
    from azure.core.pipeline.policies._utils import get_challenge_parameter

    return get_challenge_parameter({"WWW-Authenticate": header}, "Bearer", "claims")


_CHILD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("old_integrations", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
header = sys.stdin.read()
started = time.perf_counter()
module.parse_challenges(header)
print(time.perf_counter() - started)
"""


def old_parse(source: Path, header: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(source)],
            input=header,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} s"
    except subprocess.CalledProcessError as error:
        return "error: " + (error.stderr.strip().splitlines() or ["?"])[-1]
    return f"{float(done.stdout):.4f} s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", metavar="REF", help="also time parse_challenges from this git ref")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for each old parse (default 60)")
    options = parser.parse_args()

    old_source = None
    if options.against:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{options.against}:msi_credential/_integrations.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        old_source = Path(tempfile.mkdtemp()) / "old_integrations.py"
        old_source.write_text(text, encoding="utf-8")

    columns = ["input", "size", "parse_challenges", "claims_from_challenge", "azure-core"]
    if old_source is not None:
        columns.append(f"parse_challenges at {options.against}")
    print(" | ".join(columns))
    for size in SIZES:
        for name, header in headers(size).items():
            row = [
                name,
                f"{len(header) // 1024} KiB",
                f"{timed(parse_challenges, header):.6f} s",
                f"{timed(claims_from_challenge, header):.6f} s",
                f"{timed(azure_core_reader, header):.6f} s",
            ]
            if old_source is not None:
                row.append(old_parse(old_source, header, options.timeout))
            print(" | ".join(row))

    print()
    print("input | size | time")
    for size in SIZES:
        pem = "-----BEGIN CERTIFICATE-----" + " " * size
        print(f"CA data: BEGIN line then spaces | {size // 1024} KiB | {timed(ca_problem, pem):.6f} s")
    description = "%" + "s" * (1024 * 1024 - 64) + SECRET
    print(
        f"error description to scrub, limit 500 | 1 MiB | {timed(lambda text: scrub(text, [SECRET], 500), description):.6f} s"
    )


if __name__ == "__main__":
    main()
