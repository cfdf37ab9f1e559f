"""Kernels on a Jupyter kernel gateway: where the gateway is and what its REST API does.

Owns ``GatewayEndpoint`` (a gateway's URL, token and headers, and the REST and websocket
addresses built from them), ``GatewayREST`` (the kernel calls of a gateway's REST API:
start, look up, interrupt, restart, delete) and ``GatewayKernel``, a kernel this process
started on a gateway, with the surface of a kernel manager that ``KernelExecutor`` uses
(``is_alive``, ``interrupt_kernel``, ``restart_kernel``, ``shutdown_kernel``). Works with
Jupyter Kernel Gateway and Enterprise Gateway (the same ``/api/kernels`` API).

Must not know about the agent, pools or task folders; the websocket client of a gateway
kernel is ``gateway_channels.GatewayChannelsClient``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from . import ExecutionFailure

ALIVE_FOR_SECONDS = 2.0
"""A kernel the gateway reported alive is not asked again for this long (quiet executions
check liveness every few hundred milliseconds; one request per kernel per interval is enough)."""


class GatewayError(ExecutionFailure):
    """The kernel gateway could not be reached, refused the request, or failed it."""


@dataclass(frozen=True)
class GatewayEndpoint:
    """A kernel gateway: ``http(s)://host:port[/base]`` and how to authenticate to it.

    ``token`` goes in an ``Authorization: token …`` header (Kernel Gateway's and Enterprise
    Gateway's scheme); ``headers`` are sent as given (a server's ``GatewayClient`` headers,
    cookies included). The websocket URL is the HTTP URL with a ``ws(s)`` scheme unless
    ``ws_url`` says otherwise.
    """

    url: str
    token: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    ws_url: str = ""
    kernels_endpoint: str = "/api/kernels"
    validate_cert: bool = True
    ssl_options: Mapping[str, Any] = field(default_factory=dict)
    connect_timeout: float = 40.0
    request_timeout: float = 60.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise GatewayError(f"the gateway URL must look like http://host:port, not {self.url!r}")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if not self.ws_url:
            object.__setattr__(self, "ws_url", "ws" + self.url[len("http") :])
        object.__setattr__(self, "ws_url", self.ws_url.rstrip("/"))

    @classmethod
    def from_gateway_client(cls, gateway: Any) -> GatewayEndpoint:
        """The gateway a Jupyter server was started with (``--gateway-url``): its
        ``GatewayClient`` settings, auth header and cookies as the server sends them."""
        args = gateway.load_connection_args()
        ssl_options = {
            key: value
            for key, value in (
                ("ca_certs", gateway.ca_certs),
                ("certfile", gateway.client_cert),
                ("keyfile", gateway.client_key),
            )
            if value
        }
        if not gateway.validate_cert:
            ssl_options["cert_reqs"] = 0  # ssl.CERT_NONE, as the server's own requests
        return cls(
            url=gateway.url,
            headers=dict(args.get("headers") or {}),
            ws_url=gateway.ws_url or "",
            kernels_endpoint=gateway.kernels_endpoint,
            validate_cert=bool(gateway.validate_cert),
            ssl_options=ssl_options,
            connect_timeout=float(gateway.connect_timeout),
            request_timeout=float(gateway.request_timeout),
        )

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.token and not any(name.lower() == "authorization" for name in headers):
            headers["Authorization"] = f"token {self.token}"
        return headers

    def kernels_url(self, *parts: str) -> str:
        return "/".join([self.url + "/" + self.kernels_endpoint.strip("/"), *(quote(p) for p in parts)])

    def channels_url(self, kernel_id: str, session_id: str) -> str:
        base = self.ws_url + "/" + self.kernels_endpoint.strip("/")
        return f"{base}/{quote(kernel_id)}/channels?session_id={quote(session_id)}"

    def __repr__(self) -> str:  # never the token or the headers (they hold credentials)
        return f"GatewayEndpoint({self.url!r})"


class GatewayREST:
    """The kernel calls of one gateway's REST API.

    Each call opens its own HTTP connection: calls are rare (start, interrupt, restart,
    delete, a liveness check every few seconds), and nothing is left to close.
    """

    def __init__(self, endpoint: GatewayEndpoint) -> None:
        self.endpoint = endpoint

    async def start_kernel(self, kernel_name: str, env: Mapping[str, str] | None = None) -> str:
        """Start a kernel; returns its id. The gateway passes on ``KERNEL_*`` variables
        (and those it allows); it never receives this process's environment."""
        body = {"name": kernel_name, "env": dict(env or {})}
        model = await self._request("POST", self.endpoint.kernels_url(), json=body)
        return str(model["id"])

    async def kernel(self, kernel_id: str) -> dict[str, Any] | None:
        """The kernel's model, or None when the gateway does not know it (shut down)."""
        try:
            return await self._request("GET", self.endpoint.kernels_url(kernel_id))
        except _NotFound:
            return None

    async def interrupt(self, kernel_id: str) -> None:
        await self._request("POST", self.endpoint.kernels_url(kernel_id, "interrupt"), json={})

    async def restart(self, kernel_id: str) -> None:
        await self._request("POST", self.endpoint.kernels_url(kernel_id, "restart"), json={})

    async def delete(self, kernel_id: str) -> None:
        try:
            await self._request("DELETE", self.endpoint.kernels_url(kernel_id))
        except _NotFound:
            pass  # already gone

    async def _request(self, method: str, url: str, **options: Any) -> Any:
        where = self.endpoint.url
        endpoint = self.endpoint
        try:
            async with httpx.AsyncClient(
                headers=endpoint.request_headers(),
                timeout=httpx.Timeout(endpoint.request_timeout, connect=endpoint.connect_timeout),
                verify=endpoint.validate_cert,
            ) as http:
                response = await http.request(method, url, **options)
        except httpx.HTTPError as exc:
            raise GatewayError(f"cannot reach the kernel gateway at {where}: {exc}") from None
        if response.status_code == 404:
            raise _NotFound(url)
        if response.status_code == 401:
            raise GatewayError(f"the kernel gateway at {where} refused the token (401 Unauthorized)")
        if response.status_code >= 400:
            raise GatewayError(
                f"the kernel gateway at {where} answered {response.status_code}: {_reason(response)}"
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


class _NotFound(GatewayError):
    pass


def _reason(response: httpx.Response) -> str:
    """The gateway's own explanation: its JSON ``message``/``reason``, else the status text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        return response.reason_phrase
    if isinstance(body, Mapping):
        return str(body.get("message") or body.get("reason") or response.reason_phrase)
    return response.reason_phrase


class GatewayKernel:
    """A kernel this process started on a gateway, driven as ``KernelExecutor`` drives a
    kernel manager: liveness, interrupt, restart and shutdown are REST calls."""

    provisioner = None  # no local process: restarts show as status messages, not pids

    def __init__(self, rest: GatewayREST, kernel_id: str) -> None:
        self.rest = rest
        self.kernel_id = kernel_id
        self._alive_until = 0.0
        self._shut_down = False

    @classmethod
    async def start(
        cls, endpoint: GatewayEndpoint, kernel_name: str = "python3", env: Mapping[str, str] | None = None
    ) -> GatewayKernel:
        rest = GatewayREST(endpoint)
        return cls(rest, await rest.start_kernel(kernel_name, env))

    async def is_alive(self) -> bool:
        if self._shut_down:
            return False
        if time.monotonic() < self._alive_until:
            return True
        try:
            model = await self.rest.kernel(self.kernel_id)
        except GatewayError:
            return False  # unreachable now; the executor decides after its grace period
        alive = model is not None and model.get("execution_state") != "dead"
        if alive:
            self._alive_until = time.monotonic() + ALIVE_FOR_SECONDS
        return alive

    async def interrupt_kernel(self) -> None:
        await self.rest.interrupt(self.kernel_id)

    async def restart_kernel(self, now: bool = True) -> None:
        self._alive_until = 0.0
        await self.rest.restart(self.kernel_id)

    async def shutdown_kernel(self, now: bool = True) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        await self.rest.delete(self.kernel_id)
