"""Azure Arc-enabled servers: the himds agent, with its 401 challenge and key file (docs/protocols.md section 5).

The first request carries no secret. The agent answers 401 with ``WWW-Authenticate: Basic realm=<key file>``; the
key file must be directly in the agent's key directory and named ``*.key``; the engine asks its driver to read it
(``ReadKeyFile``) and sends the request again with ``Authorization: Basic <content>``. A second 401 is a refusal.
A user-assigned identity's answer must echo the requested selector: old agents ignore it and return the system
identity's token, which is discarded.
"""

from __future__ import annotations

import ntpath
import posixpath
import re
from collections.abc import Generator, Mapping
from typing import Any, Union

from ..._errors import ManagedIdentityError, failed
from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import (
    Effect,
    EffectResult,
    KeyFileResult,
    ReadKeyFile,
    Request,
    Response,
    Send,
    TransportFailure,
)
from ..identity import Identity, SelectorKind
from ..record import replace
from ._spec import RequestParts, SourceSpec, get_request, query_params

SOURCE = ManagedIdentitySource.AZURE_ARC
LABEL = "Azure Arc managed identity endpoint"
API_VERSION = "2020-06-01"
SELECTORS: dict[SelectorKind, str] = {
    "client_id": "client_id",
    "object_id": "object_id",
    "resource_id": "msi_res_id",
}
# The answer must echo the requested selector under one of these names (old agents return the system identity).
ECHO_NAMES: dict[SelectorKind, tuple[str, ...]] = {
    "client_id": ("client_id",),
    "object_id": ("object_id",),
    "resource_id": ("msi_res_id", "mi_res_id"),
}
_PREFIX = "basic realm="
# A key file path is far shorter (PATH_MAX is 4096 on Linux); a longer challenge is refused unread.
MAX_CHALLENGE_CHARS = 8192
_WINDOWS_SEPARATORS = re.compile(r"[\\/]")


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    """The first, secret-less request; ``answer_challenge`` adds ``Authorization`` after the challenge."""
    params = query_params(SELECTORS, identity, API_VERSION, parts.resource)
    return get_request(config, parts, params, {"Metadata": "true"})


def _refuse(code: str, why: str) -> ManagedIdentityError:
    return failed(f"{LABEL}: {why}", error_code=code, status_code=401, source=SOURCE)


def key_file_named(config: SourceConfig, header: str | None) -> str:
    """The key file a challenge header names, checked (section 5, steps 3 to 6); raises the refusal otherwise."""
    if header is None or not header.strip():
        raise _refuse("arc_challenge_missing", "401 without a WWW-Authenticate challenge")
    if len(header) > MAX_CHALLENGE_CHARS:
        raise _refuse("arc_challenge_invalid", f"the challenge is over {MAX_CHALLENGE_CHARS} characters")
    if not header.strip()[: len(_PREFIX)].lower() == _PREFIX:
        raise _refuse("arc_challenge_invalid", "the challenge is not 'Basic realm=<key file>'")
    path = header.strip()[len(_PREFIX) :].strip().strip('"').strip()
    if not path:
        raise _refuse("arc_challenge_invalid", "the challenge names no key file")
    if config.platform not in ("linux", "windows"):
        raise _refuse(
            "arc_platform_unsupported",
            f"Azure Arc managed identity is supported on Linux and Windows, not {config.platform}",
        )
    if not valid_key_path(path, config.arc_key_directory, config.platform == "windows"):
        raise _refuse(
            "arc_invalid_key_file",
            f"the challenge names a key file outside {config.arc_key_directory} or without the .key extension",
        )
    return path


def answer_challenge(
    config: SourceConfig, request: Request, response: Response, secrets: list[str]
) -> Generator[Effect, EffectResult, Union[Response, TransportFailure]]:
    """docs/protocols.md section 5, steps 3 to 10: read the named key file, send again with its content."""
    path = key_file_named(config, response.headers.get("www-authenticate"))
    read = yield ReadKeyFile(path)
    assert isinstance(read, KeyFileResult)
    if read.error is not None or not read.content:
        code, why = read.error or ("arc_invalid_key_file", "the key file is empty")
        raise _refuse(code, why)
    secrets.append(read.content)
    headers = dict(request.headers)
    headers["Authorization"] = f"Basic {read.content}"
    outcome = yield Send(replace(request, headers=headers))
    assert isinstance(outcome, (Response, TransportFailure))
    if isinstance(outcome, Response) and outcome.status == 401:
        raise _refuse("arc_challenge_rejected", "the agent refused the key file's secret")
    return outcome


def confirm(identity: Identity, body: Mapping[str, Any]) -> None:
    """Old agents ignore the requested identity and return the system one: the answer must name it."""
    if not identity.user_assigned:
        return
    wanted = (identity.value or "").lower()
    for name in ECHO_NAMES[identity.kind]:
        echoed = body.get(name)
        if isinstance(echoed, str) and echoed.strip().lower() == wanted:
            return
    raise failed(
        f"{LABEL} did not confirm the requested {identity.describe()}; "
        "the token was discarded (the agent may not support user-assigned identities)",
        error_code="arc_identity_not_confirmed",
        status_code=200,
        source=SOURCE,
    )


def valid_key_path(path: str, directory: str, windows: bool) -> bool:
    """An absolute path without '..', directly in the key directory, named '*.key'."""
    if windows:
        if not ntpath.isabs(path) or ".." in _WINDOWS_SEPARATORS.split(path):
            return False
        parent, name = ntpath.split(path)
        return (
            parent.rstrip("\\/").lower() == directory.rstrip("\\/").lower()
            and name.lower().endswith(".key")
            and len(name) > 4
        )
    if not posixpath.isabs(path) or ".." in path.split("/"):
        return False
    parent, name = posixpath.split(path)
    return parent == directory.rstrip("/") and name.endswith(".key") and len(name) > 4


SPEC = SourceSpec(
    SOURCE,
    SELECTORS,
    build,
    label=LABEL,
    challenge=answer_challenge,
    confirm=confirm,
)
