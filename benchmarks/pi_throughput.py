"""Pi0 / Pi0.5 action chunks per second at several batch sizes (one batched forward per step of the loop).

    python benchmarks/pi_throughput.py --model pi05 --batch 1 8 32 --device cuda      # full size, random weights, bf16
    python benchmarks/pi_throughput.py --quick                                          # tiny model on CPU

Random weights: throughput does not depend on the values. Inputs are random images, state and tokens at the
model's full prompt length, so the measured work is what an evaluation does per query.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from bench.policies.pi import MODEL_DIM, PiInputs, build_backend


def random_inputs(batch: int, max_token_len: int, rng: np.random.Generator) -> PiInputs:
    keys = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    return PiInputs(
        images={k: rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8) for k in keys},
        image_masks={k: np.full(batch, k != "right_wrist_0_rgb") for k in keys},
        state=np.concatenate([rng.uniform(-1, 1, (batch, 8)), np.zeros((batch, MODEL_DIM - 8))], 1).astype(np.float32),
        tokens=rng.integers(2, 1000, (batch, max_token_len)),
        token_masks=np.ones((batch, max_token_len), bool),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["pi0", "pi05"], default="pi05")
    parser.add_argument("--backend", default="lerobot")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny random model on CPU, batch 1 and 2")
    args = parser.parse_args()
    tiny = args.quick
    if args.quick:
        args.batch, args.device, args.dtype, args.iters = [1, 2], "cpu", "float32", 2
    started = time.perf_counter()
    backend = build_backend(args.model, args.backend, None, tiny=tiny, dtype=args.dtype, seed=0, device=args.device,
                            random_init=not tiny)
    print(f"machine: {platform.node()}; {args.model} ({'tiny' if tiny else 'full size'}, random weights) on "
          f"{args.backend}/{args.device}/{args.dtype}; built in {time.perf_counter() - started:.1f} s; "
          f"{args.iters} timed calls after 2 warm-up calls")
    print("| model | batch | s per call | chunks/s |\n|---|---|---|---|")
    rng = np.random.default_rng(0)
    for batch in args.batch:
        inputs = random_inputs(batch, backend.max_token_len, rng)
        for _ in range(2):
            backend.sample_actions(inputs)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            backend.sample_actions(inputs)  # returns numpy: the device work has finished
        per_call = (time.perf_counter() - t0) / args.iters
        print(f"| {args.model} | {batch} | {per_call:.3f} | {batch / per_call:.1f} |", flush=True)


if __name__ == "__main__":
    main()
