"""A process for the machine cache tests and benchmark: says "ready", waits for "go" on stdin, then gets a token
for each resource named on the command line and prints one JSON line (token hashes, never tokens)."""

from __future__ import annotations

import hashlib
import json
import sys
import time


def main() -> None:
    face = sys.argv[1]
    resources = sys.argv[2:]
    if face == "azure-identity":
        from azure.identity import ManagedIdentityCredential as Foreign

        credential: object = Foreign()
    else:
        from msi_credential import ManagedIdentityCredential

        credential = ManagedIdentityCredential()
    get_token = credential.get_token  # type: ignore[attr-defined]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    began = time.perf_counter()
    seen = []
    for resource in resources:
        token = get_token(resource + "/.default").token
        seen.append(hashlib.sha256(token.encode()).hexdigest())
    print(json.dumps({"tokens": seen, "seconds": time.perf_counter() - began}), flush=True)


if __name__ == "__main__":
    main()
