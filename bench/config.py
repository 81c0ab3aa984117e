"""`bench run`'s settings: one typed dataclass, its fields grouped by what they mean for a result.

The groups decide what `--resume` may change and what the manifest records as the evaluation: a setting of
`WHAT` or `POLICY` is part of what is evaluated (taken from the manifest on resume), one of `WHERE` only says where
the episodes execute (may change on resume), one of `AFTER` acts once the run has ended, and `OUTPUT` names the
run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from bench.envs import default_num_envs
from bench.envs.cpu_workers import DEFAULT_STEP_TIMEOUT_S
from bench.errors import BenchError, unknown_name
from bench.policies import DEFAULT_PRESETS_DIR
from bench.tasks import DEFAULT_TASKS_DIR, TaskSuite

DEFAULT_EPISODES = 50
WHAT, POLICY, WHERE, AFTER, OUTPUT, RESUME = "what", "policy", "where", "after", "output", "resume"


def _in(group: str, default=None, factory=None):
    if factory is not None:
        return field(default_factory=factory, metadata={"group": group})
    return field(default=default, metadata={"group": group})


@dataclass(frozen=True)
class RunConfig:
    """Evaluation settings; everything here is written into the manifest."""

    policy: str = _in(WHAT, "expert")
    """Policy preset (policies/<name>.toml), preset file path, or plugin name; see `bench policies`."""
    tasks: str = _in(WHAT, "all")
    """A suite (all, extras, smoke), or comma-separated task ids; see `bench tasks`."""
    suite: str | None = _in(WHAT)
    """A named suite (e.g. smoke) instead of --tasks: its tasks and, unless --episodes is given, its episodes."""
    episodes: int | None = _in(WHAT)
    """Episodes per task (default: the suite's count if it has one, else 50)."""
    seed: int = _in(WHAT, 0)
    """Run seed: episode i of task T starts from a state derived from (seed, T, i)."""
    episodes_from: Path | None = _in(WHAT)
    """A dataset written by `bench record`: evaluate on its recorded episodes (task, seed), in its order, instead of
    bench's evaluation seeds (closed-loop reproduction of training episodes). --tasks (default: the dataset's) and
    --episodes (default: all) select from them; a run with it compares only with runs over the same episodes."""
    sim_backend: Literal["auto", "gpu", "cpu"] = _in(WHAT, "auto")
    """Physics: GPU (physx_cuda) for the tasks it can pin when it can start, else CPU worker processes."""
    replan_steps: int = _in(WHAT, 5)
    """Actions executed from each policy chunk before the policy is queried again."""
    video: int = _in(WHAT, 0)
    """Episodes per task to record as MP4 (the first ones by index), in <run>/videos/<task>/."""
    max_error_share: float = _in(WHAT, 0.1)
    """Share of the run's episodes that may end in error (policy exception, NaN actions, dead env worker) before
    the run aborts."""
    label: str | None = _in(WHAT)
    """Name of the policy in leaderboards, reports and comparisons (default: preset@checkpoint#fingerprint)."""
    tasks_dir: Path = _in(WHAT, DEFAULT_TASKS_DIR)
    """Folder holding suite.toml and the task specs."""
    presets_dir: Path = _in(WHAT, DEFAULT_PRESETS_DIR)
    """Folder holding the policy presets."""
    server: str | None = _in(POLICY)
    """Policy server address for remote policies (overrides the preset's `server`)."""
    backend: str | None = _in(POLICY)
    """Model backend for pi0/pi05: auto (from the checkpoint's layout), lerobot or openpi (overrides the preset)."""
    checkpoint: str | None = _in(POLICY)
    """Model checkpoint folder (overrides the preset)."""
    tokenizer: str | None = _in(POLICY)
    """PaliGemma SentencePiece model, paligemma_tokenizer.model (overrides the preset)."""
    train_config: str | None = _in(POLICY)
    """openpi TrainConfig the checkpoint was trained with: a registry name (pi05_libero) or module:attr (overrides
    the preset)."""
    norm_stats: str | None = _in(POLICY)
    """State/action statistics the checkpoint was trained with (default: the checkpoint's own; openpi
    norm_stats.json or a lerobot normalizer .safetensors)."""
    num_envs: int = _in(WHERE, factory=default_num_envs)
    """Episodes run in parallel (env slots)."""
    env_processes: int | None = _in(WHERE)
    """CPU physics: worker processes hosting the env slots (default: one per core, at most --num-envs). A process's
    first env costs seconds to start, each further one a fraction of a second; results do not depend on it."""
    worker_timeout: float = _in(WHERE, DEFAULT_STEP_TIMEOUT_S)
    """Seconds a CPU env worker may take to answer a step or render before it counts as dead (killed; its episode
    retried once); building or resetting a scene may take max(300, this)."""
    ray: bool = _in(WHERE, False)
    """Run the episodes as shards on a Ray cluster (a local one unless --ray-address); results stream back here."""
    ray_address: str | None = _in(WHERE)
    """Ray cluster to join ("auto": the one `ray start` set up on this machine); implies --ray."""
    shard_episodes: int | None = _in(WHERE)
    """With --ray: episodes per shard (default: a task's pending episodes form one shard)."""
    shard_gpus: float = _in(WHERE, 0.0)
    """With --ray: GPUs each shard reserves (e.g. 1 for a Pi policy on CUDA, 0.5 to share one between two)."""
    output: Path = _in(OUTPUT, Path("results"))
    """Folder that receives the run folder."""
    run_id: str | None = _in(OUTPUT)
    """Name of the run folder (default: timestamp-policy-pid)."""
    baseline: Path | None = _in(AFTER)
    """A stored baseline run folder: compare this run with it (`bench compare`); its settings are checked first."""
    fail_on_regression: bool = _in(AFTER, False)
    """With --baseline: exit 1 when this run is significantly worse than the baseline (a CI gate)."""
    margin: float = _in(AFTER, 0.0)
    """With --baseline: smallest drop in success rate that counts as a regression (0.05 = 5 points)."""
    repeat: int = _in(AFTER, 1)
    """Run the evaluation this many times with run seeds seed, seed+1, ... (run ids <run-id>-r0, -r1, ...) and
    report the spread of success rates: the noise floor of a result with this many episodes."""
    resume: Path | None = _in(RESUME)
    """A run folder left by an interrupted or killed run: run only its missing episodes, with its recorded settings."""

    @staticmethod
    def names(*groups: str) -> list[str]:
        return [f.name for f in fields(RunConfig) if f.metadata["group"] in groups]

    def resolve(self, suite: TaskSuite) -> RunConfig:
        """The effective settings (what the manifest records): a --suite becomes `tasks` and `episodes`, so the
        recorded settings select the same episodes when they are read back (e.g. by --resume)."""
        if self.suite is None:  # --episodes-from without --episodes: every episode of the dataset
            return replace(self, episodes=self.episodes or (None if self.episodes_from else DEFAULT_EPISODES))
        if self.suite not in suite.suites:
            raise unknown_name("suite", self.suite, suite.suites, hint=" (see `bench tasks`)")
        if self.tasks != "all":
            raise BenchError(f"--suite {self.suite} and --tasks {self.tasks} both choose tasks: pass one of them")
        episodes = self.episodes or suite.suite_episodes.get(self.suite, DEFAULT_EPISODES)
        return replace(self, suite=None, tasks=self.suite, episodes=episodes)

    def validate(self) -> None:
        for name in ("episodes", "num_envs", "env_processes", "replan_steps", "repeat", "shard_episodes"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise BenchError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        for name in ("seed", "video"):
            if getattr(self, name) < 0:
                raise BenchError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.max_error_share <= 1:
            raise BenchError(f"--max-error-share must be between 0 and 1, got {self.max_error_share}")
        if self.worker_timeout <= 0:
            raise BenchError(f"--worker-timeout is in seconds and must be positive, got {self.worker_timeout}")
        if self.fail_on_regression and self.baseline is None:
            raise BenchError("--fail-on-regression needs --baseline results/<baseline-run-id>")
        if self.episodes_from is not None and self.seed != 0:
            raise BenchError("--seed means nothing with --episodes-from: the episodes start from the dataset's "
                             "recorded seeds; drop --seed")
        if self.episodes_from is not None and self.repeat > 1:
            raise BenchError("--repeat varies the run seed, which --episodes-from does not use: drop --repeat")
        if self.baseline is not None and self.repeat > 1:
            raise BenchError("--baseline compares one run: drop --repeat, or compare the repeats with `bench compare`")

    def resumed(self, recorded: dict) -> RunConfig:
        """`--resume RUN`: the settings `recorded` in the run's manifest, with this invocation's WHERE settings.
        Any other option given with --resume is refused: the resumed half must evaluate what the first half did."""
        defaults = RunConfig(num_envs=1)
        given = [name for name in self.names(WHAT, POLICY, OUTPUT, AFTER)
                 if getattr(self, name) != getattr(defaults, name)]
        if given:
            raise BenchError(f"--resume takes every setting from the run's manifest: drop "
                             f"{', '.join('--' + n.replace('_', '-') for n in given)} (--num-envs, "
                             "--env-processes, --worker-timeout and the Ray options may change)")
        run_dir = self.resume
        values = {k: v for k, v in recorded.items() if k in self.names(WHAT, POLICY)}
        if values.get("suite") is not None and values.get("tasks") == values["suite"]:
            values["suite"] = None  # manifests written before suites were resolved into `tasks` recorded both
        if values.get("episodes_from") is not None:
            values["episodes_from"] = Path(values["episodes_from"])
        values.update(tasks_dir=Path(recorded["tasks_dir"]), presets_dir=Path(recorded["presets_dir"]),
                      output=run_dir.parent, run_id=run_dir.name, resume=run_dir,
                      **{name: getattr(self, name) for name in self.names(WHERE)})
        return RunConfig(**values)
