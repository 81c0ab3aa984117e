"""bench.remote against a real WebSocket peer on 127.0.0.1 that speaks openpi's serving protocol."""

from __future__ import annotations

import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.sync.server import ServerConnection, serve

from bench.remote import PolicyClient, PolicyServerError, RemoteUnavailable, pack, unpack

pytestmark = pytest.mark.timeout(20)

METADATA = {"action_horizon": 10, "robot": "panda"}
STATE = np.arange(8, dtype=np.float32)


@dataclass
class Peer:
    url: str
    connections: int = 0


def doubling_policy(obs: dict) -> dict:
    return {"actions": obs["observation/state"][None].repeat(10, 0) * 2, "policy_timing": {"infer_ms": 0.1}}


def failing_policy(obs: dict) -> dict:
    raise RuntimeError("boom: the checkpoint has no head for this robot")


@contextmanager
def openpi_like_server(
    policy: Callable[[dict], dict], replies_per_connection: int | None = None, answer: bool = True
) -> Iterator[Peer]:
    """Loopback server following openpi's websocket_policy_server.py: metadata frame, then one reply per obs.

    replies_per_connection closes the connection (normally) after that many replies;
    answer=False reads requests and never replies.
    """
    peer = Peer(url="")

    def handler(ws: ServerConnection) -> None:
        peer.connections += 1
        ws.send(pack(METADATA))
        replies = 0
        try:
            for message in ws:
                if not answer:
                    continue
                try:
                    reply = policy(unpack(message))
                except Exception:
                    ws.send(traceback.format_exc())
                    ws.close(CloseCode.INTERNAL_ERROR, "Internal server error. Traceback included in previous frame.")
                    return
                reply["server_timing"] = {"infer_ms": 0.2}
                ws.send(pack(reply))
                replies += 1
                if replies == replies_per_connection:
                    ws.close()
                    return
        except ConnectionClosed:
            pass

    with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        peer.url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield peer
        finally:
            server.shutdown()
            thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- codec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.linspace(0, 1, 24, dtype=np.float32).reshape(2, 3, 4),
        np.arange(224 * 224 * 3, dtype=np.uint8).reshape(224, 224, 3),
        np.array([[True, False], [False, True]]),
        np.arange(-5, 5, dtype=np.int64),
        np.array(3.5, dtype=np.float32),  # 0-d
        np.array(7, dtype=np.int64),  # 0-d
        np.zeros((0, 7), dtype=np.float32),
        np.arange(12, dtype=">i4").reshape(3, 4),  # big-endian survives via dtype.str
        np.arange(12, dtype=np.float64).reshape(3, 4).T,  # non-contiguous
        np.array(["pick", "place"]),
    ],
    ids=lambda a: f"{a.dtype.str}{list(a.shape)}",
)
def test_arrays_round_trip_with_dtype_shape_and_values(array: np.ndarray) -> None:
    back = unpack(pack(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    if back.size:
        back.flat[0] = back.flat[-1]  # decoded arrays are writable


def test_numpy_scalars_and_nested_dicts_round_trip() -> None:
    obs = {
        "observation/state": STATE,
        "observation/image": np.zeros((4, 4, 3), dtype=np.uint8),
        "prompt": "pick up the red cube",
        "nested": {"gripper": np.float32(0.25), "step": np.int64(3), "done": np.bool_(True), "ids": [np.uint8(1), 2]},
        b"raw": b"\x00\xff",
    }
    back = unpack(pack(obs))
    assert set(back) == set(obs)
    assert back["prompt"] == obs["prompt"] and back[b"raw"] == b"\x00\xff"
    np.testing.assert_array_equal(back["observation/state"], STATE)
    for key, value in obs["nested"].items():
        if key != "ids":
            assert type(back["nested"][key]) is type(value) and back["nested"][key] == value
    assert type(back["nested"]["ids"][0]) is np.uint8 and back["nested"]["ids"][1] == 2
    # Like openpi: np.float64 subclasses float, so msgpack writes it natively.
    assert unpack(pack(np.float64(1.5))) == 1.5


def test_wire_format_is_openpis() -> None:
    array = np.ones((2, 3), dtype=np.float32)
    raw = msgpack.unpackb(pack({"a": array, "s": np.int16(-2)}))
    assert raw == {
        "a": {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": "<f4", b"shape": [2, 3]},
        "s": {b"__npgeneric__": True, b"data": -2, b"dtype": "<i2"},
    }
    # A message built the way openpi's server builds it decodes here.
    encoded = {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": "<f4", b"shape": (2, 3)}
    np.testing.assert_array_equal(unpack(msgpack.packb({"actions": encoded}))["actions"], array)


@pytest.mark.parametrize("value", [np.array([object()]), np.ones(2, dtype=np.complex64), np.complex128(1j)])
def test_unsupported_dtypes_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="cannot send dtype"):
        pack({"x": value})


# --- client against a live server ----------------------------------------------------------------


def test_client_reads_metadata_and_gets_actions() -> None:
    with openpi_like_server(doubling_policy) as peer, PolicyClient(peer.url.removeprefix("ws://")) as client:
        assert client.metadata == METADATA
        for step in range(3):
            reply = client.infer({"observation/state": STATE + step, "prompt": "stack"})
            assert reply["actions"].dtype == np.float32 and reply["actions"].shape == (10, 8)
            np.testing.assert_array_equal(reply["actions"], np.tile((STATE + step) * 2, (10, 1)))
            assert set(reply) == {"actions", "policy_timing", "server_timing"}
        assert peer.connections == 1


def test_server_exception_raises_policy_server_error_with_traceback() -> None:
    with openpi_like_server(failing_policy) as peer, PolicyClient(peer.url) as client:
        with pytest.raises(PolicyServerError) as info:
            client.infer({"observation/state": STATE})
    message = str(info.value)
    assert peer.url in message
    assert "Traceback (most recent call last)" in message and "boom: the checkpoint has no head" in message


def test_close_1011_without_traceback_frame_raises_policy_server_error() -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send(pack(METADATA))
        ws.recv()
        ws.close(CloseCode.INTERNAL_ERROR, "out of GPU memory")

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with PolicyClient(f"127.0.0.1:{server.socket.getsockname()[1]}") as client:
            with pytest.raises(PolicyServerError, match="out of GPU memory"):
                client.infer({"observation/state": STATE})
        server.shutdown()


def test_dropped_connection_is_reopened_transparently() -> None:
    with openpi_like_server(doubling_policy, replies_per_connection=1) as peer:
        with PolicyClient(peer.url, retries=2) as client:
            for step in range(3):
                reply = client.infer({"observation/state": STATE + step})
                np.testing.assert_array_equal(reply["actions"][0], (STATE + step) * 2)
            assert client.metadata == METADATA
        assert peer.connections == 3


def test_no_server_raises_remote_unavailable_naming_url_and_fix() -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RemoteUnavailable) as info:
        PolicyClient(url, connect_timeout_s=0.5).infer({"observation/state": STATE})
    assert time.monotonic() - started < 0.5
    assert url in str(info.value) and "serve_policy.py" in str(info.value)


def test_silent_listener_times_out_within_connect_timeout() -> None:
    with socket.socket() as listener:  # accepts TCP but never completes the WebSocket handshake
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(RemoteUnavailable, match="connect timeout of 0.3 s") as info:
            PolicyClient(url, connect_timeout_s=0.3).connect()
        assert time.monotonic() - started < 1.0
        assert url in str(info.value)


def test_unanswered_request_raises_remote_unavailable_naming_timeout() -> None:
    with openpi_like_server(doubling_policy, answer=False) as peer, PolicyClient(peer.url, request_timeout_s=0.3) as c:
        started = time.monotonic()
        with pytest.raises(RemoteUnavailable, match="request timeout of 0.3 s") as info:
            c.infer({"observation/state": STATE})
        assert time.monotonic() - started < 1.5  # 0.3 s wait, then a close bounded by the close timeout
        assert peer.url in str(info.value)
