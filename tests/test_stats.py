"""bench.stats against hand computations and a published example."""

import math

import pytest

from bench.stats import episodes_needed, mcnemar_exact, mover_mean_interval, newcombe_paired_interval, wilson_interval

Z95 = 1.959963984540054  # standard normal 97.5% quantile
Z80 = 0.8416212335729143  # standard normal 80% quantile


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 10), (7, 10), (10, 10), (1, 3), (45, 100)])
def test_wilson_interval_matches_the_formula(k, n):
    assert wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)


def test_exact_mcnemar_by_hand():
    # b=1, c=9: 2 * (C(10,0) + C(10,1)) / 2^10 = 2 * 11 / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024, abs=1e-12)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024, abs=1e-12)
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64, abs=1e-12)  # 0.03125: six one-way pairs are significant
    assert mcnemar_exact(4, 0) == pytest.approx(2 / 16, abs=1e-12)  # 0.125: four are not
    assert mcnemar_exact(0, 0) == 1.0


def test_newcombe_paired_interval_matches_published_example():
    """Cavo et al. 2012 in Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables (2017),
    chapter 8: rows (first measurement) 59 6 / 16 80; Newcombe square-and-add: -0.0621 (95% CI -0.1186 to
    -0.0046). Here B is the first measurement: both 59, B only 6, A only 16, neither 80."""
    low, high = newcombe_paired_interval(both=59, a_only=16, b_only=6, neither=80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    assert newcombe_paired_interval(59, 6, 16, 80) == pytest.approx((-high, -low))  # swapping A and B


def test_newcombe_paired_interval_by_hand():
    # both 5, A only 2, B only 2, neither 1 (n=10): ad - bc = 5 - 4 = 1 <= n/2, so phi = 0 and the interval is
    # 0 -+ sqrt(sum of the two Wilson half-widths squared) of 7/10
    low7, high7 = wilson_by_hand(7, 10)
    assert newcombe_paired_interval(5, 2, 2, 1) == pytest.approx(
        (-math.sqrt((0.7 - low7) ** 2 + (high7 - 0.7) ** 2), math.sqrt((0.7 - low7) ** 2 + (high7 - 0.7) ** 2)))
    # A only 1, B only 9 (n=10): ad - bc = -9, margins 1*9*9*1, phi = -1: the half-widths add up
    low1, high1 = wilson_by_hand(1, 10)
    low9, high9 = wilson_by_hand(9, 10)
    assert newcombe_paired_interval(0, 1, 9, 0) == pytest.approx(
        (0.8 - (0.9 - low9) - (high1 - 0.1), 0.8 + (high9 - 0.9) + (0.1 - low1)))


def test_episodes_needed_by_hand():
    # Connor 1987: discordance 0.3, difference 0.1: (1.96 sqrt(0.3) + 0.8416 sqrt(0.29))^2 / 0.01 = 233.09 -> 234
    assert (Z95 * math.sqrt(0.3) + Z80 * math.sqrt(0.29)) ** 2 / 0.01 == pytest.approx(233.09, abs=0.01)
    assert episodes_needed(0.1, 0.3) == 234
    assert episodes_needed(-0.1, 0.3) == 234
    assert episodes_needed(0.0, 0.3) is None


def test_mover_mean_interval_by_hand():
    # two tasks: +0.8 [0.5, 0.9] and 0 [-0.3, 0.3]: mean 0.4, minus sqrt(0.3^2 + 0.3^2) / 2 below and plus
    # sqrt(0.1^2 + 0.3^2) / 2 above
    mean, low, high = mover_mean_interval([0.8, 0.0], [0.5, -0.3], [0.9, 0.3])
    assert (mean, low, high) == pytest.approx((0.4, 0.4 - math.sqrt(0.18) / 2, 0.4 + math.sqrt(0.1) / 2))
    assert mover_mean_interval([0.2], [-0.1], [0.4]) == pytest.approx((0.2, -0.1, 0.4))  # one task: its interval


def test_exact_mcnemar_stays_exact_for_many_pairs():
    # 1000 discordant pairs, 470 vs 530: 2 P(X <= 470), X ~ Bin(1000, 1/2), computed from integers
    exact = 2 * sum(math.comb(1000, i) for i in range(471)) / 2 ** 1000
    assert mcnemar_exact(470, 530) == exact and 0.05 < exact < 0.07
