"""Stand-ins for benchmarks with random weights: a small SentencePiece model and neutral norm stats.

    python benchmarks/pi_fixtures.py OUT_DIR   ->  OUT_DIR/tokenizer.model, OUT_DIR/norm_stats.json
"""

import json
import sys
from pathlib import Path

import sentencepiece

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
corpus = out / "corpus.txt"
corpus.write_text("\n".join(f"Task: move the cube {i} to the goal, State: {i} {2 * i};\nAction: " for i in range(200)))
sentencepiece.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(out / "tokenizer"), vocab_size=400,
                                         byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3, minloglevel=2)
neutral = {n: {"mean": [0.0] * d, "std": [1.0] * d, "q01": [-1.0] * d, "q99": [1.0] * d}
           for n, d in (("state", 8), ("actions", 7))}
(out / "norm_stats.json").write_text(json.dumps({"norm_stats": neutral}))
