"""What foads can run, read from its configs: one place, so that no list is kept by hand.

A method is a config `conf/method/<name>.yaml` (with its `_target_`), a dataset a config
`conf/dataset/<name>.yaml`; adding one adds it everywhere (sweeps take `method=glob(*)`,
the bench and the tests ask here). A user's own folders on Hydra's search path
(`hydra.searchpath=[file://<folder>/conf]`) count as well (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

import yaml

# The configs as installed (the repository's conf/ in an editable install). An absolute path:
# Hydra resolves a relative one against the calling module.
CONF_DIR = Path(str(files("foads.conf")))


def options(group: str, search_path: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """The names of the configs in `group` (e.g. 'method'), in foads' own configs and in
    the extra config folders `search_path` (folders, or Hydra's `file://<folder>`)."""
    roots = [CONF_DIR, *(Path(str(p).removeprefix("file://")) for p in search_path)]
    names = {p.stem for root in roots for p in (root / group).glob("*.yaml")}
    return tuple(sorted(names))


def methods(search_path: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """Every method config: `python -m foads.run method=<name>`."""
    return options("method", search_path)


def datasets(search_path: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """Every dataset config: `python -m foads.run dataset=<name>`."""
    return options("dataset", search_path)


def method_config_file(name: str, search_path: Iterable[str | Path] = ()) -> Path:
    roots = [CONF_DIR, *(Path(str(p).removeprefix("file://")) for p in search_path)]
    for root in roots:
        if (root / "method" / f"{name}.yaml").is_file():
            return root / "method" / f"{name}.yaml"
    raise KeyError(f"method={name}: no conf/method/{name}.yaml; known: {', '.join(methods())}")


def distinct_methods(search_path: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """One config per method: those that do not build on another method config (a
    `defaults` list, as `kng_paper` builds on `kng` with the paper's settings)."""
    return tuple(
        name
        for name in methods(search_path)
        if not (yaml.safe_load(method_config_file(name, search_path).read_text()) or {}).get(
            "defaults"
        )
    )
