"""Hand-off from the engine helper (issue 27), to fold into test_workload_identity.py of this folder: workload
identity's own check before any request (``sources/workload_identity.py`` ``check``).

Moved from test_engine_messages_and_edges.py (the tests folder's root, before issue 27).
"""

from __future__ import annotations

from msi_credential._engine.identity import Identity
from msi_credential._engine.sources import workload_identity

from ..test_detection import _workload, run


def test_workload_identity_without_a_client_id_says_how_to_give_one() -> None:
    config = run(_workload())

    assert workload_identity.check(config, Identity("client_id", None)) == (
        "missing_client_id",
        "workload identity needs a client id: pass client_id= or set AZURE_CLIENT_ID",
    )
