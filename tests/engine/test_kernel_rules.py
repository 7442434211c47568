"""Rule bitsets against the rules' definition (docs/backtest.md), evaluated in numpy bar by bar."""

from __future__ import annotations

import numpy as np

from engine import layout as L
from engine.kernel_rules import rule_bitsets_nb


def expected_bits(a: np.ndarray, b: np.ndarray, op: int, w0: int, w1: int) -> np.ndarray:
    """The rule at every bar as numpy booleans (NaN compares false, a cross reads the bar before and is never
    true at the first bar), packed into the words [w0, w1)."""
    with np.errstate(invalid="ignore"):
        before_a, before_b = np.concatenate([[np.nan], a[:-1]]), np.concatenate([[np.nan], b[:-1]])
        holds = {L.GT: a > b, L.GE: a >= b, L.LT: a < b, L.LE: a <= b,
                 L.CROSSES_ABOVE: (a > b) & (before_a <= before_b),
                 L.CROSSES_BELOW: (a < b) & (before_a >= before_b)}[op]
    padded = np.zeros(((len(a) - 1) // 64 + 1) * 64, bool)
    padded[:len(a)] = holds
    words = np.packbits(padded.reshape(-1, 64)[:, ::-1], axis=1).view(">u8")[:, 0].astype(np.uint64)
    return words[w0:w1]


def test_rules_sharing_two_rows_equal_the_definition_across_blocks_windows_and_nan():
    """Every operator on one pair of rows (evaluated together) and alone, a row with a NaN warm-up and NaN holes,
    over 10,000 bars (several 4,096-bar blocks, the last word partial), for word ranges starting at 0, inside
    a block and on a block's edge."""
    rng = np.random.default_rng(5)
    n = 10_000
    a = 100 + np.cumsum(rng.normal(0, 1, n))
    b = a + rng.normal(0, 1, n)  # the rows cross in about half the bars, block edges included
    b[:19] = np.nan
    b[rng.choice(n, 50, replace=False)] = np.nan
    a[rng.choice(n, 20, replace=False)] = np.nan
    b[rng.choice(n, 30, replace=False)] = a[rng.choice(n, 30, replace=False)]  # some exact ties
    features = np.ascontiguousarray(np.stack([a, b, a + 1]))
    ops = np.arange(6, dtype=np.int64)
    # rules 0-5: every operator on (a, b), evaluated together; rule 6: a > (a + 1) alone; rule 7: a crosses a constant
    left = np.array([0] * 6 + [0, 0], dtype=np.int64)
    right = np.array([1] * 6 + [2, -1], dtype=np.int64)
    rule_ops = np.concatenate([ops, [L.GT, L.CROSSES_ABOVE]])
    consts = np.array([0.0] * 7 + [100.0])
    n_words = (n - 1) // 64 + 1
    for w0, w1 in ((0, n_words), (1, n_words), (63, 130), (64, n_words), (65, 66), (156, n_words)):
        bits = rule_bitsets_nb(features, left, right, rule_ops, consts, w0, w1)
        for k in range(6):
            np.testing.assert_array_equal(bits[k], expected_bits(a, b, k, w0, w1), err_msg=f"op {k}, words {w0}-{w1}")
        np.testing.assert_array_equal(bits[6], expected_bits(a, a + 1, L.GT, w0, w1))
        np.testing.assert_array_equal(bits[7], expected_bits(a, np.full(n, 100.0), L.CROSSES_ABOVE, w0, w1))
