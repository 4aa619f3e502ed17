"""PaDiM: one Gaussian per feature-map position (Defard et al., 2020)."""
