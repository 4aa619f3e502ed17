"""Building blocks shared by every method: Gaussian statistics, nearest-neighbour search,
anomaly-map smoothing."""
