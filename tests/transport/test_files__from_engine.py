"""Hand-off from the engine helper (issue 27), to fold into test_files.py of this folder: the Arc key file's size
bound in ``_transport/files.py`` (``read_key_file``). The comment above a test names the one-line change that it
catches.

Moved from test_mutation_guards.py (the tests folder's root, before issue 27).
"""

from __future__ import annotations

from typing import Any

import pytest


# change: the Arc key file is read before its size is checked
@pytest.mark.parametrize("size", [0, 4097, 1 << 20])
def test_arc_key_file_of_a_wrong_size_is_refused_without_being_opened(
    size: int, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msi_credential._transport import files

    path = tmp_path / "agent.key"
    path.write_bytes(b"k" * size)
    opened: list[str] = []
    real_open = files.os.open

    def spy_open(name: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(name))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", spy_open)
    result = files.read_key_file(str(path))

    assert result.error is not None and result.error[0] == "arc_invalid_key_file"
    assert opened == []


def test_arc_key_file_of_the_largest_size_is_read(tmp_path: Any) -> None:
    from msi_credential._transport import files

    path = tmp_path / "agent.key"
    path.write_bytes(b"k" * 4096)

    assert files.read_key_file(str(path)).content == "k" * 4096
