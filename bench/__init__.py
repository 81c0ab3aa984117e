"""bench: evaluate vision-language-action policies on ManiSkill 3 tasks, reproducibly and fast."""

__version__ = "0.1.0"
