"""`bench check`: a preset, its checkpoint, the tasks and a training dataset held against each other before an
evaluation costs hours.

- `findings`: one finding per check (ok / warn / FAIL / skipped, detail, fix), as JSON;
- `spec`: the spec gate (preset vs checkpoint vs task vs dataset), no model;
- `normstats`: the checkpoint's norm stats against the dataset's, per dimension, with a stated tolerance;
- `sim`: each task's env (controller bounds, first observation): sim vs dataset, remote servers' actions;
- `replay`: open-loop replay of dataset frames through the policy, against the mean-action baseline;
- `run`: inputs (exit 2 before anything is built), then every check the inputs allow.
"""
