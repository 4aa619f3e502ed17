"""Comparison methods under the FOADS protocol: PaDiM, SPADE, PatchCore (and DRAEM later).

Each is one folder (`torch_model.py`, `lightning_model.py`, README) and one config in
`conf/method/`, built from the shared components in `foads.components` and `foads.features`.
"""
