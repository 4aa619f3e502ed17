"""Method options in groups: `method.acceptance`, `method.covariance`, `method.growth`.

A method's config keeps its own sizes at the top (num_nodes, feature_dim, ...) and groups the
rest by what they decide: what the online update learns from (`acceptance`, the same keys
for every method, which the `gate` config group sets), how a Gaussian is regularised
(`covariance`), and how a graph may grow (`growth`). The keys were flat before; a config or
override that still uses a flat key is refused with its new name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from types import UnionType
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

ACCEPTANCE_KEYS = (
    "image_gate",
    "gate_quantile",
    "gate_margin",
    "gate_folds",
    "gate_window",
    "patch_gate",
    "patch_gate_quantile",
    "patch_gate_margin",
    "patch_gate_k",
    "reject_dilation",
    # K-NG's own patch rules
    "threshold_type",
    "threshold_scale",
    "recurrence_window",
    "recurrence_radius",
    "recurrence_images",
    "radius_window",
)
# Former flat key -> its key now, under `method.`.
RENAMED = {
    **{k: f"acceptance.{k}" for k in ACCEPTANCE_KEYS},
    "covariance_prior": "covariance.prior",
    "covariance_shrinkage": "covariance.shrinkage",
    "eps": "covariance.eps",
    "max_nodes": "growth.max_nodes",
    "grow_scale": "growth.scale",
    "grow_min_count": "growth.min_count",
    "remove_after": "growth.remove_after",
}


class RenamedOptionError(TypeError):
    """A flat method option of an older config: says what it is called now."""


def renamed_message(keys) -> str:
    moves = ", ".join(f"method.{k} -> method.{RENAMED[k]}" for k in keys)
    return f"method options were grouped; use the new names: {moves} (docs/kng.md)"


def refuse_renamed(owner: str, extra: Mapping[str, Any]) -> None:
    """Raise for keyword arguments a method does not take: a renamed flat key names its new
    key; anything else is an unknown option of `owner`."""
    if not extra:
        return
    old = [k for k in extra if k in RENAMED]
    if old:
        raise RenamedOptionError(renamed_message(old))
    raise TypeError(f"{owner}: unknown option(s) {', '.join(f'method.{k}' for k in extra)}")


def renamed_overrides(overrides: list[str]) -> list[str]:
    """The flat `method.<key>` keys among command-line overrides (`method.eps=0.1`,
    `+method.eps=0.1`, `~method.eps`)."""
    keys = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key.startswith("method.") and key.removeprefix("method.") in RENAMED:
            keys.append(key.removeprefix("method."))
    return keys


def options_of(kind: type[T], given: Any, group: str) -> T:
    """`given` (None, a mapping from the config, or already a `kind`) as a `kind`; an unknown
    key is named with its group (`method.covariance.shrinkge`)."""
    if given is None:
        return kind()
    if isinstance(given, kind):
        return given
    known = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    unknown = [k for k in given if k not in known]
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(f'method.{group}.{k}' for k in unknown)}; "
            f"{group} takes {', '.join(sorted(known))}"
        )
    check_types(get_type_hints(kind), given, f"method.{group}.")
    return kind(**dict(given))


_TYPE_NAMES = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}


def check_types(hints: Mapping[str, Any], values: Mapping[str, Any], prefix: str) -> None:
    """Refuse a value whose type is not its option's annotation (float | int | str | bool,
    optionally `| None`), naming the key: `method.acceptance.gate_quantile must be a number,
    got 'half' (str)`. Options annotated otherwise are not checked here."""
    for key, value in values.items():
        allowed = _simple_types(hints.get(key))
        if allowed is None or any(_is(value, t) for t in allowed):
            continue
        names = " or ".join("null" if t is type(None) else _TYPE_NAMES[t] for t in allowed)
        raise TypeError(f"{prefix}{key} must be {names}, got {value!r} ({type(value).__name__})")


def _simple_types(hint: Any) -> tuple[type, ...] | None:
    args = get_args(hint) if isinstance(hint, UnionType) or get_origin(hint) is Union else (hint,)
    simple = (*_TYPE_NAMES, type(None))
    return tuple(args) if args and all(a in simple for a in args) else None


def _is(value: Any, kind: type) -> bool:
    if kind is float:  # an integer is a number; true/false is not
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def refuse_unknown(owner: str, takes: set[str], options: Mapping[str, Any]) -> None:
    """Refuse the keys of a method's config that its constructor does not take (`_target_`
    and other Hydra keys aside): a renamed flat key names its new key."""
    extra = {k: v for k, v in options.items() if k not in takes and not k.startswith("_")}
    refuse_renamed(owner, extra)


@dataclass(frozen=True)
class Covariance:
    """A Gaussian's covariance: (1 - shrinkage) (S + prior G) / (n - 1 + prior)
    + shrinkage G + eps I, with S the scatter of its n members and G the shots' covariance."""

    prior: float = 0.0  # pseudo-observations of G, fading as a node fills (0: none)
    shrinkage: float = 0.0  # the share of G that never fades
    eps: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 <= self.shrinkage <= 1.0:
            raise ValueError(
                f"method.covariance.shrinkage must lie in [0, 1], got {self.shrinkage}"
            )
        if self.prior < 0:
            raise ValueError(f"method.covariance.prior must be >= 0, got {self.prior}")
        if self.eps < 0:
            raise ValueError(f"method.covariance.eps must be >= 0, got {self.eps}")


def as_dict(options) -> dict:
    return asdict(options)
