"""Candle feeds from exchanges: downloaders that write the CSV files ``engine.candles`` loads. HTTP and the standard
library only (no numpy), so they work from the base install; the pure engine never touches the network."""
