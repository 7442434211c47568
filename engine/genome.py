"""Trading-strategy genomes: typed, validated models that encode to a fixed-width float64 row.

A genome goes long (or short) when all of its entry rules hold at a bar's close, and leaves when all
of its exit rules hold, or when the stop-loss, trailing stop or take-profit is hit; each of those three
is optional (0 turns it off). JSON form:

    {"direction": "long",
     "entry": [{"left": {"field": "close"}, "op": ">", "right": {"indicator": "sma", "period": 20}}],
     "exit": [], "stop_loss": 0.02, "take_profit": 0.04, "trailing_stop": 0.0,
     "size": 1.0, "leverage": 1.0}
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from numba import njit
from pydantic import ConfigDict, Field, field_validator

from engine import layout as L
from schema.numbers import StrictNumbers

PriceField = Literal["open", "high", "low", "close", "volume"]
IndicatorName = Literal["sma", "ema", "rsi", "atr", "bb_pctb", "macd_hist", "roc", "volume_sma"]
Operator = Literal[">", ">=", "<", "<=", "crosses_above", "crosses_below"]


class _Frozen(StrictNumbers):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriceOperand(_Frozen):
    field: PriceField

    def __str__(self) -> str:
        return self.field


class IndicatorOperand(_Frozen):
    indicator: IndicatorName
    period: int

    @field_validator("period")
    @classmethod
    def _period_in_range(cls, period: int) -> int:
        if not L.MIN_PERIOD <= period <= L.MAX_PERIOD:
            raise ValueError(f"indicator period must be between {L.MIN_PERIOD} and {L.MAX_PERIOD} bars, "
                             f"got {period}")
        return period

    def __str__(self) -> str:
        return f"{self.indicator}({self.period})"


class ConstantOperand(_Frozen):
    constant: float

    @field_validator("constant")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not np.isfinite(value):
            raise ValueError("a constant must be a finite number")
        return value

    def __str__(self) -> str:
        return f"{self.constant:g}"


Operand = PriceOperand | IndicatorOperand
RightOperand = PriceOperand | IndicatorOperand | ConstantOperand


class Rule(_Frozen):
    """``left op right`` at a bar's close; ``crosses_above`` means left > right now and <= the bar before."""

    left: Operand
    op: Operator
    right: RightOperand

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


def _fraction_check(name: str, value: float, low: float, high: float, *, zero_disables: bool,
                    meaning: str) -> float:
    """Bounds check with a message that says what the number means and guesses percent typos."""
    if zero_disables and value == 0:
        return value
    if not np.isfinite(value) or not (low < value <= high):
        hint = f" — did you mean {value / 100:g}?" if 1 < value <= 100 * high else ""
        off = " (0 turns it off)" if zero_disables else ""
        raise ValueError(f"{name} is {meaning}: 0.02 means 2 %. It must be above {low:g} and at most "
                         f"{high:g} ({high:.0%}){off}; got {value:g}{hint}")
    return value


class Genome(_Frozen):
    direction: Literal["long", "short"] = "long"
    entry: Annotated[list[Rule], Field(min_length=1, max_length=L.MAX_ENTRY_RULES)]
    exit: Annotated[list[Rule], Field(default_factory=list, max_length=L.MAX_EXIT_RULES)]
    stop_loss: float = Field(description="fraction of the fill price, e.g. 0.02 = 2 %; 0 or null = no stop")
    take_profit: float = Field(0.0, description="fraction of the fill price; 0 = no take-profit")
    trailing_stop: float = Field(0.0, description="fraction below the best price since entry; 0 = off")
    size: float = Field(1.0, description="fraction of cash committed per trade (before leverage)")
    leverage: float = Field(1.0, description="notional multiple of the committed cash, 1 to 10")

    @field_validator("stop_loss", mode="before")
    @classmethod
    def _null_stop(cls, v):
        """``null`` reads as 0: "no stop" is a deliberate choice, so it is spelled out, never a default."""
        return 0.0 if v is None else v

    @field_validator("stop_loss")
    @classmethod
    def _stop(cls, v: float) -> float:
        return _fraction_check("stop_loss", v, 0, 0.5, zero_disables=True,
                               meaning="the loss, as a fraction of the entry price, that closes the trade")

    @field_validator("take_profit")
    @classmethod
    def _target(cls, v: float) -> float:
        return _fraction_check("take_profit", v, 0, 5.0, zero_disables=True,
                               meaning="the gain, as a fraction of the entry price, that closes the trade")

    @field_validator("trailing_stop")
    @classmethod
    def _trail(cls, v: float) -> float:
        return _fraction_check("trailing_stop", v, 0, 0.5, zero_disables=True,
                               meaning="the pull-back from the best price since entry that closes the trade")

    @field_validator("size")
    @classmethod
    def _size(cls, v: float) -> float:
        return _fraction_check("size", v, 0, 1.0, zero_disables=False,
                               meaning="the fraction of available cash put into each trade")

    @field_validator("leverage")
    @classmethod
    def _leverage(cls, v: float) -> float:
        if not np.isfinite(v) or not 1.0 <= v <= 10.0:
            raise ValueError(f"leverage multiplies the position's notional value; it must be between 1 "
                             f"(no leverage) and 10, got {v:g}")
        return v

    def describe(self) -> str:
        """One readable line, e.g. 'LONG when close > sma(20) AND rsi(14) < 70; exit ...; stop 2%'."""
        parts = [f"{self.direction.upper()} when " + " AND ".join(map(str, self.entry))]
        if self.exit:
            parts.append("exit when " + " AND ".join(map(str, self.exit)))
        risk = [f"stop {self.stop_loss:.2%}" if self.stop_loss else "no stop"]
        if self.take_profit:
            risk.append(f"target {self.take_profit:.2%}")
        if self.trailing_stop:
            risk.append(f"trailing {self.trailing_stop:.2%}")
        risk.append(f"size {self.size:.0%}")
        if self.leverage != 1.0:
            risk.append(f"leverage {self.leverage:g}x")
        return "; ".join([*parts, ", ".join(risk)])


def _encode_operand(operand) -> tuple[float, float, float]:
    """(kind, period, constant) of one operand."""
    if isinstance(operand, PriceOperand):
        return float(L.PRICE_FIELDS[operand.field]), 0.0, 0.0
    if isinstance(operand, IndicatorOperand):
        return float(L.INDICATORS[operand.indicator]), float(operand.period), 0.0
    return float(L.CONSTANT), 0.0, float(operand.constant)


def _decode_operand(kind: int, period: int, constant: float):
    name = L.KIND_NAMES[kind]
    if kind == L.CONSTANT:
        return ConstantOperand(constant=constant)
    if name in L.PRICE_FIELDS:
        return PriceOperand(field=name)
    return IndicatorOperand(indicator=name, period=period)


def encode(genome: Genome) -> np.ndarray:
    """Genome -> float64 row of width ``layout.GENOME_WIDTH``."""
    row = np.zeros(L.GENOME_WIDTH)
    row[L.N_ENTRY], row[L.N_EXIT] = len(genome.entry), len(genome.exit)
    row[L.DIRECTION] = L.LONG if genome.direction == "long" else L.SHORT
    row[L.SIZE], row[L.LEVERAGE] = genome.size, genome.leverage
    row[L.STOP_LOSS], row[L.TAKE_PROFIT], row[L.TRAILING_STOP] = (
        genome.stop_loss, genome.take_profit, genome.trailing_stop)
    slots = [(L.ENTRY_OFFSET, genome.entry), (L.EXIT_OFFSET, genome.exit)]
    for offset, rules in slots:
        for k, rule in enumerate(rules):
            base = offset + k * L.RULE_WIDTH
            left_kind, left_period, _ = _encode_operand(rule.left)
            right_kind, right_period, constant = _encode_operand(rule.right)
            row[base:base + L.RULE_WIDTH] = (left_kind, left_period, L.OPERATORS[rule.op], right_kind,
                                             right_period, constant)
    return row


def decode(row: np.ndarray) -> Genome:
    """Float64 row -> validated Genome (raises if the row breaks a bound)."""
    def rules(offset: int, count: int) -> list[Rule]:
        out = []
        for k in range(count):
            lk, lp, op, rk, rp, const = row[offset + k * L.RULE_WIDTH: offset + (k + 1) * L.RULE_WIDTH]
            out.append(Rule(left=_decode_operand(int(lk), int(lp), 0.0), op=L.OPERATOR_NAMES[int(op)],
                            right=_decode_operand(int(rk), int(rp), float(const))))
        return out

    return Genome(
        direction="long" if row[L.DIRECTION] > 0 else "short",
        entry=rules(L.ENTRY_OFFSET, int(row[L.N_ENTRY])),
        exit=rules(L.EXIT_OFFSET, int(row[L.N_EXIT])),
        stop_loss=float(row[L.STOP_LOSS]),
        take_profit=float(row[L.TAKE_PROFIT]),
        trailing_stop=float(row[L.TRAILING_STOP]),
        size=float(row[L.SIZE]),
        leverage=float(row[L.LEVERAGE]),
    )



_KEY_SEED = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True, inline="always")
def _mix(x):
    """SplitMix64's finaliser: a bijection on uint64 that spreads every input bit over the whole word."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, nogil=True)
def _keys_nb(rows, words):
    """``genome_keys`` of float64 ``rows`` whose uint64 view is ``words``: each hash chains its words in order."""
    n_rules = L.MAX_ENTRY_RULES + L.MAX_EXIT_RULES
    keys = np.empty(rows.shape[0], np.uint64)
    for g in range(rows.shape[0]):
        entry = np.uint64(0)
        exit_ = np.uint64(0)
        for r in range(n_rules):
            if r < L.MAX_ENTRY_RULES:
                if not r < rows[g, L.N_ENTRY]:
                    continue
            elif not r - L.MAX_ENTRY_RULES < rows[g, L.N_EXIT]:
                continue
            h = _KEY_SEED
            first = L.ENTRY_OFFSET + r * L.RULE_WIDTH
            for j in range(first, first + L.RULE_WIDTH):
                h = _mix(h ^ words[g, j])
            if r < L.MAX_ENTRY_RULES:
                entry += h
            else:
                exit_ += h
        h = _KEY_SEED
        for j in range(L.HEADER_WIDTH):
            h = _mix(h ^ words[g, j])
        keys[g] = _mix(_mix(h ^ entry) ^ exit_)
    return keys


def genome_keys(population: np.ndarray) -> np.ndarray:
    """One 64-bit identity per encoded row: the key of the search's duplicate elimination and of the count of
    distinct strategies a search tried.

    Two rows that are the same strategy get the same key: entry rules (an AND) and exit rules each enter as a sum
    (mod 2^64) of per-rule hashes, so their order does not matter, unused rule slots are left out, and -0.0 reads as
    0.0. The key chains the header's words, then the entry sum, then the exit sum, through SplitMix64's finaliser.
    Compiled: the coordinator keys every island it breeds, and numpy's whole-array passes took half its time there.
    """
    rows = np.ascontiguousarray(np.atleast_2d(np.asarray(population, dtype=np.float64)) + 0.0)
    return _keys_nb(rows, rows.view(np.uint64))
