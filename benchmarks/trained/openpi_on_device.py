"""Timeboxed probe: does openpi's JAX Pi0 / Pi0.5 (bench's openpi backend) run on the GPU machine's jax 0.11 (CUDA 13), not the jax 0.5.3 openpi pins?"""
import time, traceback
import numpy as np
import jax
print("jax", jax.__version__, jax.devices())
try:
    import flax, orbax.checkpoint
    print("flax", flax.__version__)
    from bench.policies.pi_openpi import TinyOpenpiPiBackend
    from bench.policies.pi_types import PiInputs, IMAGE_KEYS
    for model in ("pi0", "pi05"):
        t0 = time.time()
        b = TinyOpenpiPiBackend(model, None, dtype="bfloat16", seed=0)
        print(model, "built", round(time.time() - t0, 1), "s")
        n = 4
        inputs = PiInputs({k: np.zeros((n, 224, 224, 3), np.uint8) for k in IMAGE_KEYS},
                          {k: np.ones(n, bool) for k in IMAGE_KEYS}, np.zeros((n, 32), np.float32),
                          np.ones((n, b.max_token_len), np.int64), np.ones((n, b.max_token_len), bool))
        for i in range(3):
            t0 = time.time(); a = b.sample_actions(inputs); print(model, a.shape, "chunk batch 4:", round(time.time() - t0, 3), "s")
except Exception:
    traceback.print_exc()
