"""Hydra configs of foads (installed as the package data `foads.conf`)."""
