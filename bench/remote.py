"""Client for an openpi policy server (openpi's `scripts/serve_policy.py`).

The wire protocol is openpi's: a WebSocket without compression or size limit; the server
first sends msgpack(metadata), then answers each msgpack(observation) with
msgpack({"actions": ..., "policy_timing": ..., "server_timing": ...}). On a failure it
sends its traceback as a text frame and closes with code 1011. NumPy values travel with
openpi's msgpack extension, reimplemented here because `openpi-client` pins numpy<2.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import msgpack
import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import CloseCode
from websockets.sync.client import ClientConnection, connect

DEFAULT_PORT = 8000  # serve_policy.py's --port default
START_HINT = "start it with `uv run scripts/serve_policy.py ...` in the openpi checkout or pass --server"

# Object arrays would need pickle, void/complex have no portable msgpack form: openpi refuses them too.
_REFUSED_DTYPE_KINDS = frozenset("OVc")
# The first reconnect is immediate (a clean close needs no wait); later ones wait this much longer
# each time, so a restarting server gets a moment.
_BACKOFF_S = 0.2
# Bounds close(): a server stuck in a synchronous infer() never answers the closing handshake.
_CLOSE_TIMEOUT_S = 1.0


class RemoteUnavailable(Exception):
    """The policy server cannot be reached, or stopped answering in time."""


class PolicyServerError(Exception):
    """The policy server failed while handling a request; the message carries its traceback."""


class _ConnectFailed(RemoteUnavailable):
    """Opening a connection failed: worth retrying after a drop, unlike a request timeout."""


def _encode_numpy(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in _REFUSED_DTYPE_KINDS:
        raise ValueError(f"cannot send dtype {obj.dtype} to a policy server (object, void and complex are refused)")
    if isinstance(obj, np.ndarray):
        # tobytes() writes C order whatever the layout, matching the shape sent alongside.
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj  # msgpack then raises TypeError naming the unsupported type


def _decode_numpy(obj: dict[Any, Any]) -> Any:
    if b"__ndarray__" in obj:
        # Copy: a view of the message bytes would be read-only and surprise in-place edits.
        return np.frombuffer(obj[b"data"], dtype=np.dtype(obj[b"dtype"])).reshape(obj[b"shape"]).copy()
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def pack(obj: Any) -> bytes:
    """msgpack with openpi's NumPy extension.

    As in openpi, np.float64, np.str_ and np.bytes_ scalars subclass Python types, so msgpack
    writes them natively and they come back as float, str and bytes.
    """
    data: bytes = msgpack.packb(obj, default=_encode_numpy)  # msgpack ships no type hints
    return data


def unpack(data: bytes) -> Any:
    """Inverse of `pack`; also reads what openpi's server and client send."""
    return msgpack.unpackb(data, object_hook=_decode_numpy)


def _normalize_url(url: str) -> str:
    """Accepts `host`, `host:port` or a ws(s):// URL; a bare ws:// host gets openpi's port."""
    full = url if "://" in url else f"ws://{url}"
    parts = urlsplit(full)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"policy server address {url!r} is not of the form ws://host:port")
    if parts.port is None and parts.scheme == "ws":
        full = parts._replace(netloc=f"{parts.netloc}:{DEFAULT_PORT}").geturl()
    return full


class PolicyClient:
    """One connection to an openpi policy server, serving one request at a time.

    Inference is a pure function of the observation, so a request cut off by a dropped
    connection is simply sent again on a fresh one.
    """

    def __init__(
        self,
        url: str,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 120.0,
        retries: int = 2,
    ) -> None:
        self.url = _normalize_url(url)
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._retries = retries
        self._conn: ClientConnection | None = None
        self._metadata: dict[str, Any] = {}

    @property
    def metadata(self) -> dict[str, Any]:
        """What the server announced on connecting (action horizon, robot type, ...)."""
        self.connect()
        return self._metadata

    def connect(self) -> None:
        """Opens the connection and reads the metadata frame, unless already connected."""
        if self._conn is not None:
            return
        try:
            conn = connect(
                self.url,
                compression=None,
                max_size=None,
                open_timeout=self._connect_timeout_s,
                # The server runs infer() on its event loop, so it cannot answer pings during a slow
                # (first, compiling) inference; the request timeout bounds waiting instead.
                ping_interval=None,
                close_timeout=_CLOSE_TIMEOUT_S,
                # A policy server sits on the lab network: an HTTP(S)_PROXY meant for the internet must not apply.
                proxy=None,
                # Keep the connection open across calls instead of inside a `with` block.
                legacy=True,
            )
        except TimeoutError as exc:
            raise _ConnectFailed(
                f"policy server at {self.url} did not accept a connection within the connect timeout "
                f"of {self._connect_timeout_s:g} s: check the address, or {START_HINT}"
            ) from exc
        except InvalidHandshake as exc:
            raise _ConnectFailed(
                f"{self.url} did not answer as a WebSocket policy server ({exc}): "
                "check the port, or pass --server with the right address"
            ) from exc
        except OSError as exc:
            raise _ConnectFailed(f"no policy server at {self.url} ({exc}): {START_HINT}") from exc
        self._conn = conn
        try:
            self._metadata = self._receive(self._connect_timeout_s, "connect timeout")
        except ConnectionClosed as exc:
            raise _ConnectFailed(
                f"policy server at {self.url} closed the connection before sending its metadata ({exc})"
            ) from exc

    def infer(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """Sends one observation and returns the decoded reply ("actions" [H, D], timings)."""
        payload = pack(obs)
        self.connect()  # a server that was never there fails at once, without retries
        failures = 0
        while True:
            try:
                self.connect()
                assert self._conn is not None
                self._conn.send(payload)
                return self._receive(self._request_timeout_s, "request timeout")
            except (ConnectionClosed, _ConnectFailed) as exc:
                self.close()
                failures += 1
                if failures > self._retries:
                    raise RemoteUnavailable(
                        f"lost the connection to the policy server at {self.url} and {self._retries} "
                        f"reconnect attempt(s) failed ({exc}): check that it is still running, or {START_HINT}"
                    ) from exc
                time.sleep(_BACKOFF_S * (failures - 1))

    def _receive(self, timeout_s: float, timeout_name: str) -> dict[str, Any]:
        """Reads one reply, turning every way it can fail into this module's exceptions.

        Any failure leaves the connection in an unknown state (a late reply would be taken
        for the next one), so it is dropped and the next call reconnects.
        """
        assert self._conn is not None
        try:
            message = self._conn.recv(timeout=timeout_s)
        except TimeoutError as exc:
            self.close()
            raise RemoteUnavailable(
                f"policy server at {self.url} sent nothing within the {timeout_name} of {timeout_s:g} s: "
                "it may be stuck or still compiling; raise the timeout or restart the server"
            ) from exc
        except ConnectionClosed as exc:
            self.close()
            if exc.rcvd is not None and exc.rcvd.code == CloseCode.INTERNAL_ERROR:
                raise PolicyServerError(
                    f"policy server at {self.url} failed: {exc.rcvd.reason or 'no traceback sent'}"
                ) from exc
            raise
        if isinstance(message, str):
            self.close()
            raise PolicyServerError(f"policy server at {self.url} failed:\n{message}")
        try:
            reply = unpack(message)
        except Exception as exc:  # msgpack and NumPy raise assorted types for a malformed message
            self.close()
            raise PolicyServerError(f"policy server at {self.url} sent an undecodable message: {exc}") from exc
        if not isinstance(reply, dict):
            self.close()
            raise PolicyServerError(f"policy server at {self.url} sent a {type(reply).__name__}, expected a dict")
        return reply

    def close(self) -> None:
        """Closes the connection; the next call opens a new one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def __enter__(self) -> Self:
        # Connect up front so a missing server fails before the first episode, not mid-rollout.
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
