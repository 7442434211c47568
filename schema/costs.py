"""What trading costs: one definition for the job spec on the wire, the service's defaults and the engine's backtest.

Defaults are for a Coinbase Advanced Trade retail account trading BTC-USD with market orders (docs/backtest.md
explains the choice); override them for your own fee tier.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from schema.numbers import StrictNumbers


class Costs(StrictNumbers):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fee_bps: float = Field(60.0, ge=0, le=1000, description="fee per side, basis points (60 = 0.60 %)")
    slippage_bps: float = Field(5.0, ge=0, le=1000, description="adverse slippage per fill, basis points")
    initial_cash: float = Field(10_000.0, ge=1, le=1e12,
                                description="starting cash, USD (1 to 10^12; bounded so every metric stays finite)")

    @property
    def fee(self) -> float:
        return self.fee_bps / 10_000

    @property
    def slippage(self) -> float:
        return self.slippage_bps / 10_000
