"""Train a small Pi0 / Pi0.5 (lerobot 0.6.1's model classes, a reduced architecture) from scratch on a dataset that
`bench record` wrote, so that bench can be shown scoring a trained Pi policy (docs/trained-policies.md).

    python scripts/train_small_pi.py tokenizer --dataset data/ms --out ckpt/tokenizer      # SentencePiece of our own
    python scripts/train_small_pi.py train --dataset data/ms --tokenizer ckpt/tokenizer/small.model --model pi05 \
        --out ckpt/pi05

The model inputs are built by bench's own transforms (`bench.policies.pi_transforms`: normalize, Pi0.5's prompt with
the state in 256 bins, tokenize, pad) in lerobot's normalization arithmetic, the arithmetic bench applies when it
evaluates a lerobot checkpoint: what the model is trained on is what `bench run` feeds it. The images and states
are the dataset's, which `bench record` built with the same pipeline steps as `bench run`.

The checkpoint is a lerobot folder (config.json, model.safetensors in bfloat16) plus the normalizer statistics it
was trained with (lerobot's `policy_preprocessor_step_0_normalizer_processor.safetensors` keys) and the reduced
architecture (`bench_tiny_arch.json`), so `bench run --policy pi05 --checkpoint CKPT --tokenizer TOK` loads it as is.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.policies import pi_transforms as transforms
from bench.datasets.stats import frame_stats
from bench.policies.pi_checkpoint import LEROBOT_KEYS, TINY_MARKER, read_stats
from bench.policies.pi_normalize import Normalizer
from bench.policies.pi_tiny import train_tokenizer
from bench.policies.pi_types import IMAGE_KEYS, MODEL_DIM, STATE_BINS

# ~4.3M parameters outside the 1024-row vocabulary matrices (Pi0.5; ~4.6M in all); bfloat16 on disk: ~9.3 MB
SMALL_ARCH = {
    "gemma": {
        "gemma_2b": {"width": 128, "depth": 6, "mlp_dim": 512, "num_heads": 8, "num_kv_heads": 1, "head_dim": 16},
        "gemma_300m": {"width": 96, "depth": 6, "mlp_dim": 384, "num_heads": 8, "num_kv_heads": 1, "head_dim": 16},
    },
    "vision": {"hidden_size": 160, "intermediate_size": 640, "num_hidden_layers": 4, "num_attention_heads": 4,
               "patch_size": 28},
    "vocab_size": 1024,
}
NORMALIZER_FILE = "policy_preprocessor_step_0_normalizer_processor.safetensors"


# --- tokenizer -------------------------------------------------------------------------------------------------------

def prompt_corpus(dataset: list[Path], seed: int = 0) -> tuple[str, ...]:
    """The dataset's prompts in both models' formats: Pi0's instruction and Pi0.5's "Task: ..., State: <bins>;\\n
    Action: " with every bin value present."""
    from bench.datasets.read import open_dataset

    rng = np.random.default_rng(seed)
    instructions = sorted({e["task"] for path in dataset for e in open_dataset(path).episodes})
    width = 9
    corpus = [transforms.clean_prompt(text) for text in instructions]
    for text in instructions:
        for _ in range(200):
            state = rng.uniform(-1.05, 1.05, width)
            corpus.append(transforms.pi05_prompt(text, state))
    corpus.append(" ".join(str(b) for b in range(STATE_BINS)))
    return tuple(corpus)


def tokenizer_command(dataset: list[Path], out: Path, vocab_size: int = SMALL_ARCH["vocab_size"], seed: int = 0,
                      split_digits: bool = False) -> Path:
    """A SentencePiece model laid out like PaliGemma's, trained on the dataset's prompts (`prompt_corpus`).
    `--split-digits`: one piece per digit, as Gemma's tokenizer does (round 4, docs/trained-policies.md)."""
    return train_tokenizer(out, "small", prompt_corpus(dataset, seed), vocab_size, split_digits=split_digits)


PALIGEMMA_REPO = "google/paligemma-3b-pt-224"  # whose tokenizer lerobot's Pi0/Pi0.5 processors load from the Hub


def paligemma_standin_command(dataset: list[Path], hf_home: Path, vocab_size: int = SMALL_ARCH["vocab_size"],
                              seed: int = 0) -> Path:
    """For lerobot-train offline (no Hub): a tokenizer of our own, trained on the dataset's prompts, put in the
    Hugging Face cache under `HF_HOME=hf_home` as google/paligemma-3b-pt-224's, which lerobot's processors then load
    with `HF_HUB_OFFLINE=1`. Gemma's whitespace convention, so Hugging Face's GemmaTokenizer and SentencePiece (what
    `bench run --tokenizer SNAPSHOT/tokenizer.model` uses) give the same ids: checked on the corpus before it is
    written. Ids stay below the model's vocabulary (257,152 at full size), so a full-size model trains with it."""
    import shutil
    import tempfile

    import sentencepiece
    from transformers import AutoTokenizer

    corpus = prompt_corpus(dataset, seed)
    repo = Path(hf_home) / "hub" / ("models--" + PALIGEMMA_REPO.replace("/", "--"))
    snapshot = repo / "snapshots" / "bench-standin"
    with tempfile.TemporaryDirectory() as tmp:
        model = train_tokenizer(Path(tmp), "tokenizer", corpus, vocab_size, dummy_prefix=False)
        snapshot.mkdir(parents=True, exist_ok=True)
        shutil.copy(model, snapshot / "tokenizer.model")
    (snapshot / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
        "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "padding_side": "right"}, indent=1))
    # AutoTokenizer reads the model's config.json first (for its model type) and fails offline without one
    (snapshot / "config.json").write_text(json.dumps({"model_type": "paligemma"}))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("bench-standin")
    # + tokenizer.json: loading by repo name (what lerobot does) does not convert tokenizer.model
    AutoTokenizer.from_pretrained(str(snapshot)).save_pretrained(str(snapshot))
    hf = AutoTokenizer.from_pretrained(PALIGEMMA_REPO, cache_dir=str(repo.parent), local_files_only=True)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(snapshot / "tokenizer.model"))
    for text in corpus[:: max(1, len(corpus) // 50)]:
        if hf(text).input_ids != sp.encode(text, add_bos=True):
            shutil.rmtree(repo)
            raise SystemExit(f"Hugging Face and SentencePiece tokenize {text!r} differently: stand-in not written")
    print(f"{PALIGEMMA_REPO} stand-in ({sp.get_piece_size()} pieces) in {snapshot}: export HF_HOME={hf_home} "
          f"HF_HUB_OFFLINE=1; evaluate with --tokenizer {snapshot / 'tokenizer.model'}")
    return snapshot


# --- data ------------------------------------------------------------------------------------------------------------

@dataclass
class Frames:
    """Every frame of the training episodes, in episode order."""

    images: dict[str, np.ndarray]  # Pi key -> uint8 [N, H, W, 3]
    state: np.ndarray  # float32 [N, D]
    actions: np.ndarray  # float32 [N, A]
    episode_end: np.ndarray  # [N]: index of the last frame of each frame's episode
    prompts: list[str]  # [N]: the frame's task (its instruction)
    episodes: list[dict]  # what the dataset says of each episode


def load_frames(datasets: list[Path]) -> Frames:
    """Reads bench-recorded datasets (v2.1 or v3.0) through `bench.datasets.read`: the images, state and actions
    exactly as `bench record` stored them under the dataset's keys; or packs of them (`pack`)."""
    from bench.datasets.read import open_dataset

    images, state, actions, ends, prompts, episodes = {}, [], [], [], [], []
    for path in datasets:
        if (path / PACK_META).is_file():
            packed = _unpack(path)
            offset = sum(map(len, state))
            for key, value in packed.images.items():
                images.setdefault(key, []).append(value)
            state.append(packed.state)
            actions.append(packed.actions)
            ends.append(packed.episode_end + offset)
            prompts += packed.prompts
            episodes += packed.episodes
            continue
        ds = open_dataset(path)
        if ds.bench is None or ds.keys is None:
            raise SystemExit(f"{path} was not recorded by bench record (no meta/bench.json): its keys are unknown")
        cameras = [k for k in IMAGE_KEYS if ds.keys.get(k)]
        for episode in ds.episodes:
            frames = ds.frames(episode["episode_index"])
            for key in cameras:
                images.setdefault(key, []).append(frames[ds.keys[key]])
            state.append(np.asarray(frames[ds.keys["state"]], np.float32))
            actions.append(np.asarray(frames[ds.keys["actions"]], np.float32))
            start = sum(map(len, state[:-1]))
            ends.append(np.full(len(state[-1]), start + len(state[-1]) - 1))
            prompts += list(frames["task"])
            episodes.append({"dataset": str(path), **{k: episode.get(k) for k in
                                                      ("episode_index", "task_id", "seed", "length", "success")}})
    return Frames({k: np.concatenate(v) for k, v in images.items()}, np.concatenate(state), np.concatenate(actions),
                  np.concatenate(ends), prompts, episodes)


PACK_META = "pack.json"
PACK_CRF = 12  # near-lossless H.264 (yuv444p): ~20x smaller than PNG frames; the GPU machine decodes it with OpenCV


def pack_command(dataset: list[Path], out: Path) -> Path:
    """The datasets' frames in a folder small enough to carry to the GPU machine (which has OpenCV but no PyAV):
    one H.264 video per camera, the vectors and episode bounds uncompressed."""
    import imageio_ffmpeg
    import subprocess

    frames = load_frames(dataset)
    out.mkdir(parents=True, exist_ok=True)
    for key, video in frames.images.items():
        height, width = video.shape[1:3]
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
                        "rgb24", "-s", f"{width}x{height}", "-i", "-", "-c:v", "libx264", "-crf", str(PACK_CRF),
                        "-pix_fmt", "yuv444p", str(out / f"{key}.mp4")], input=video.tobytes(), check=True)
    np.savez(out / "vectors.npz", state=frames.state, actions=frames.actions, episode_end=frames.episode_end)
    (out / PACK_META).write_text(json.dumps({"frames": len(frames.state), "cameras": list(frames.images),
                                             "prompts": frames.prompts, "episodes": frames.episodes}))
    return out


def _unpack(folder: Path) -> Frames:
    import cv2

    meta = json.loads((folder / PACK_META).read_text())
    vectors = np.load(folder / "vectors.npz")
    images = {}
    for key in meta["cameras"]:
        capture, decoded = cv2.VideoCapture(str(folder / f"{key}.mp4")), []
        while (frame := capture.read())[0]:
            decoded.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2RGB))
        if len(decoded) != meta["frames"]:
            raise SystemExit(f"{folder / key}.mp4: decoded {len(decoded)} frames, the pack holds {meta['frames']}")
        images[key] = np.stack(decoded)
    return Frames(images, vectors["state"], vectors["actions"], vectors["episode_end"], meta["prompts"],
                  meta["episodes"])


# --- train -----------------------------------------------------------------------------------------------------------

def model_inputs(data: Frames, model: str, tokenizer: Path | transforms.PromptTokenizer, max_len: int,
                 norm: dict[str, Normalizer], state_noise: np.ndarray | None = None,
                 discrete_state_input: bool = True):
    """Tokens and (Pi0) normalized padded state for every frame, through bench's own transform steps;
    `state_noise` (training augmentation) is added to the normalized state before Pi0.5 writes it in bins."""
    state_in_prompt = model == "pi05" and discrete_state_input
    if not isinstance(tokenizer, transforms.PromptTokenizer):
        tokenizer = transforms.PromptTokenizer(tokenizer, max_len)
    steps = transforms.Pipeline([
        transforms.normalize(norm["state"]),
        *([] if state_noise is None else [transforms.Step("jitter_state", lambda f: replace(
            f, state=f.state + state_noise))]),
        transforms.prompt_with_state() if state_in_prompt else transforms.prompt(),
        transforms.tokenize(tokenizer, pi0_format=not state_in_prompt),
        transforms.pad_state(MODEL_DIM)])
    frame = steps(transforms.Frame(obs={}, prompts=list(data.prompts), state=data.state))
    longest = int(frame.token_masks.sum(1).max())
    if longest >= max_len:
        raise SystemExit(f"prompts take up to {longest} tokens, more than max_len {max_len}: raise --max-len")
    return frame.tokens, frame.token_masks, frame.state, longest


def train_command(dataset: list[Path], tokenizer: Path, out: Path, model: str = "pi05", steps: int = 20000,
                  batch_size: int = 64, lr: float = 3e-4, horizon: int = 10, max_len: int = 0, shift: int = 6,
                  device: str = "auto", seed: int = 0, minutes: float = 0.0, log_every: int = 200,
                  init: Path | None = None, action_norm: str = "default", state_noise: float = 0.0,
                  ordinal_bins: bool = False, discrete_state_input: bool = True) -> Path:
    """Trains from random weights, or goes on from checkpoint `init` (its weights and its normalization statistics);
    stops after `steps` or `minutes` (if > 0), whichever comes first (the learning rate follows a cosine to 0 at
    that point), and saves. `action_norm`: the model's default (lerobot's: Pi0.5 quantiles, Pi0 mean/std),
    "quantiles" or "mean_std", written into the checkpoint's normalization_mapping as lerobot-train does.
    `state_noise`: Gaussian noise on the normalized state of every training sample, its standard deviation in
    Pi0.5's state bins (2/256 of the normalized range each); without it Pi0.5 small learned its training states'
    exact bin tokens as keys (docs/trained-policies.md, round 4). `ordinal_bins` (from scratch, Pi0.5): the state-bin
    tokens' embeddings start ordered (`ordinal_bin_embeddings`) instead of random. `--no-discrete-state-input`
    (Pi0.5): no state in the prompt, as openpi's pi05_libero trains it (the preset then says
    `discrete_state_input = false`)."""
    import torch

    from bench.policies.pi_lerobot import _modules
    from bench.policies.pi_tiny import tiny_architecture

    if model == "pi0" and not discrete_state_input:
        raise SystemExit("--no-discrete-state-input is a Pi0.5 setting: Pi0 never writes the state into its prompt")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = load_frames(dataset)
    quantiles = model == "pi05"  # lerobot's defaults: Pi0.5 QUANTILES, Pi0 MEAN_STD
    modes = {"state": quantiles, "actions": {"default": quantiles, "quantiles": True, "mean_std": False}[action_norm]}
    stats = ({"state": frame_stats(data.state), "actions": frame_stats(data.actions)} if init is None else
             read_stats(init / NORMALIZER_FILE))
    norm = {k: Normalizer.from_stats(v, modes[k], "lerobot") for k, v in stats.items()}
    max_len = max_len or (48 if model == "pi05" else 24)
    prompt_tokenizer = transforms.PromptTokenizer(tokenizer, max_len)
    tokens, token_masks, state, longest = model_inputs(data, model, prompt_tokenizer, max_len, norm,
                                                       discrete_state_input=discrete_state_input)
    # Pi0.5 without the state in its prompt: nothing to jitter
    noise_scale = state_noise * 2.0 / STATE_BINS if discrete_state_input else 0.0
    actions = transforms.pad_to(norm["actions"].normalize(data.actions.astype(np.float32)), MODEL_DIM)
    action_dim = data.actions.shape[1]

    policy_cls, config_cls, mod = _modules(model)
    config = config_cls(device=device, dtype="float32", chunk_size=horizon, n_action_steps=horizon,
                        tokenizer_max_length=max_len)
    config.normalization_mapping = {**config.normalization_mapping,
                                    "ACTION": type(config.normalization_mapping["ACTION"])[
                                        "QUANTILES" if modes["actions"] else "MEAN_STD"]}
    with tiny_architecture(mod, SMALL_ARCH), torch.device(device):
        policy = policy_cls(config)
    if init is not None:
        from safetensors.torch import load_file

        policy.load_state_dict(load_file(str(init / "model.safetensors")), strict=True)
    elif ordinal_bins and model == "pi05":
        ordinal_bin_embeddings(policy.model, tokenizer, seed)
    policy.to(device).train()
    net = policy.model
    params = sum(p.numel() for p in net.parameters())
    print(f"{model}: {params / 1e6:.2f}M parameters, {len(data.state)} frames, prompts up to {longest} tokens, "
          f"device {device}", flush=True)

    gpu = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    images = {k: gpu(v) for k, v in data.images.items()}
    tokens_t, masks_t, state_t, actions_t = gpu(tokens), gpu(token_masks), gpu(state.astype(np.float32)), gpu(actions)
    episode_end = gpu(data.episode_end)
    offsets = torch.arange(horizon, device=device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4, betas=(0.9, 0.95))
    warmup = min(500, steps // 10)
    n, started, curve = len(data.state), time.perf_counter(), []

    def progress(step: int) -> float:  # of the step budget or of the time limit: the learning rate reaches 0 at either
        spent = (time.perf_counter() - started) / (minutes * 60) if minutes else 0.0
        return min(1.0, max(step / steps, spent))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (
        1 + math.cos(math.pi * progress(s))))
    autocast = torch.autocast("cuda", torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(0, n, batch_size)).to(device)
        views, view_masks = [], []
        for key in IMAGE_KEYS:
            if key in images:
                view = _random_shift(images[key][idx], shift, rng)
                views.append(view.permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0)
                view_masks.append(torch.ones(batch_size, dtype=torch.bool, device=device))
            else:  # absent camera: what bench feeds (a black image, masked out)
                views.append(torch.full((batch_size, 3, 224, 224), -1.0, device=device))
                view_masks.append(torch.zeros(batch_size, dtype=torch.bool, device=device))
        chunk = torch.minimum(idx[:, None] + offsets, episode_end[idx][:, None])  # past the end: the last action
        target = actions_t[chunk]
        noise = torch.randn_like(target)
        t = net.sample_time(batch_size, device)
        batch_tokens, batch_masks, batch_state = tokens_t[idx], masks_t[idx], state_t[idx]
        if noise_scale:  # the batch's inputs again, from its jittered state
            rows = idx.cpu().numpy()
            jitter = rng.normal(0.0, noise_scale, data.state[rows].shape).astype(np.float32)
            subset = Frames({}, data.state[rows], data.actions[rows], data.episode_end[rows],
                            [data.prompts[r] for r in rows], [])
            batch_tokens, batch_masks, batch_state = map(gpu, model_inputs(subset, model, prompt_tokenizer, max_len,
                                                                           norm, jitter, discrete_state_input)[:3])
        with autocast:
            if model == "pi05":
                losses = net.forward(views, view_masks, batch_tokens, batch_masks, target, noise, t)
            else:
                losses = net.forward(views, view_masks, batch_tokens, batch_masks, batch_state, target, noise, t)
        loss = losses[:, :, :action_dim].float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        elapsed = time.perf_counter() - started
        if step % log_every == 0 or step == steps - 1:
            curve.append({"step": step, "loss": loss.item(), "seconds": round(elapsed, 1)})
            print(f"step {step} loss {loss.item():.4f} {elapsed:.0f}s", flush=True)
        if minutes and elapsed > minutes * 60:
            curve.append({"step": step, "loss": loss.item(), "seconds": round(elapsed, 1)})
            print(f"time limit reached at step {step}", flush=True)
            break
    save(policy, out, model, stats, data, curve, dict(steps=step + 1, batch_size=batch_size, lr=lr, horizon=horizon,
                                                       max_len=max_len, shift=shift, seed=seed, params=params,
                                                       init=str(init) if init else None, action_norm=action_norm,
                                                       state_noise=state_noise, ordinal_bins=ordinal_bins,
                                                       discrete_state_input=discrete_state_input if model == "pi05"
                                                       else None))
    return out


def ordinal_bin_embeddings(net, tokenizer: Path, seed: int, frequencies: int = 16) -> int:
    """Starts every state-bin token's embedding ("▁17", and "▁17;" where the last bin merged with the semicolon) as a
    fixed random projection of Fourier features of its bin value, at the norm of the other rows: neighbouring bins
    start alike, so what the model learns for one bin carries over to its neighbours instead of each of 256 tokens
    being learned alone (Pi0.5 small from random embeddings learned its training states' tokens by heart, round 4).
    Returns how many rows were set."""
    import re

    import sentencepiece
    import torch

    table = net.paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight
    processor = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer))
    bins = []  # (piece id, bin value, merged with ";")
    for piece_id in range(processor.get_piece_size()):
        match = re.fullmatch("\u2581(\\d+)(;?)", processor.id_to_piece(piece_id))
        if match and int(match[1]) < STATE_BINS:
            bins.append((piece_id, int(match[1]), bool(match[2])))
    rows, values, merged = (list(column) for column in zip(*bins))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = torch.tensor(values, dtype=torch.float32)[:, None] / (STATE_BINS - 1)
        k = torch.arange(1, frequencies + 1, dtype=torch.float32)[None] * math.pi
        features = torch.cat([torch.cos(k * x), torch.sin(k * x)], 1)
        projection = torch.randn(2 * frequencies, table.shape[1], generator=generator)
        vectors = features @ projection
        semicolon = processor.piece_to_id(";")
        vectors += torch.tensor(merged, dtype=torch.float32)[:, None] * table[semicolon].detach().cpu().float()
        scale = table.detach().float().norm(dim=1).mean().cpu() / vectors.norm(dim=1).mean()
        table[torch.tensor(rows)] = (vectors * scale).to(table.dtype).to(table.device)
    return len(rows)


def _random_shift(images, pad: int, rng):
    """DrQ-style augmentation: each image shifted by up to `pad` pixels (edge pixels repeated)."""
    import torch

    if pad == 0:
        return images
    b, h, w, _ = images.shape
    padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate")
    dy, dx = rng.integers(0, 2 * pad + 1, 2)
    return padded[:, :, dy:dy + h, dx:dx + w].permute(0, 2, 3, 1).to(images.dtype)


def save(policy, out: Path, model: str, stats: dict, data: Frames, curve: list, settings: dict) -> None:
    import torch
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    policy.to(torch.bfloat16)  # ~9 MB on disk; bench loads it into the preset's dtype
    policy.save_pretrained(out)
    (out / TINY_MARKER).write_text(json.dumps(SMALL_ARCH, indent=2))
    flat = {f"{feature}.{name}": np.asarray(value, np.float32) for key, feature in LEROBOT_KEYS.items()
            for name, value in stats[key].items()}
    save_file(flat, str(out / NORMALIZER_FILE))
    (out / "training.json").write_text(json.dumps({"model": model, "settings": settings, "curve": curve,
                                                   "arch": SMALL_ARCH, "episodes": data.episodes}, indent=1))


if __name__ == "__main__":
    import tyro

    tyro.extras.subcommand_cli_from_dict({"tokenizer": tokenizer_command, "paligemma-standin": paligemma_standin_command,
                                          "pack": pack_command, "train": train_command})
