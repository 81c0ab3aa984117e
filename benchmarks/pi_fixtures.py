"""Stand-ins for benchmarks with random weights: a small SentencePiece model and neutral norm stats.

    python benchmarks/pi_fixtures.py OUT_DIR   ->  OUT_DIR/tokenizer.model, OUT_DIR/norm_stats.json
"""

import json
import sys
from pathlib import Path

from bench.policies.pi_tiny import neutral_norm_stats, train_tokenizer

out = Path(sys.argv[1])
train_tokenizer(out, name="tokenizer")
(out / "norm_stats.json").write_text(json.dumps(neutral_norm_stats()))
