"""Pi0/Pi0.5 policy: tokenizer formats and preflight errors (one line, exit 2, nothing written)."""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.adapters import pi05_prompt
from bench.policies.pi import PromptTokenizer

CORPUS = ["Grasp a red cube and move it to a target goal position.", "Push and move a cube to a goal region.",
          "Task: pick up the peg, State: 0 12 128 255;\nAction: "] * 20


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory) -> Path:
    """A tiny SentencePiece model trained in milliseconds, laid out like PaliGemma's (bos/eos/pad, byte fallback)."""
    import sentencepiece

    folder = tmp_path_factory.mktemp("tokenizer")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(CORPUS))
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tiny"), vocab_size=300, byte_fallback=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, model_type="bpe", minloglevel=2,
        normalization_rule_name="identity", remove_extra_whitespaces=False)  # keep "\n" like PaliGemma
    return folder / "tiny.model"


@pytest.fixture
def norm_stats(tmp_path) -> Path:
    def stats(n):
        return {"mean": [0.0] * n, "std": [1.0] * n, "q01": [-1.0] * n, "q99": [1.0] * n}

    path = tmp_path / "norm_stats.json"
    path.write_text(json.dumps({"norm_stats": {"state": stats(8), "actions": stats(7)}}))
    return path


def test_tokenizer_formats_follow_openpi(spm_model):
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    tokenizer = PromptTokenizer(spm_model, max_len=48)
    tokens, masks = tokenizer(["Push and move a cube to a goal region."], pi0_format=True)
    ids = [sp.bos_id()] + sp.encode("Push and move a cube to a goal region.") + sp.encode("\n")
    assert tokens.shape == masks.shape == (1, 48)
    assert tokens[0, : len(ids)].tolist() == ids and masks[0].sum() == len(ids)
    assert (tokens[0, len(ids):] == 0).all()
    text = pi05_prompt("Push and move a cube to a goal region.", np.array([0.5, -0.25]))
    tokens, masks = PromptTokenizer(spm_model, max_len=200)([text], pi0_format=False)
    assert sp.decode(tokens[0, 1 : masks[0].sum()].tolist()) == text
    short, short_masks = PromptTokenizer(spm_model, max_len=5)([text], pi0_format=False)
    assert short_masks.all() and short.shape == (1, 5)  # truncated, as openpi does


@pytest.mark.parametrize("extra,message", [
    ([], "pi05 needs a checkpoint: pass --checkpoint PATH"),
    (["--checkpoint", "ckpt", "--tokenizer", "missing.model"], "PaliGemma tokenizer not found at missing.model"),
])
def test_pi_preflight_errors(bench, tmp_path, extra, message):
    code, text = bench("run", "--policy", "pi05", "--output", str(tmp_path / "out"), *extra)
    assert code == 2 and message in " ".join(text.split())
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_pi_preflight_norm_stats(bench, tmp_path, spm_model, norm_stats):
    args = ["run", "--policy", "pi05", "--checkpoint", "ckpt", "--tokenizer", str(spm_model), "--output",
            str(tmp_path / "out")]
    code, text = bench(*args, "--norm-stats", str(tmp_path / "nope.json"))
    assert code == 2 and "norm stats not found at" in text
    stats = json.loads(norm_stats.read_text())
    del stats["norm_stats"]["state"]["q01"]
    norm_stats.write_text(json.dumps(stats))
    code, text = bench(*args, "--norm-stats", str(norm_stats))
    assert code == 2 and "with q01/q99 (Pi0.5 normalizes with quantiles)" in " ".join(text.split())
