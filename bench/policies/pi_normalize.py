"""Normalization of Pi0 / Pi0.5 state and actions, in the arithmetic of the trainer that produced the checkpoint.

The same statistics give (slightly) different numbers under openpi's and lerobot's formulas, and Pi0.5 writes the
normalized state into its prompt in 256 bins, so a value near a bin edge can land in another bin. bench therefore
follows the trainer (the backend of the checkpoint, `pi._check_files`):

- "openpi" (`openpi.transforms.Normalize` / `Unnormalize`): float64 statistics, a float32 state becomes float64;
  MEAN_STD (x - mean) / (std + 1e-6), QUANTILES (x - q01) / (q99 - q01 + 1e-6) * 2 - 1; the float64 result is
  what Pi0.5 discretizes. Actions: x * (std + 1e-6) + mean; (x + 1) / 2 * (q99 - q01 + 1e-6) + q01, where
  (x + 1) / 2 is computed in the actions' own dtype (float32) before the float64 statistics come in.
- "lerobot" (0.6.1, `lerobot.processor.normalize_processor._NormalizationMixin._apply_transform`): everything in
  float32 (the statistics are cast to the tensor's dtype), eps = 1e-8; MEAN_STD (x - mean) / (std + eps) and back
  x * std + mean (no eps); QUANTILES d = q99 - q01, eps only where d == 0, 2 * (x - q01) / d - 1 and back
  (x + 1) * d / 2 + q01; Pi0.5 discretizes that float32 result.

Stats may cover fewer dims than the (padded) vector; the remaining dims pass through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONVENTIONS = ("openpi", "lerobot")
LEROBOT_EPS = np.float32(1e-8)  # _NormalizationMixin.eps
OPENPI_EPS = 1e-6  # openpi.transforms: `+ 1e-6` in every formula


@dataclass(frozen=True)
class Normalizer:
    """The normalization of one key (state or actions): MEAN_STD or quantiles (q01, q99 -> [-1, 1]), in the
    arithmetic of `convention` ("openpi" or "lerobot")."""

    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray | None = None
    q99: np.ndarray | None = None
    use_quantiles: bool = False
    convention: str = "openpi"

    def __post_init__(self):
        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown normalization convention {self.convention!r}: one of {', '.join(CONVENTIONS)}")

    @classmethod
    def from_stats(cls, stats: dict, use_quantiles: bool, convention: str = "openpi") -> "Normalizer":
        arrays = {k: np.asarray(stats[k], np.float64) for k in ("mean", "std", "q01", "q99") if k in stats}
        if use_quantiles and not {"q01", "q99"} <= arrays.keys():
            raise ValueError("norm stats lack q01/q99, which quantile normalization (Pi0.5) needs")
        return cls(use_quantiles=use_quantiles, convention=convention, **arrays)

    @property
    def kind(self) -> str:
        return "quantiles" if self.use_quantiles else "mean_std"

    @property
    def name(self) -> str:
        """What a step records, e.g. "quantiles, lerobot"."""
        return f"{self.kind}, {self.convention}"

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.mean)
        return x[..., :n], x[..., n:]

    def _f32(self, name: str) -> np.ndarray:
        return getattr(self, name).astype(np.float32)

    def _lerobot_width(self) -> np.ndarray:
        width = self._f32("q99") - self._f32("q01")
        return np.where(width == 0, LEROBOT_EPS, width)

    @property
    def dtype(self) -> type:
        """The dtype the trainer normalizes in, and Pi0.5 discretizes from: what the `normalize` step hands on."""
        return np.float32 if self.convention == "lerobot" else np.float64

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Computed in `self.dtype`, returned in x's dtype (the `normalize` step passes x in `self.dtype`)."""
        head, tail = self._split(x)
        if self.convention == "lerobot":
            head = head.astype(np.float32)
            if self.use_quantiles:
                head = np.float32(2.0) * (head - self._f32("q01")) / self._lerobot_width() - np.float32(1.0)
            else:
                head = (head - self._f32("mean")) / (self._f32("std") + LEROBOT_EPS)
        else:
            head = head.astype(np.float64)
            if self.use_quantiles:
                head = (head - self.q01) / (self.q99 - self.q01 + OPENPI_EPS) * 2.0 - 1.0
            else:
                head = (head - self.mean) / (self.std + OPENPI_EPS)
        return np.concatenate([head.astype(x.dtype), tail], axis=-1)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        """Model-space actions back to the controller's units, in x's dtype."""
        head, tail = self._split(x)
        if self.convention == "lerobot":
            head = head.astype(np.float32)
            if self.use_quantiles:
                head = (head + np.float32(1.0)) * self._lerobot_width() / np.float32(2.0) + self._f32("q01")
            else:
                head = head * self._f32("std") + self._f32("mean")
        elif self.use_quantiles:  # openpi: (x + 1) / 2 in x's own dtype, then the float64 statistics
            half = (head + head.dtype.type(1.0)) / head.dtype.type(2.0)
            head = half * (self.q99 - self.q01 + OPENPI_EPS) + self.q01
        else:
            head = head * (self.std + OPENPI_EPS) + self.mean
        return np.concatenate([head.astype(x.dtype), tail], axis=-1)
