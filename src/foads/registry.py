"""What foads can run, read from its configs: one place, so that no list is kept by hand.

A method is a config `conf/method/<name>.yaml` (with its `_target_`), a dataset a config
`conf/dataset/<name>.yaml`; adding one adds it everywhere (sweeps take `method=glob(*)`,
the bench and the tests ask here).

A user's own configs live in folders of their own, named by `FOADS_CONFIG_PATH=<folder>/conf`
(several joined by ':'); they join Hydra's config search path after foads' own through a
search-path plugin, registered when this module is imported (docs/extending.md). Hydra's
`hydra.searchpath=[file://<folder>/conf]` works for a single run too, but a sweep's
`glob(*)` lists a group's options without command-line overrides, so only the plugin's
folders reach it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

import yaml
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

# The configs as installed (the repository's conf/ in an editable install). An absolute path:
# Hydra resolves a relative one against the calling module.
CONF_DIR = Path(str(files("foads.conf")))
ENV = "FOADS_CONFIG_PATH"


def user_config_dirs() -> list[Path]:
    """The folders in FOADS_CONFIG_PATH, in order; one that is not a folder is an error."""
    dirs = [Path(p).expanduser().resolve() for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    for folder in dirs:
        if not folder.is_dir():
            raise NotADirectoryError(f"{ENV}: {folder} is not a folder of configs")
    return dirs


class FoadsConfigPath(SearchPathPlugin):
    """Appends the FOADS_CONFIG_PATH folders to Hydra's config search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for folder in user_config_dirs():
            search_path.append(provider="foads-user", path=f"file://{folder}")


Plugins.instance().register(FoadsConfigPath)


def _roots(search_path: Iterable[str | Path]) -> list[Path]:
    extra = [Path(str(p).removeprefix("file://")) for p in search_path]
    return [CONF_DIR, *user_config_dirs(), *extra]


def options(group: str, search_path: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """The names of the configs in `group` (e.g. 'method'): foads' own, the FOADS_CONFIG_PATH
    folders' and those of the extra config folders `search_path` (folders, or Hydra's
    `file://<folder>`)."""
    roots = _roots(search_path)
    names = {p.stem for root in roots for p in (root / group).glob("*.yaml")}
    return tuple(sorted(names))


def methods(search_path: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """Every method config: `python -m foads.run method=<name>`."""
    return options("method", search_path)


def datasets(search_path: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """Every dataset config: `python -m foads.run dataset=<name>`."""
    return options("dataset", search_path)


def method_config_file(name: str, search_path: Iterable[str | Path] = ()) -> Path:
    for root in _roots(search_path):
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
