"""The AKS token proxy's side of the wire (workload identity with identity bindings): Entra's token endpoint below
a path of its own, over https with a CA made for the run and a certificate for a name other than its address, so a
client must send and verify that name (AZURE_KUBERNETES_SNI_NAME)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Optional

from .._tls import make_named_certificate
from .._wire import RecordedRequest, Reply
from .workload_identity import WorkloadIdentity, entra_error

# The name the proxy's certificate is for; '.invalid' never resolves.
TOKEN_PROXY_SERVER_NAME = "token-proxy.msi-emulator.invalid"
TOKEN_PROXY_PATH = "/aks-token-proxy"


class TokenProxy(WorkloadIdentity):
    expects = dataclasses.replace(WorkloadIdentity.expects, scheme="https")
    server_name = TOKEN_PROXY_SERVER_NAME

    def token_path(self) -> str:
        return self.emulator.proxy_path + super().token_path()

    def issue_certificate(self, directory: str) -> tuple[str, str, str]:
        return make_named_certificate(
            directory,
            TOKEN_PROXY_SERVER_NAME,
            who="the AKS token proxy emulator",
            organization="msi-credential emulator AKS token proxy (this run only)",
        )

    def environ(self, values: Mapping[str, Optional[str]]) -> dict[str, str]:
        environ = super().environ(values)
        ca_file = self.emulator.ca_file
        if ca_file is not None:
            # Without enable_azure_proxy a client goes to AZURE_AUTHORITY_HOST: this same loopback server, whose
            # certificate names neither its address nor a public CA, so the handshake fails and nothing is sent.
            environ.update(
                AZURE_KUBERNETES_TOKEN_PROXY=f"{values['base']}{self.emulator.proxy_path or '/'}",
                AZURE_KUBERNETES_CA_FILE=ca_file,
                AZURE_KUBERNETES_SNI_NAME=TOKEN_PROXY_SERVER_NAME,
            )
        return environ

    def answer(self, request: RecordedRequest) -> Reply:
        # the proxy forwards what is under its path to Entra, the path below it unchanged
        proxy_path = self.emulator.proxy_path
        if not request.path.startswith(proxy_path + "/"):
            return entra_error(
                404, "not_found", None, f"No endpoint at {request.path}.", now=self.emulator._clock()
            )
        return super().answer(dataclasses.replace(request, path=request.path[len(proxy_path) :]))
