"""The one schema of fine-tune hyper-parameters.

Every surface derives from `HyperParameters`: the library's keyword arguments and
validation, the `zoo finetune` flags (local and `--server`), the server's CreateJob check,
and the zoo.v1 `HyperParameters` message (whose fields a test compares with these, name
and type). Each field carries its range, its help line and whether it applies to image
bases only, so a new hyper-parameter is one entry here (and one proto field).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import InvalidInputError

SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit


@dataclass(frozen=True)
class Rule:
    """What one hyper-parameter accepts, and how the CLI names and explains it."""

    kind: type  # int, float or bool
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # (low, ...] instead of [low, ...]
    high_open: bool = False
    optional: bool = False  # None means "not set" (e.g. the base's own image size)
    image_only: bool = False
    flag: str | None = None  # the CLI flag, when it is not --the-name-with-dashes
    main: bool = False  # one of the few most people set: shown first where space is short

    def bounds(self) -> str:
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"{left}{self._number(self.low)}, {self._number(self.high)}{right}"

    def _number(self, value: float | None) -> str:
        return str(int(value)) if self.kind is int and value is not None else f"{value:g}"


def _hp(default: Any, kind: type, help: str, **rule: Any) -> Any:
    return field(default=default, metadata={"rule": Rule(kind, help, **rule)})


@dataclass(frozen=True)
class HyperParameters:
    """How a fine-tune trains. Defaults are the recipe's; `validate` checks every range."""

    epochs: int = _hp(10, int, "epochs per phase", low=1, high=10_000, main=True)
    fine_tune_layers: int = _hp(
        0, int, "phase 2: unfreeze the top K layers of the base (text: its top K transformer "
        "layers); 0: no phase 2", low=0, high=10_000, main=True)
    fine_tune_fraction: float | None = _hp(
        None, float, "phase 2: unfreeze the top fraction F of the base instead", low=0, high=1,
        low_open=True, optional=True, image_only=True)
    fine_tune_lr_factor: float = _hp(
        0.1, float, "phase 2's learning rate as a fraction of --learning-rate", low=0, high=1,
        low_open=True)
    batch_size: int = _hp(32, int, "examples per training step", low=1, high=4096, main=True)
    image_size: int | None = _hp(
        None, int, "train at S x S pixels (default: the base's own size)", low=32, high=2048,
        optional=True, image_only=True)
    learning_rate: float = _hp(1e-3, float, "the optimizer's learning rate", low=0, high=10,
                               low_open=True, main=True)
    dropout: float = _hp(0.0, float, "dropout on the features before the new head (the "
                         "fitted head uses its quadratic approximation, an adaptive L2; phase "
                         "2 trains with it)", low=0, high=1, high_open=True)
    augment: bool = _hp(False, bool, "random flip, rotation, zoom and contrast (slower: no "
                        "feature cache)", image_only=True, main=True)
    label_smoothing: float = _hp(0.0, float, "label smoothing of the loss", low=0, high=1,
                                 high_open=True)
    class_weights: bool = _hp(False, bool, "weight classes by inverse frequency (imbalanced "
                              "data)")
    patience: int = _hp(3, int, "early stopping patience on val_loss; 0 turns it off", low=0,
                        high=10_000)
    val_split: float = _hp(0.2, float, "validation share when no validation data is given",
                           low=0, high=1, high_open=True)
    seed: int = _hp(0, int, "seed of the split, shuffles and initialisation", low=0,
                    high=SEED_MAX)
    fit_head: bool = _hp(True, bool, "train the phase-1 head epoch by epoch (Adam, early "
                         "stopping) instead of fitting it to its optimum on the cached features "
                         "(L-BFGS, L2 chosen on the validation split)", flag="--no-fit-head")
    cache_features: bool = _hp(True, bool, "run the frozen base on every epoch instead of "
                               "caching its features (slow; for comparison)", image_only=True,
                               flag="--no-feature-cache")

    @classmethod
    def from_kwargs(cls, **values: Any) -> HyperParameters:
        """Hyper-parameters from keyword arguments; unknown names and bad values raise
        InvalidInputError naming the field."""
        names = field_names()
        unknown = [k for k in values if k not in names]
        if unknown:
            hints = [difflib.get_close_matches(k, names, n=1) for k in unknown]
            said = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                             for k, h in zip(unknown, hints, strict=True))
            raise InvalidInputError(f"unknown hyper-parameter {said}; known: {', '.join(names)}")
        given: dict[str, Any] = {}
        for k, v in values.items():
            if v is None and not rule(k).optional:
                continue  # not set: the default
            check(k, v)
            given[k] = v if v is None else rule(k).kind(v)
        return cls(**given)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            check(f.name, getattr(self, f.name))

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the defaults."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}

    def check_task(self, image: bool, model: str) -> None:
        """Refuse image-only settings for a text base, naming them as the CLI spells them."""
        if image:
            return
        wrong = [flag_of(name) for name in self.changed() if rule(name).image_only]
        if wrong:
            one = len(wrong) == 1
            raise InvalidInputError(
                f"{', '.join(wrong)} {'applies' if one else 'apply'} to image bases; {model} is "
                f"a text model: drop {'it' if one else 'them'} (--fine-tune-layers K unfreezes "
                "the top K transformer layers)")

    @property
    def phase2(self) -> bool:
        return self.fine_tune_layers > 0 or self.fine_tune_fraction is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(HyperParameters)]


def rule(name: str) -> Rule:
    rules: dict[str, Rule] = {f.name: f.metadata["rule"]
                              for f in dataclasses.fields(HyperParameters)}
    return rules[name]


def default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(HyperParameters) if f.name == name)


def flag_of(name: str) -> str:
    return rule(name).flag or "--" + name.replace("_", "-")


def image_only() -> tuple[str, ...]:
    return tuple(name for name in field_names() if rule(name).image_only)


def schema() -> list[dict[str, Any]]:
    """Every hyper-parameter as JSON-ready data (name, kind, default, range, help, flag), in
    declaration order: what a form needs to offer them (the web page builds its own so)."""
    rows = []
    for name in field_names():
        r = rule(name)
        rows.append({
            "name": name, "flag": flag_of(name), "kind": r.kind.__name__,
            "default": default(name), "help": r.help, "low": r.low, "high": r.high,
            "low_open": r.low_open, "high_open": r.high_open,
            "bounds": None if r.kind is bool else r.bounds(), "optional": r.optional,
            "image_only": r.image_only, "main": r.main})
    return rows


def check(name: str, value: Any) -> None:
    """One value against its rule: its type (no bool for a number, no fraction for an
    integer), finite, in range."""
    r = rule(name)
    if value is None:
        if r.optional:
            return
        raise InvalidInputError(f"{name} must be set")
    if r.kind is bool:
        if not isinstance(value, bool):
            raise InvalidInputError(f"{name} must be true or false, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    if r.kind is int and (isinstance(value, float) and not value.is_integer()):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    low_ok = r.low is None or (value > r.low if r.low_open else value >= r.low)
    high_ok = r.high is None or (value < r.high if r.high_open else value <= r.high)
    if not (low_ok and high_ok):
        raise InvalidInputError(f"{name} must be in {r.bounds()}, got {value!r}")


__all__ = ["SEED_MAX", "HyperParameters", "Rule", "check", "default", "field_names", "flag_of",
           "image_only", "rule", "schema"]
