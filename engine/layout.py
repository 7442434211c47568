"""Integer codes and the fixed-width genome row layout shared by the Numba kernels and Python.

Imports nothing but the standard library so that Numba modules can use these as compile-time
constants. A genome row is a float64 vector of ``GENOME_WIDTH`` values:

    [n_entry, n_exit, direction, size, leverage, stop_loss, take_profit, trailing_stop,
     entry rule 0 .. entry rule 3, exit rule 0 .. exit rule 1]

and every rule slot is ``RULE_WIDTH`` values: [left_kind, left_period, op, right_kind, right_period,
right_constant]. Unused rule slots are zero. Fractions (stop, target, trail, size) are plain
fractions (0.02 = 2 %); 0 disables the stop-loss, take-profit and trailing stop.
"""

from __future__ import annotations

# Operand kinds. Price fields have period 0; indicators carry their period.
OPEN, HIGH, LOW, CLOSE, VOLUME = 0, 1, 2, 3, 4
SMA, EMA, RSI, ATR, BB_PCTB, MACD_HIST, ROC, VOLUME_SMA = 5, 6, 7, 8, 9, 10, 11, 12
CONSTANT = 13
N_KINDS = 14

PRICE_FIELDS = {"open": OPEN, "high": HIGH, "low": LOW, "close": CLOSE, "volume": VOLUME}
INDICATORS = {
    "sma": SMA,
    "ema": EMA,
    "rsi": RSI,
    "atr": ATR,
    "bb_pctb": BB_PCTB,
    "macd_hist": MACD_HIST,
    "roc": ROC,
    "volume_sma": VOLUME_SMA,
}
KIND_NAMES = {code: name for name, code in {**PRICE_FIELDS, **INDICATORS, "constant": CONSTANT}.items()}

MIN_PERIOD, MAX_PERIOD = 2, 500

# Comparison operators.
GT, GE, LT, LE, CROSSES_ABOVE, CROSSES_BELOW = 0, 1, 2, 3, 4, 5
OPERATORS = {">": GT, ">=": GE, "<": LT, "<=": LE, "crosses_above": CROSSES_ABOVE, "crosses_below": CROSSES_BELOW}
OPERATOR_NAMES = {code: name for name, code in OPERATORS.items()}

LONG, SHORT = 1.0, -1.0

# Genome row layout.
N_ENTRY, N_EXIT, DIRECTION, SIZE, LEVERAGE, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP = range(8)
HEADER_WIDTH = 8
RULE_WIDTH = 6
R_LEFT_KIND, R_LEFT_PERIOD, R_OP, R_RIGHT_KIND, R_RIGHT_PERIOD, R_CONSTANT = range(RULE_WIDTH)
MAX_ENTRY_RULES, MAX_EXIT_RULES = 4, 2
ENTRY_OFFSET = HEADER_WIDTH
EXIT_OFFSET = HEADER_WIDTH + MAX_ENTRY_RULES * RULE_WIDTH
GENOME_WIDTH = HEADER_WIDTH + (MAX_ENTRY_RULES + MAX_EXIT_RULES) * RULE_WIDTH

# Columns of the metrics matrix returned by the batch kernel.
METRICS = (
    "net_pnl",
    "return_pct",
    "trades",
    "win_rate",
    "max_drawdown",
    "sharpe",
    "sortino",
    "profit_factor",
    "exposure",
    "avg_trade_return",
    "trade_t_stat",
    "trade_z",
    "bar_z",
)
(M_NET_PNL, M_RETURN_PCT, M_TRADES, M_WIN_RATE, M_MAX_DRAWDOWN, M_SHARPE, M_SORTINO, M_PROFIT_FACTOR,
 M_EXPOSURE, M_AVG_TRADE_RETURN, M_TRADE_T_STAT, M_TRADE_Z, M_BAR_Z) = range(len(METRICS))
N_METRICS = len(METRICS)
PROFIT_FACTOR_CAP = 100.0
# trade_t_stat is 0 when the per-trade returns' standard deviation is at most this fraction of their mean:
# they are then equal up to rounding (every exit at the stop or target level returns the same fraction of
# cash), and dividing by rounding noise would report a meaningless, enormous t-statistic.
EQUAL_RETURNS_TOLERANCE = 1e-9

# Columns of the trade list returned by the detail kernel, and exit reasons.
TRADE_COLUMNS = ("entry_bar", "exit_bar", "entry_price", "exit_price", "units", "pnl", "exit_reason")
T_ENTRY_BAR, T_EXIT_BAR, T_ENTRY_PRICE, T_EXIT_PRICE, T_UNITS, T_PNL, T_EXIT_REASON = range(len(TRADE_COLUMNS))
N_TRADE_COLUMNS = len(TRADE_COLUMNS)
EXIT_SIGNAL, EXIT_STOP, EXIT_TARGET, EXIT_TRAILING, EXIT_END = 0, 1, 2, 3, 4
EXIT_REASONS = {
    EXIT_SIGNAL: "signal",
    EXIT_STOP: "stop_loss",
    EXIT_TARGET: "take_profit",
    EXIT_TRAILING: "trailing_stop",
    EXIT_END: "end_of_data",
}
