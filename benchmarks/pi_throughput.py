"""Pi0 / Pi0.5 action chunks per second at several batch sizes, against the GPU's measured bf16 matmul rate.

    python benchmarks/pi_throughput.py --model pi05 pi0 --batch 1 8 32 64      # full size, random weights, bf16, CUDA
    python benchmarks/pi_throughput.py --quick                                  # tiny model on CPU, about a minute

For each model: the FLOPs of one chunk (counted by torch.utils.flop_counter.FlopCounterMode over a batch-1 call of
each inference path), the measured matmul ceiling (a large bf16 matrix product), then per inference path and batch
size the time of one batched `sample_actions` call, chunks/s and the share of the ceiling that rate reaches
(FLOPs per chunk of bench's path x chunks/s / ceiling: the work the model needs, whatever path does it).
Inference paths: `lerobot` (lerobot's own sample_actions, SigLIP in float32 as lerobot keeps it), `bench-eager`
(bf16 throughout, absent cameras skipped, keys and values updated in place, fused attention other than cuDNN's;
see bench.policies.pi_lerobot_sampling), `bench` (the same, replayed from a CUDA graph per batch bucket on a CUDA
device, bench.policies.pi_lerobot_graphs: what `bench run` uses), and `openpi` (openpi's JAX model under jax.jit,
bench's openpi backend; the FLOP counter does not see JAX, so its share uses the bench path's count, when measured in
the same run). FLOPs are counted on the eager path: a graph's capture would count its warm-up too.

Random weights: throughput does not depend on the values. Inputs are random images, state and tokens at the
model's full prompt length (`--prompt-tokens N`: N tokens, then padding), two cameras present and one absent as in
bench's ManiSkill tasks.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import numpy as np

from bench.policies.pi import build_backend
from bench.policies.pi_types import IMAGE_KEYS, MODEL_DIM, PiInputs


def random_inputs(batch: int, max_token_len: int, rng: np.random.Generator, prompt_tokens: int = 0) -> PiInputs:
    """`prompt_tokens` of each row's `max_token_len` prompt columns are tokens, the rest padding (0: all tokens)."""
    used = np.arange(max_token_len) < (prompt_tokens or max_token_len)
    return PiInputs(
        images={k: rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8) for k in IMAGE_KEYS},
        image_masks={k: np.full(batch, k != "right_wrist_0_rgb") for k in IMAGE_KEYS},
        state=np.concatenate([rng.uniform(-1, 1, (batch, 8)), np.zeros((batch, MODEL_DIM - 8))], 1).astype(np.float32),
        tokens=np.where(used, rng.integers(2, 1000, (batch, max_token_len)), 0),
        token_masks=np.broadcast_to(used, (batch, max_token_len)).copy(),
    )


def matmul_ceiling(device: str, dtype: str, size: int = 8192, iters: int = 20) -> float:
    """Measured FLOP/s of a large square matrix product: the rate no model on this device can beat."""
    import torch

    a, b = (torch.randn(size, size, device=device, dtype=getattr(torch, dtype)) for _ in range(2))
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * size**3 * iters / (time.perf_counter() - t0)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def flops_per_chunk(backend, inputs: PiInputs) -> int:
    """Counted op by op, with torch.compile's fused functions (`pi_lerobot_gemma`) run as written: compiling them
    under the counter's dispatch mode would leave them uncompiled for the rest of the process."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    path = backend.inference
    backend.inference = "bench-eager" if path == "bench" else path
    counter = FlopCounterMode(display=False)
    try:
        with torch.compiler.set_stance("force_eager"), counter:
            backend.sample_actions(inputs)
    finally:
        backend.inference = path
    return counter.get_total_flops()


def time_call(backend, inputs: PiInputs, iters: int, device: str) -> tuple[float, float, float]:
    """(s per call, peak GPU memory GiB during the calls (0 on CPU), s of the first call: a graph's capture)."""
    import torch

    t0 = time.perf_counter()
    backend.sample_actions(inputs)  # warm-up: allocator, cuDNN/cuBLAS heuristics, the graph's capture
    first = time.perf_counter() - t0
    backend.sample_actions(inputs)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(iters):
        backend.sample_actions(inputs)  # returns numpy: the device work has finished
    per_call = (time.perf_counter() - t0) / iters
    return per_call, torch.cuda.max_memory_allocated() / 1024**3 if cuda else 0.0, first


def profile(backend, inputs: PiInputs, path: str) -> None:
    """torch.profiler's table of the most expensive CUDA kernels of one call, written to `path`."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        backend.sample_actions(inputs)
    with open(path, "w") as f:
        f.write(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["pi0", "pi05"], nargs="+", default=["pi05"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--paths", nargs="+", default=["bench", "lerobot"], choices=["lerobot", "bench", "bench-eager", "openpi"])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=0,
                        help="tokens in each prompt, the rest of the model's prompt width padding (0: no padding)")
    parser.add_argument("--profile", metavar="PREFIX", help="write a kernel profile per model/path at the largest batch")
    parser.add_argument("--quick", action="store_true", help="tiny random model on CPU, batch 1 and 2")
    args = parser.parse_args()
    tiny = args.quick
    if args.quick:
        args.batch, args.device, args.dtype, args.iters = [1, 2], "cpu", "float32", 2
    ceiling = matmul_ceiling(args.device, args.dtype, size=1024 if tiny else 8192, iters=5 if tiny else 20)
    prompts = f"{args.prompt_tokens} prompt tokens" if args.prompt_tokens else "prompts without padding"
    print(f"{date.today()}, machine {platform.node()}; {args.device}/{args.dtype}; matmul ceiling "
          f"{ceiling / 1e12:.1f} TFLOP/s ({'1024' if tiny else '8192'}^3 products); {prompts}")
    print("| model | path | batch | s per call | chunks/s | GFLOP per chunk | TFLOP/s | share of ceiling | peak GiB |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for model in args.model:
        needed = None
        for path in args.paths:
            started = time.perf_counter()
            random_weights = {} if tiny else {"random_init": True}  # the tiny model's weights are random anyway
            if path == "openpi":
                backend = build_backend(model, "openpi", None, tiny=tiny, dtype=args.dtype, seed=0, **random_weights)
            else:
                backend = build_backend(model, "lerobot", None, tiny=tiny, dtype=args.dtype, seed=0,
                                        device=args.device, inference=path, **random_weights)
            built = time.perf_counter() - started
            rng = np.random.default_rng(0)
            flops = (flops_per_chunk(backend, random_inputs(1, backend.max_token_len, rng, args.prompt_tokens))
                     if path != "openpi" else 0)
            if path in ("bench", "bench-eager") and needed is None:
                needed = flops
            for batch in args.batch:
                inputs = random_inputs(batch, backend.max_token_len, rng, args.prompt_tokens)
                per_call, peak, first = time_call(backend, inputs, args.iters, args.device)
                rate = batch / per_call
                work = needed or flops  # the bench path's count: the work the model needs
                share = f"{work * rate / 1e12:.3g} | {work * rate / ceiling:.0%}" if work else "n/a | n/a"
                counted = f"{flops / 1e9:.4g}" if flops else "n/a"
                memory = f"{peak:.1f}" if path != "openpi" else "n/a (JAX)"
                print(f"| {model} | {path} | {batch} | {per_call:.3f} | {rate:.1f} | {counted} | {share} | {memory} |"
                      f" <!-- first call {first:.2f} s -->", flush=True)
            if args.profile:
                profile(backend, inputs, f"{args.profile}-{model}-{path}-b{batch}.txt")
            print(f"<!-- {model} {path}: built in {built:.1f} s -->", flush=True)
            del backend
            _free(args.device)


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
