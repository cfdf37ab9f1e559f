"""A new client of a kernel that a kernel manager runs, local or on a gateway.

Owns the one choice of transport for kernels someone else manages (a Jupyter server's
kernels): a kernel the server runs itself is reached over ZMQ through the manager's own
client factory; a kernel of a server started with ``--gateway-url`` (jupyter_server's
``GatewayKernelManager``) through the gateway's websocket, with the server's gateway
settings (URL, auth headers, certificates). Either way the client has a session of its
own: it never shares the session of the server's clients or the browser's.

Must not start the client's channels or wait for the kernel (``KernelExecutor.connect``
does).
"""

from __future__ import annotations

from typing import Any

from jupyter_client import AsyncKernelClient
from jupyter_client.session import Session


def _own_session(manager: Any) -> Session:
    """A session signing with the kernel's key, under a session id of its own."""
    shared = manager.session
    return Session(key=shared.key, signature_scheme=shared.signature_scheme, username=shared.username)


def client_for_manager(manager: Any) -> AsyncKernelClient:
    """An unstarted async client of the kernel ``manager`` runs."""
    from jupyter_server.gateway.managers import GatewayKernelManager

    if isinstance(manager, GatewayKernelManager):
        from jupyter_server.gateway.gateway_client import GatewayClient

        from .gateway import GatewayEndpoint, GatewayREST
        from .gateway_channels import GatewayChannelsClient

        endpoint = GatewayEndpoint.from_gateway_client(GatewayClient.instance())
        return GatewayChannelsClient(
            manager.kernel_id, endpoint=endpoint, rest=GatewayREST(endpoint), session=_own_session(manager)
        )
    return manager.client(session=_own_session(manager))
