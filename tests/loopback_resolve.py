"""Send requests for a public host name to a loopback port, as ``curl --resolve`` does: no DNS, TLS unchanged.

Key Vault's client checks that the challenge's resource (``https://vault.azure.net``) matches the vault's host
(``<name>.vault.azure.net``), so a stand-in at ``https://127.0.0.1:<port>`` fails that check unless it is turned off.
These transports keep the real vault URL and the check: the connection goes to 127.0.0.1, TLS is verified against
the vault's host name (the stand-in's certificate names it), and the name is never looked up.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any, Optional
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter


class LoopbackResolvingAdapter(HTTPAdapter):
    """A requests adapter: each host in ``hosts`` goes to 127.0.0.1 at its port; any other host is refused."""

    def __init__(self, hosts: Mapping[str, int]) -> None:
        self._hosts = {name.lower(): port for name, port in hosts.items()}
        super().__init__(max_retries=0)

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Optional[Mapping[str, str]] = None,
        cert: Any = None,
    ) -> Any:
        host = (urlsplit(request.url or "").hostname or "").lower()
        port = self._hosts.get(host)
        if port is None:
            raise requests.ConnectionError(f"{host!r} is not mapped to loopback in this test")
        _, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs["server_hostname"] = host  # SNI and certificate check for the public name
        pool_kwargs["assert_hostname"] = host
        return self.poolmanager.connection_from_host(
            host="127.0.0.1", port=port, scheme="https", pool_kwargs=pool_kwargs
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        request.headers.setdefault("Host", urlsplit(request.url or "").netloc)
        return super().send(request, *args, **kwargs)


def resolving_session(hosts: Mapping[str, int]) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = LoopbackResolvingAdapter(hosts)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def aiohttp_resolving_session(hosts: Mapping[str, int]) -> Any:
    """An aiohttp ClientSession whose resolver answers 127.0.0.1:<port> for each host, and refuses others."""
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult

    mapping = {name.lower(): port for name, port in hosts.items()}

    class Resolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            mapped = mapping.get(host.lower())
            if mapped is None:
                raise OSError(f"{host!r} is not mapped to loopback in this test")
            return [
                ResolveResult(
                    hostname=host, host="127.0.0.1", port=mapped, family=socket.AF_INET, proto=0, flags=0
                )
            ]

        async def close(self) -> None:
            pass

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=Resolver()), trust_env=False)
