"""Azure Arc's side of the wire: the agent's 401 challenge naming a key file, answered with ``Authorization: Basic
<key>`` (docs/protocols.md section 5), and the requested selector echoed in the answer."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from msi_credential._engine.detection import IMDS_PATH
from msi_credential._engine.sources import azure_arc as engine
from msi_credential._source import ManagedIdentitySource

from .._wire import EmulatorSetupError, Minted, RecordedRequest, Reply
from ._endpoint import Expects, TokenEndpoint

ARC_KEY_VALIDITY = 300.0  # seconds a challenge key stays usable (each is also single-use)
# Challenge keys outstanding at once: a new challenge beyond it retires the oldest. Each key file is deleted as soon
# as its key is used, expires or is retired, so the key directory holds at most this many of ours, however many
# challenges are asked for and never answered.
MAX_ARC_KEYS = 64
# Where the Azure Connected Machine agent writes its challenge key files, and the only place other clients read them.
ARC_KEY_DIRECTORY = (
    os.path.join(os.environ.get("PROGRAMDATA", r"C:\ProgramData"), "AzureConnectedMachineAgent", "Tokens")
    if os.name == "nt"
    else "/var/opt/azcmagent/tokens"
)
_ARC_DIRECTORY_MODE = 0o770  # the agent's: its own user and the himds group
_ARC_KEY_FILE_MODE = 0o640  # readable by the himds group, whose members may ask for tokens
_ARC_GROUP = "himds"


class AzureArc(TokenEndpoint):
    source = ManagedIdentitySource.AZURE_ARC
    expects = Expects(IMDS_PATH, engine.API_VERSION, engine.SPEC.selectors.items(), metadata=True)
    environment = {"IDENTITY_ENDPOINT": "url", "IMDS_ENDPOINT": "base"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        # key content -> (expiry on the clock, its key file), oldest first
        self._keys: dict[str, tuple[float, str]] = {}
        self._created_dirs: list[str] = []  # made for the key directory: removed at stop when empty

    def prepare(self) -> None:
        self.key_directory = self._prepare_key_directory(self.emulator._arc_key_directory)

    def cleanup(self) -> None:
        with self._lock:
            files = [path for _, path in self._keys.values()]
            self._keys.clear()
        _remove(files)
        self._remove_created_dirs()

    def credential_kwargs(self) -> dict[str, Any]:
        if self.key_directory is None:
            raise RuntimeError("start the emulator first")
        return {"_arc_key_directory": self.key_directory}

    def challenge(self, request: RecordedRequest) -> Reply | None:
        if self._authorized(request):
            return None
        directory = self.key_directory
        if directory is None:
            raise RuntimeError("Azure Arc key directory missing")
        key = secrets.token_hex(32)
        path = os.path.join(directory, f"{uuid.uuid4()}.key")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _ARC_KEY_FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="ascii") as stream:
            _give_to_agent_group(stream.fileno())
            stream.write(key)
        now = self.emulator._clock()
        with self._lock:
            retired = self._retire(now, room=1)
            self._keys[key] = (now + ARC_KEY_VALIDITY, path)
        _remove(retired)
        return self.errors.reply(
            401,
            "challenge",
            "Authorization required: read the key file named in WWW-Authenticate",
            {"WWW-Authenticate": f"Basic realm={path}"},
        )

    def token_body(self, minted: Minted, selectors: Mapping[str, str]) -> dict[str, Any]:
        body = super().token_body(minted, selectors)
        for name in selectors:  # the answer repeats the identity selector that was asked for
            body[name] = getattr(minted.identity, self.expects.wire_selectors[name])
        return body

    def _authorized(self, request: RecordedRequest) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "basic" or not key:
            return False
        now = self.emulator._clock()
        with self._lock:
            retired = self._retire(now)
            used = self._keys.pop(key, None)  # single use
        if used is not None:
            retired.append(used[1])
        _remove(retired)
        return used is not None

    def _retire(self, now: float, room: int = 0) -> list[str]:
        """Forget expired keys, and the oldest while fewer than ``room`` places are left of MAX_ARC_KEYS; returns
        their key files, to remove (outside the lock)."""
        retired = [path for _, (expiry, path) in self._keys.items() if expiry <= now]
        self._keys = {key: entry for key, entry in self._keys.items() if entry[0] > now}
        while self._keys and len(self._keys) > MAX_ARC_KEYS - room:
            retired.append(self._keys.pop(next(iter(self._keys)))[1])
        return retired

    def _prepare_key_directory(self, directory: str | None) -> str:
        if directory is None:
            return self.emulator._temp_dir("msi-emulator-arc-")
        missing: list[str] = []
        parent = directory
        while not os.path.lexists(parent):
            missing.append(parent)
            following = os.path.dirname(parent)
            if following == parent:
                break
            parent = following
        try:
            for path in reversed(missing):
                os.mkdir(path, _ARC_DIRECTORY_MODE if path == directory else 0o755)
                self._created_dirs.append(path)
                if path == directory:
                    os.chmod(path, _ARC_DIRECTORY_MODE)
                    _give_to_agent_group(path)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "no write permission", directory)
        except OSError as error:
            self._remove_created_dirs()
            raise EmulatorSetupError(
                f"cannot write Azure Arc key files in {directory} ({error.strerror or type(error).__name__}). "
                "Azure Arc clients read the challenge key only from that directory, as the Connected Machine agent "
                "writes it: run the emulator with the rights to write there (e.g. with sudo), or create it once "
                f'for your user: sudo install -d -m 0770 -o "$USER" {directory}'
            ) from None
        return directory

    def _remove_created_dirs(self) -> None:
        created, self._created_dirs = self._created_dirs, []
        for path in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only when empty: another program may have put files there since


def _remove(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.remove(path)


def _give_to_agent_group(target: int | str) -> None:
    """Hand a key file or the key directory to the ``himds`` group, as the agent does, where that group exists."""
    try:
        import grp

        gid = grp.getgrnam(_ARC_GROUP).gr_gid
    except (ImportError, KeyError):
        return
    with contextlib.suppress(OSError):
        if isinstance(target, int):
            os.fchown(target, -1, gid)
        else:
            os.chown(target, -1, gid)
