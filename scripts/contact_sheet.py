"""Contact sheets of the robustness variants (docs/robustness.md): for each task, the first frame of its episode 0
(the seed every `bench run --seed 0` gives it) under the nominal task and each variant, base and hand camera side
by side, one row per variant, labelled. Built through bench's own env factory, so it shows what a policy sees.

    python scripts/contact_sheet.py --out docs/robustness [--tasks PickCube-v1,PushCube-v1] [--size 160]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def contact_sheet(tasks: str = "all", out: Path = Path("docs/robustness"), size: int = 160, quality: int = 85) -> None:
    import cv2

    from bench.envs.maniskill import flatten_obs, make_maniskill_env
    from bench.tasks import episode_seed, load_suite

    suite = load_suite()
    out.mkdir(parents=True, exist_ok=True)
    for base in suite.resolve(tasks):
        rows = []
        for spec in [s for s in suite.tasks.values() if s.base_id == base.id]:
            env = make_maniskill_env(spec, num_envs=1, sim_backend="physx_cpu")
            try:
                obs = flatten_obs(env.reset(seed=episode_seed(0, spec.id, 0))[0])
            finally:
                env.close()
            tiles = [cv2.resize(obs[f"sensor_data/{camera}/rgb"][0], (size, size), interpolation=cv2.INTER_AREA)
                     for camera in spec.cameras]
            label = np.full((size, size, 3), 255, np.uint8)
            for line, text in enumerate([spec.variant or "nominal", spec.perturbation.axis]):
                cv2.putText(label, text, (6, 24 + 22 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            rows.append(np.concatenate([label, *tiles], axis=1))
        sheet = np.concatenate(rows, axis=0)
        path = out / f"{base.id}.jpg"
        cv2.imwrite(str(path), sheet[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        print(f"{path}: {len(rows)} rows")


if __name__ == "__main__":
    import tyro

    tyro.cli(contact_sheet)
