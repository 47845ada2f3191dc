"""Hand-off for test_setup.py of tests/faces (``_setup.py``): the enable_azure_proxy argument. From
test_token_proxy.py (the sources helper, issue 27)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_enable_azure_proxy_must_be_a_bool_at_construction(face: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="enable_azure_proxy"):
        face.credential(enable_azure_proxy=value)
