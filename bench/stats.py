"""The statistics behind bench's tables: pure functions, numbers in and numbers out (no pandas, no run folders).

- `wilson_interval`: a success rate's score interval (sound at 0% and 100%, unlike the normal approximation).
- `newcombe_paired_interval`: the difference B-A of two rates measured on the same episodes, with Newcombe's
  paired score interval (method 10 of Newcombe 1998, "Improved confidence intervals for the difference between
  binomial proportions based on paired data", Stat Med 17:2635-2650): each rate's Wilson interval, combined
  "square-and-add" with the correlation between the two rates (phi of the 2x2 table, shrunk towards 0 by n/2 when
  positive, set to 0 when a margin is empty), which keeps the interval inside [-1, 1] and sound at 0% and 100%,
  where the Wald interval collapses.
- `mcnemar_exact`: two-sided binomial test of A-only vs B-only successes with p = 0.5 (exact, because runs have
  few discordant pairs).
- `episodes_needed`: Connor's (1987) sample size for McNemar's test at the observed difference and discordance.
- `mover_mean_interval`: the mean of independent differences (tasks use disjoint episodes) with a MOVER interval
  (Zou & Donner 2008): mean -+ sqrt(sum of squared half-widths) / k, separately below and above. A bootstrap over
  episodes or a Wald sum of variances would collapse to zero width whenever every pair agrees or every discordant
  pair goes one way (100% vs 0%), the usual case for small runs; MOVER inherits the score intervals' behaviour
  there and reduces to the task's own interval for one task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

CONFIDENCE = 0.95
POWER = 0.8


def z_quantile(p: float) -> float:
    """The standard normal quantile: z_quantile(0.975) = 1.95996..."""
    return NormalDist().inv_cdf(p)


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for `successes` of `n`; (nan, nan) for n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    z = z_quantile(1 - (1 - confidence) / 2)
    p = successes / n
    shrink = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / shrink
    half = z / shrink * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired_interval(both: int, a_only: int, b_only: int, neither: int,
                             confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval for rate(B) - rate(A) from paired outcomes (Newcombe 1998, method 10; see the module doc)."""
    n = both + a_only + b_only + neither
    p_a, p_b = (both + a_only) / n, (both + b_only) / n
    low_a, high_a = wilson_interval(both + a_only, n, confidence)
    low_b, high_b = wilson_interval(both + b_only, n, confidence)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    cross = both * neither - a_only * b_only
    if margins == 0 or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > 0 else cross) / math.sqrt(margins)
    diff = p_b - p_a
    below = (p_b - low_b) ** 2 - 2 * phi * (p_b - low_b) * (high_a - p_a) + (high_a - p_a) ** 2
    above = (high_b - p_b) ** 2 - 2 * phi * (high_b - p_b) * (p_a - low_a) + (p_a - low_a) ** 2
    return max(-1.0, diff - math.sqrt(below)), min(1.0, diff + math.sqrt(above))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs against p = 0.5.

    The null distribution is symmetric, so p = 2 P(X <= min(a_only, b_only)), at most 1; computed with integers."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, i) for i in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2 ** discordant)


def episodes_needed(difference: float, discordance: float, alpha: float = 1 - CONFIDENCE,
                    power: float = POWER) -> int | None:
    """Pairs (episodes per task) for McNemar's test to detect `difference` with `power` (Connor 1987).

    n = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2, psi the discordance rate. An
    asymptotic formula: with under about 10 discordant pairs the exact test needs somewhat more. None when
    there is no difference to detect.
    """
    if difference == 0 or discordance <= 0:
        return None
    root = z_quantile(1 - alpha / 2) * math.sqrt(discordance) + z_quantile(power) * math.sqrt(
        max(discordance - difference ** 2, 0.0))
    return math.ceil(root ** 2 / difference ** 2)


def mover_mean_interval(diffs: Sequence[float], lows: Sequence[float],
                        highs: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of k independent differences, each with its interval (MOVER; see the module doc)."""
    k = len(diffs)
    mean = sum(diffs) / k
    below = math.sqrt(sum((d - low) ** 2 for d, low in zip(diffs, lows))) / k
    above = math.sqrt(sum((high - d) ** 2 for d, high in zip(diffs, highs))) / k
    return mean, mean - below, mean + above
