"""foads: few-shot online anomaly detection and segmentation (K-NG and a streaming benchmark)."""

__version__ = "0.1.0"
