"""Pure compute: data, indicators, genomes, the backtest kernels, the search and its validation statistics."""

from engine.numba_cache import use_cache_of_these_sources

use_cache_of_these_sources()  # before any engine module defines a cached function
