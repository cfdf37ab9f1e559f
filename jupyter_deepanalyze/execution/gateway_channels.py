"""The client of a kernel on a gateway: its five channels over the gateway's websocket.

Owns ``GatewayChannelsClient``, jupyter_server's ``GatewayKernelClient`` (the client its
``GatewayKernelManager`` hands out) made fit for an agent that runs long computations:

- the handshake carries the gateway's auth headers (without them a gateway started with
  a token answers 401) and runs off the event loop;
- a quiet kernel is not a dead one: the socket has no read timeout after the handshake
  (the base class's router stops after ``KERNEL_LAUNCH_TIMEOUT`` seconds of silence);
- waiting for a message sleeps until one arrives instead of spinning the event loop;
- each message names its channel, so control requests reach the control channel;
- binary frames (messages with buffers) are decoded instead of ending the router;
- every message is acknowledged at once (``TCP_QUICKACK``): gateways write an execution's
  messages without ``TCP_NODELAY``, and Nagle's algorithm waiting on a delayed ACK added
  about 40 ms to every execution;
- a closed websocket ends every wait with ``DeadKernelError``, and liveness asks the
  gateway (a kernel it no longer knows is dead).

Must not start, restart or stop kernels: ``gateway.GatewayKernel`` or the server's
kernel manager does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from queue import Empty
from threading import Thread
from typing import Any

import websocket
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_server.gateway.managers import ChannelQueue, GatewayKernelClient
from jupyter_server.services.kernels.connection.base import deserialize_binary_message

from . import DeadKernelError
from .gateway import GatewayEndpoint, GatewayError, GatewayKernel, GatewayREST

log = logging.getLogger(__name__)

_CHANNELS = ("shell", "iopub", "stdin", "hb", "control")
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class _ChannelQueue(ChannelQueue):
    """One channel's messages: filled by the router thread, awaited on the event loop."""

    def __init__(self, name: str, connection: websocket.WebSocket, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name, connection, log)
        self._loop = loop
        self._arrived = asyncio.Event()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()

    def finish(self) -> None:
        """The router stopped: no message will come again."""
        self.response_router_finished = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._arrived.set)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    async def _async_get(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._arrived.clear()
            try:
                return self.get(block=False)
            except Empty:
                pass
            if self.response_router_finished:
                raise DeadKernelError("the connection to the kernel on the gateway closed")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise Empty
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def send(self, msg: dict[str, Any]) -> None:
        super().send({**msg, "channel": self.channel_name})

    def is_beating(self) -> bool:
        return not self.response_router_finished


def _ack_now(sock: socket.socket | None) -> None:
    """Acknowledge what arrived without delay (Linux; re-armed after every read)."""
    if sock is not None and _QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass


class GatewayChannelsClient(GatewayKernelClient):
    """A kernel client whose channels are the gateway's websocket for ``kernel_id``.

    ``rest`` (optional) answers liveness: without it a kernel is alive while its websocket
    is open.
    """

    def __init__(
        self, kernel_id: str, *, endpoint: GatewayEndpoint, rest: GatewayREST | None = None, **kwargs: Any
    ) -> None:
        super().__init__(kernel_id=kernel_id, **kwargs)
        self.endpoint = endpoint
        self._liveness = GatewayKernel(rest, kernel_id) if rest is not None else None

    async def start_channels(
        self, shell: bool = True, iopub: bool = True, stdin: bool = True, hb: bool = True, control: bool = True
    ) -> None:
        loop = asyncio.get_running_loop()
        url = self.endpoint.channels_url(self.kernel_id, self.session.session)
        headers = [f"{name}: {value}" for name, value in self.endpoint.request_headers().items()]
        try:
            connection = await asyncio.to_thread(
                websocket.create_connection,
                url,
                header=headers,
                timeout=self.endpoint.connect_timeout,
                enable_multithread=True,
                sslopt=dict(self.endpoint.ssl_options),
            )
        except websocket.WebSocketBadStatusException as exc:
            status = getattr(exc, "status_code", "?")
            detail = "check the gateway token" if status == 401 else "is the kernel still running?"
            raise GatewayError(
                f"the kernel gateway at {self.endpoint.url} refused the kernel's websocket ({status}): {detail}"
            ) from None
        except (websocket.WebSocketException, OSError) as exc:
            raise GatewayError(f"cannot open the kernel's websocket at {self.endpoint.url}: {exc}") from None
        connection.settimeout(None)  # a long computation prints nothing for minutes
        self.channel_socket = connection
        assert self._channel_queues is not None
        for name in _CHANNELS:
            queue = _ChannelQueue(name, connection, loop)
            setattr(self, f"_{name}_channel", queue)
            self._channel_queues[name] = queue
        AsyncKernelClient.start_channels(self, shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control)
        self.response_router = Thread(
            target=self._route_responses, name=f"gateway-kernel-{self.kernel_id[:8]}", daemon=True
        )
        self.response_router.start()

    def _route_responses(self) -> None:
        """Read the websocket until it closes; hand each message to its channel."""
        queues = dict(self._channel_queues or {})
        try:
            while not self._channels_stopped:
                assert self.channel_socket is not None
                raw = self.channel_socket.recv()
                if not raw:
                    break
                _ack_now(self.channel_socket.sock)
                message = deserialize_binary_message(raw) if isinstance(raw, bytes) else json.loads(raw)
                queue = queues.get(message.get("channel", ""))
                if queue is not None:
                    queue.put_nowait(message)
        except websocket.WebSocketConnectionClosedException:
            pass
        except Exception as exc:  # noqa: BLE001 - the connection is over either way
            if not self._channels_stopped:
                log.warning("the websocket of kernel %s failed: %s", self.kernel_id, exc)
        for queue in queues.values():
            queue.finish()

    async def _async_is_alive(self) -> bool:
        queues = self._channel_queues
        if self.channel_socket is None or not queues or queues["shell"].response_router_finished:
            return False
        return True if self._liveness is None else await self._liveness.is_alive()

    is_alive = _async_is_alive  # type: ignore[assignment]
