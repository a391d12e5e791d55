"""The runtime: chain spec, workers, control between bursts, the report."""
