"""Training datasets bench records (`bench record`) and reads back (`bench.datasets.read.open_dataset`).

Modules, imports pointing down the list: `layout` (a preset's [dataset.<keys>] tables), `v21` (the crash-safe
LeRobot v2.1 writer), `convert` (v2.1 -> v3.0 with lerobot 0.6.1's converter), `stats` (openpi's norm stats),
`read` (the reader other modules use).

On disk, besides LeRobot's own files: `meta/bench.json` (what produced the dataset) and
`meta/bench_episodes.jsonl` (one line per finished rollout: bench task id, episode index, seed, success, ...;
`episode_index` is the dataset episode it became, null if it was not written, e.g. a failure under
--only-success), and `norm_stats.json` (openpi's format) at the top.
"""
