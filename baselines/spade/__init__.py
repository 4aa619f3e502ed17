"""SPADE: image-level kNN, then pixel-level nearest neighbours (Cohen and Hoshen, 2020)."""
