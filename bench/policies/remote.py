"""`remote`: evaluate a policy served by openpi's `serve_policy.py` (one websocket request per env slot).

The server's observation keys depend on its config; the preset maps each key to a source here:
`camera:<name>` (uint8 image resized with padding), `state:<layout>` (see adapters.STATE_LAYOUTS) or `prompt`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.adapters import STATE_LAYOUTS, resize_with_pad
from bench.errors import BenchError
from bench.policies import EpisodeContext, Obs, Policy
from bench.remote import PolicyClient, PolicyServerError, RemoteUnavailable
from bench.tasks import TaskSpec

LIBERO_KEYS = {
    "observation/image": "camera:base_camera",
    "observation/wrist_image": "camera:hand_camera",
    "observation/state": "state:qpos8",
    "prompt": "prompt",
}


class RemotePolicy(Policy):
    name = "remote"
    overlap = True  # act waits for the server

    def __init__(self, num_slots: int, seed: int = 0, server: str = "ws://127.0.0.1:8000",
                 keys: dict[str, str] | None = None, image_size: int = 224, connect_timeout_s: float = 10.0,
                 request_timeout_s: float = 120.0):
        self._server = server
        self._keys = dict(keys or LIBERO_KEYS)
        self._sources = {key: self._source(spec, image_size) for key, spec in self._keys.items()}
        self._client = PolicyClient(server, connect_timeout_s=connect_timeout_s, request_timeout_s=request_timeout_s)
        self._contexts: list[EpisodeContext | None] = [None] * num_slots

    def _source(self, spec: str, image_size: int) -> Callable[[Obs, int, EpisodeContext], object]:
        kind, _, arg = spec.partition(":")
        if kind == "camera" and arg:
            field = f"sensor_data/{arg}/rgb"
            return lambda obs, i, ctx: resize_with_pad(obs[field][i:i + 1], image_size, image_size)[0]
        if kind == "state" and arg in STATE_LAYOUTS:
            layout = STATE_LAYOUTS[arg]
            return lambda obs, i, ctx: layout({k: v[i:i + 1] for k, v in obs.items()})[0].astype(np.float32)
        if spec == "prompt":
            return lambda obs, i, ctx: ctx.instruction
        raise BenchError(f"remote policy: key source '{spec}' is not camera:<name>, state:<{'|'.join(STATE_LAYOUTS)}> "
                         "or prompt; fix [params.keys] in the preset")

    def describe(self) -> dict:
        return {"name": self.name, "server": self._server, "keys": self._keys, "server_metadata": self._metadata()}

    def _metadata(self) -> dict:
        try:
            return self._client.metadata
        except RemoteUnavailable as e:
            raise BenchError(str(e)) from None

    def check_task(self, task: TaskSpec) -> None:
        missing = [s.split(":", 1)[1] for s in self._keys.values() if s.startswith("camera:")
                   and s.split(":", 1)[1] not in task.cameras]
        if missing:
            raise BenchError(f"remote policy reads cameras {missing}, which {task.id} does not render")
        self._metadata()  # connect now: an unreachable server is an error before the first episode

    def reset(self, slot: int, context: EpisodeContext) -> None:
        self._contexts[slot] = context

    def snapshot(self, slot: int) -> object:
        return ()  # each request carries the whole observation; an openpi server keeps no state between them

    def restore(self, slot: int, state: object) -> None:
        pass

    def act(self, obs: Obs, slots: np.ndarray) -> np.ndarray:
        chunks = []
        for i, slot in enumerate(slots):
            context = self._contexts[slot]
            request = {key: source(obs, i, context) for key, source in self._sources.items()}
            try:
                reply = self._client.infer(request)
            except (RemoteUnavailable, PolicyServerError) as e:
                raise BenchError(f"policy server {self._server}: {e}") from None
            actions = np.asarray(reply["actions"], np.float32)
            chunks.append(actions[:, : len(context.action_low)])  # servers may pad actions (e.g. to 32)
        return np.stack(chunks)
