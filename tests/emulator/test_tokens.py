"""msi_credential/emulator/_tokens.py: the compact HS256 JWTs the emulator mints, checked as strings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from msi_credential.emulator import decode_jwt, mint_jwt


def test_mint_and_decode_jwt() -> None:
    key = b"k" * 32
    token = mint_jwt({"aud": "a", "n": 1}, key)

    header, payload, signature = token.split(".")
    assert "=" not in token
    assert decode_jwt(token) == {"aud": "a", "n": 1}
    expected = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert signature == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "x.bm90IGpzb24.y", "x.WzFd.y"])
def test_decode_jwt_rejects_non_tokens(token: str) -> None:
    with pytest.raises(ValueError):
        decode_jwt(token)
