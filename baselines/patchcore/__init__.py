"""PatchCore: a coreset memory bank of locally aggregated patch features (Roth et al., 2021)."""
