"""msi_credential/_setup.py, the construction both faces share: the argument checks (``timeout`` a positive number,
``enable_azure_proxy`` a bool), detection once at construction, the keywords taken or refused
(check_pipeline_keywords), telling a call from azure-identity's credential chains (called_from_credential_chain), and
pickling: a pickled credential works where it is unpickled (another interpreter too), carries no secret or token and
keeps the AKS token proxy opt-in; one with a caller's transport refuses to be pickled. Both faces through the ``face``
fixture (tests/conftest.py) against the emulator; an unpickled credential also in a child interpreter."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import types
from typing import Any

import pytest

from msi_credential import ManagedIdentityCredential, ManagedIdentitySource
from msi_credential._setup import called_from_credential_chain
from msi_credential.emulator import Emulator, UserAssignedIdentity

from .support import STORAGE

# ------------------------------------------------------------------------------------ arguments and detection


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_id": "a", "object_id": "b"},
        {"client_id": "a", "identity_config": {"client_id": "a"}},
        {"resource_id": "r", "identity_config": {"object_id": "o"}},
        {"client_id": ""},
        {"client_id": 5},
        {"identity_config": "client_id=a"},
        {"connection_timeout": -1},
        {"read_timeout": "fast"},
        {"retry_total": -1},
        {"client_capabilities": "cp1"},
        {"share_cache": "yes"},
    ],
)
def test_bad_constructor_arguments_are_value_errors(face: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        face.credential(**kwargs)


def test_detection_happens_once_at_construction(face: Any, emulator_factory: Any, monkeypatch: Any) -> None:
    emulator = emulator_factory("app_service")
    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)
    credential = face.credential(_environ=None)
    for name in emulator.environ:
        monkeypatch.delenv(name)

    assert credential.source is ManagedIdentitySource.APP_SERVICE
    assert credential.get_token(STORAGE).token


@pytest.mark.parametrize("value", [0, -1, "5", True, float("nan")])
def test_timeout_must_be_a_positive_number(face: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        face.credential(timeout=value)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_enable_azure_proxy_must_be_a_bool_at_construction(face: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="enable_azure_proxy"):
        face.credential(enable_azure_proxy=value)


# --------------------------------------------------------------------------------------------------- keywords


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"polices": []}, "'polices'"),  # a misspelt keyword is not dropped
        ({"tenant_id": "x"}, "'tenant_id'"),
        ({"retry_mode": "fixed"}, "retry_mode="),
        ({"retry_on_status_codes": [500]}, "retry_on_status_codes="),
        ({"permit_redirects": True}, "permit_redirects="),
        ({"redirect_max": 3}, "redirect_max="),
        ({"use_env_settings": True}, "use_env_settings="),
        ({"session": object()}, "session="),
    ],
)
def test_a_keyword_the_credential_would_ignore_is_a_value_error_naming_it(
    face: Any, emulator_factory: Any, kwargs: dict[str, Any], named: str
) -> None:
    emulator = emulator_factory("imds")

    with pytest.raises(ValueError, match=named):
        face.credential(emulator, **kwargs)

    assert emulator.requests == []


def test_keywords_azure_identity_callers_pass_are_taken(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(
        emulator,
        logging_enable=True,
        additionally_allowed_tenants=["*"],
        permit_redirects=False,
        use_env_settings=False,
        user_agent_use_env=False,
        request_id_header_name="x-ms-client-request-id",
    )

    assert credential.get_token(STORAGE).token


# ----------------------------------------------------------------------------- called from a credential chain


def test_a_call_is_in_a_chain_while_azure_identity_marks_it_so(in_credential_chain: None) -> None:
    from azure.identity._internal import utils

    assert called_from_credential_chain()
    reset = utils.within_credential_chain.set(False)  # as ChainedTokenCredential leaves it after its loop
    assert not called_from_credential_chain()
    utils.within_credential_chain.reset(reset)


@pytest.mark.parametrize(
    "module", [None, types.SimpleNamespace(), types.SimpleNamespace(within_credential_chain=True)]
)
def test_without_azure_identity_s_chain_marker_a_call_is_not_in_a_chain(
    monkeypatch: pytest.MonkeyPatch, in_credential_chain: None, module: Any
) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity._internal.utils", module)

    assert not called_from_credential_chain()


def test_telling_a_chain_call_imports_nothing() -> None:
    code = (
        "import sys\n"
        "from msi_credential._setup import called_from_credential_chain\n"
        "print(called_from_credential_chain(), any(name.startswith('azure.identity') for name in sys.modules))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------------------------------- pickling


def _set_environment(monkeypatch: Any, environ: dict[str, str]) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_pickled_credential_works_where_it_is_unpickled_and_carries_no_secret_or_token(
    emulator_factory: Any, monkeypatch: Any, face: str
) -> None:
    import asyncio

    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    emulator = emulator_factory(
        "app_service", identities=[UserAssignedIdentity("client-a", "object-a", "/a")]
    )
    _set_environment(monkeypatch, emulator.environ)
    kind = ManagedIdentityCredential if face == "sync" else AsyncCredential
    credential = kind(client_id="client-a", share_cache=False, retry_total=2)
    if face == "sync":
        token = credential.get_token(STORAGE).token
    else:
        token = asyncio.run(credential.get_token(STORAGE)).token

    data = pickle.dumps(credential)
    copy = pickle.loads(data)

    assert emulator.secret.encode() not in data
    assert token.encode() not in data
    assert b"Lock" not in data and b"socket" not in data
    assert type(copy) is kind
    assert copy.source == credential.source
    if face == "sync":
        assert copy.get_token(STORAGE).token  # its own cache: a request of its own
    else:
        assert asyncio.run(copy.get_token(STORAGE)).token
    assert len(emulator.requests) == 2
    assert emulator.requests[-1].query["client_id"] == "client-a"


def test_a_pickled_credential_gets_a_token_in_a_new_interpreter(
    emulator_factory: Any, monkeypatch: Any
) -> None:
    emulator = emulator_factory("app_service")
    _set_environment(monkeypatch, emulator.environ)
    data = pickle.dumps(ManagedIdentityCredential(retry_total=0))
    environment = {
        name: value
        for name, value in os.environ.items()
        if "proxy" not in name.lower() and name != "PYTHONPATH"
    }
    environment.update(emulator.environ, NO_PROXY="*", PYTHONPATH=os.getcwd())
    program = (
        "import pickle, sys\n"
        "credential = pickle.loads(sys.stdin.buffer.read())\n"
        "token = credential.get_token('https://storage.azure.com/.default')\n"
        "print(credential.source.value, bool(token.token))\n"
    )

    finished = subprocess.run(
        [sys.executable, "-c", program],
        input=data,
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr.decode()
    assert finished.stdout.decode().split() == ["app_service", "True"]
    assert len(emulator.requests) == 1


def test_a_credential_with_a_transport_refuses_to_be_pickled(emulator_factory: Any) -> None:
    from azure.core.pipeline.transport import RequestsTransport

    emulator = emulator_factory("app_service")
    credential = ManagedIdentityCredential(_environ=emulator.environ, transport=RequestsTransport())

    with pytest.raises(TypeError, match="transport"):
        pickle.dumps(credential)


def test_a_pickled_credential_keeps_the_opt_in(proxy: Emulator) -> None:
    credential = ManagedIdentityCredential(enable_azure_proxy=True, share_cache=False)
    copy = pickle.loads(pickle.dumps(credential))
    assert copy._arguments["enable_azure_proxy"] is True
