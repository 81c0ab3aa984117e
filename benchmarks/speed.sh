# GPU machine (device tool): issue 14's measurements, from this tree. Results print to stdout and land in $OUT.
#   sim        env_throughput.py: 16 and 32 CPU-physics workers, cameras every step / every 5th / never
#   suite      bench run, full-size Pi0.5 (random weights, bf16), all six tasks x EPISODES (default 100), N slots
#   reference  end_to_end.py: the sequential loop and bench run on the same EPISODES per task (default 8) of TASKS
#              (default all); E2E="--reference-only" times only the sequential loop (its cost scaled to 100 episodes)
#   startup    where a run's start-up goes at N slots: the policy build alone, N CPU workers alone (first scenes), then
#              bench run on PickCube-v1 x N episodes (its manifest's start-up and policy build, the first task's wait)
#   graphs     tests/test_pi_cuda_graphs.py (CUDA graph replays against lerobot's sample_actions), then pi_throughput.py:
#              full-size Pi0.5 chunks/s replayed from graphs and eager at BATCHES (default 1 8 16 32 64)
source benchmarks/trained/device_env.sh
[ -f /tmp/fx/tokenizer.model ] || python3 benchmarks/pi_fixtures.py /tmp/fx
PI="--policy benchmarks/pi05-random.toml --tokenizer /tmp/fx/tokenizer.model --norm-stats /tmp/fx/norm_stats.json"
N=${N:-64}
summary() {  # per task: setup, waves' wall time, time in policy calls, time waiting for env steps (from the records)
  python3 - "$1" "$2" <<'PY'
import sys
from pathlib import Path
from bench.results import read_episodes, read_manifest
e = read_episodes(Path(sys.argv[1]))
waves = e.drop_duplicates(["task", "wall_time_s"])
print("| task | episodes | setup s | wave s | policy s | sim wait s | env steps/s in waves |\n|---|---|---|---|---|---|---|")
for task, w in waves.groupby("task", sort=False):
    steps = e[e.task == task].steps.sum()
    print(f"| {task} | {len(e[e.task == task])} | {w.task_setup_s.iloc[0]:.1f} | {w.wall_time_s.sum():.1f} | "
          f"{w.policy_time_s.sum():.1f} | {w.sim_time_s.sum():.1f} | {steps / w.wall_time_s.sum():.1f} |")
setup = e.drop_duplicates("task").task_setup_s
manifest, wall = read_manifest(Path(sys.argv[1])), float(sys.argv[2])
startup = manifest["startup_s"]
print(f"all: {len(e)} episodes, {e.steps.sum()} env steps, {waves.wall_time_s.sum():.1f} s in waves, "
      f"{e.steps.sum() / waves.wall_time_s.sum():.1f} env steps/s in waves, success {e.success_once.mean():.3f}")
print(f"bench run {wall:.1f} s: start-up {startup:.1f} s (policy build {manifest['policy_build_s']:.1f} s, then the first "
      f"task's environments {setup.iloc[0]:.1f} s more), later tasks' "
      f"setup {setup.iloc[1:].sum():.1f} s, waves {waves.wall_time_s.sum():.1f} s, the rest "
      f"{wall - startup - setup.iloc[1:].sum() - waves.wall_time_s.sum():.1f} s")
PY
}
case "$1" in
  sim) python3 benchmarks/env_throughput.py --backend cpu --num-envs ${NUMS:-16 32} --observe-every 1 5 0 --steps 100 ;;
  suite)
    rm -rf $WORK/results/suite-$N
    start=$(date +%s.%N)
    $BENCH run $PI --tasks all --episodes ${EPISODES:-100} --num-envs $N --output $WORK/results --run-id suite-$N \
      2>&1 | tail -n 12
    summary $WORK/results/suite-$N "$(python3 -c "import time; print(time.time() - $start)")" ;;
  startup)
    python3 - $N <<'PY'
import sys
import time
started = time.perf_counter()
from bench.policies.pi import PiPolicy
print(f"import bench.policies.pi: {time.perf_counter() - started:.1f} s")
started = time.perf_counter()
PiPolicy(num_slots=int(sys.argv[1]), model="pi05", backend="lerobot", random_init=True, dtype="bfloat16",
         tokenizer="/tmp/fx/tokenizer.model", norm_stats="/tmp/fx/norm_stats.json")
print(f"policy build alone (full-size Pi0.5, random weights, bf16, nothing else running): "
      f"{time.perf_counter() - started:.1f} s")
PY
    python3 benchmarks/env_throughput.py --backend cpu --num-envs $N --observe-every 5 --steps 20
    rm -rf $WORK/results/startup-$N
    start=$(date +%s.%N)
    $BENCH run $PI --tasks PickCube-v1 --episodes $N --num-envs $N --output $WORK/results --run-id startup-$N \
      2>&1 | tail -n 4
    summary $WORK/results/startup-$N "$(python3 -c "import time; print(time.time() - $start)")" ;;
  graphs)
    python3 -m pytest -q -p no:cacheprovider tests/test_pi_cuda_graphs.py
    python3 benchmarks/pi_throughput.py --model pi05 --paths bench bench-eager --batch ${BATCHES:-1 8 16 32 64} ;;
  reference)
    python3 benchmarks/end_to_end.py $PI --tasks ${TASKS:-all} --episodes ${EPISODES:-8} --num-envs $N ${E2E:-} 2>&1 |
      grep -v "^reference: " ;;
esac
