"""The job settings that shape the search itself; shared by the engine's settings and the API."""

from __future__ import annotations

from pydantic import Field

from schema.numbers import StrictNumbers


class SearchSettings(StrictNumbers):
    """How the genetic search is organised (``engine.ga``). Part of a job's identity: a different value gives a
    different result, but the same value gives the same result on any cluster."""

    # 8, not 4, since the default population is 1,000 (islands of 125): on the planted candles 8 islands found the edge
    # in 10 seeds of 10 where 4 found it in 9, 16 in 9 (docs/research.md)
    islands: int = Field(8, ge=1, le=64,
                         description="sub-populations that breed apart and swap their best genomes; a population "
                                     "under 8 per island runs fewer islands")
    hall_of_fame: int = Field(10, ge=1, le=100,
                              description="best distinct strategies a result keeps, ranked on training fitness")
