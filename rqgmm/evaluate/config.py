"""What one ``rqgmm evaluate`` run depends on: options from flags or a TOML file, validated once.

Every key of the TOML file is the long flag without its dashes (``codebook-size``
or ``codebook_size``); a flag given on the command line wins over the file.

Importable without torch: every option is checked from the light name lists of
:mod:`rqgmm.evaluate.names` and :mod:`rqgmm.tokenizers.names`, so a refused value answers at once;
the training settings (:class:`rqgmm.ctr.TrainConfig`) are imported only once the options pass.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, ClassVar

from rqgmm.errors import InputError
from rqgmm.evaluate.names import (BACKBONE_NAMES, BALANCED_METHODS, DEDUP, EPSILON, QUICK_MAX_EPOCHS, QUICK_SEEDS,
                                  SEQUENCES, TASKS, TOKENIZE, VARIANTS)
from rqgmm.ids.shape import default_shape
from rqgmm.runtime.constraints import ANY, Choices, Integer, Real, Rule, validate_params
from rqgmm.runtime.torch_build import refuse_absent_device
from rqgmm.tokenizers.names import BUILTIN_METHODS

if TYPE_CHECKING:
    from rqgmm.ctr import TrainConfig

LIST_KEYS = ("categorical", "bag", "numeric", "embedding", "methods", "backbones", "variants")
#: The ID shape's options: integers, None by default (the catalogue's default shape).
SHAPE_KEYS = ("levels", "codebook_size")


def train_config(quick: bool, device: str) -> "TrainConfig":
    """The training settings of a run: the defaults, or under ``quick`` at most QUICK_MAX_EPOCHS epochs with
    patience 1; imports the CTR stack (torch), so it runs only once the options are checked."""
    from rqgmm.ctr import TrainConfig

    return TrainConfig(device=device, **(dict(max_epochs=QUICK_MAX_EPOCHS, patience=1) if quick else {}))


def flag(name: str) -> str:
    """The command-line flag of an option: ``codebook_size`` -> ``--codebook-size``."""
    return f"--{name.replace('_', '-')}"


def _need_embedding(value) -> None:
    if not value:
        raise InputError("--embedding needs at least one column of the items table")


@dataclass(frozen=True)
class EvaluateConfig:
    """The options of ``rqgmm evaluate`` (see DESIGN.md); column names are the user's.

    ``time`` is the timestamp column: when it is the default and absent, the
    split is random (seeded); ``tokenize`` is ``fused`` (each modality
    L2-normalised, then concatenated: one ID stack) or ``per-modality`` (one ID
    stack per embedding column). ``train`` left None becomes :func:`train_config`'s
    once the other options are checked.
    """

    user: str = "user_id"
    item: str = "item_id"
    label: str = "label"
    time: str = "timestamp"
    categorical: tuple[str, ...] = ()
    bag: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    embedding: tuple[str, ...] = ("embedding",)
    methods: tuple[str, ...] = ("rqgmm", "rqkmeans")
    levels: int | tuple[int, ...] | None = None
    codebook_size: int | tuple[int, ...] | None = None
    backbones: tuple[str, ...] = BACKBONE_NAMES
    variants: tuple[str, ...] = VARIANTS
    seeds: int = 3
    quick: bool = False
    device: str = "cpu"
    tokenize: str = "fused"
    embedding_dim: int = 16
    time_given: bool = False
    task: str = "ctr"
    sequence: str = "positives"
    sample_users: float = 1.0
    dedup: str = "generated"
    epsilon: float = EPSILON
    train: "TrainConfig | None" = None

    #: What each option must be (:func:`~rqgmm.runtime.validation.validate_params`), in the order checked.
    _parameter_constraints: ClassVar[dict] = {
        "methods": Choices(lambda: tokenizer_names()), "backbones": Choices(tuple(sorted(BACKBONE_NAMES))),
        "variants": Choices(VARIANTS), "tokenize": Choices(TOKENIZE, single=True), "task": Choices(TASKS, single=True),
        "sequence": Choices(SEQUENCES, single=True), "dedup": Choices(DEDUP, single=True),
        "epsilon": Real(0.0, 1.0), "levels": Rule(lambda v: _check_shape("levels", v)),
        "codebook_size": Rule(lambda v: _check_shape("codebook_size", v)),
        "seeds": Integer(1), "embedding": Rule(_need_embedding), "sample_users": Real(0.0, 1.0, open_low=True),
        **dict.fromkeys(("user", "item", "label", "time", "categorical", "bag", "numeric", "quick", "device",
                         "embedding_dim", "time_given", "train"), ANY),
    }

    def __post_init__(self) -> None:
        validate_params(self, name=flag)
        if self.sweep and self.task != "ctr":
            raise InputError(f"a shape sweep (a list in --levels or --codebook-size) runs with --task ctr, got "
                             f"--task {self.task}; pass one shape for retrieval")
        refuse_absent_device(self.device)  # a GPU this torch build cannot have, refused before torch loads
        if self.train is None:
            object.__setattr__(self, "train", train_config(self.quick, self.device))

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    @property
    def shape_given(self) -> bool:
        """Whether both ``levels`` and ``codebook_size`` were given (else the catalogue's default fills them)."""
        return self.levels is not None and self.codebook_size is not None

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Every (levels, codebook size) of the sweep, levels first (the shape complete: see :meth:`with_shape`)."""
        return [(L, K) for L in _tuple(self.levels) for K in _tuple(self.codebook_size)]

    @property
    def sweep(self) -> bool:
        """Whether several ID shapes are compared (a list in ``levels`` or ``codebook_size``)."""
        return isinstance(self.levels, tuple) or isinstance(self.codebook_size, tuple)

    def with_shape(self, n_items: int) -> "EvaluateConfig":
        """This config with the ID shape complete: what is not given comes from
        :func:`rqgmm.ids.shape.default_shape` of the ``n_items`` items."""
        if self.shape_given:
            return self
        levels, codebook_size = default_shape(n_items)
        return replace(self, levels=self.levels or levels, codebook_size=self.codebook_size or codebook_size)


def _tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _check_shape(name: str, value) -> None:
    """One integer >= 1 (or None: the default), or a list of distinct integers >= 2 (a sweep)."""
    if value is None or not isinstance(value, tuple):
        Integer(1, optional=True).check(flag(name), value)
        return
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in value):
        raise InputError(f"{flag(name)} lists {','.join(map(str, value))}; a sweep takes whole numbers >= 2, "
                         "e.g. 2,3")
    twice = sorted({v for v in value if value.count(v) > 1})
    if twice:
        raise InputError(f"{flag(name)} lists {twice[0]} twice; name each shape once")


def _shape_value(value, key: str):
    """A levels/codebook-size value: one int, or a tuple of ints from "2,3" or a TOML list (a sweep)."""
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    numbers = []
    for part in parts:
        if isinstance(part, (bool, float)):  # TOML true or 2.7: never read as 1 or 2
            raise InputError(f"{key} must be an integer or a list of integers, got {value!r}")
        try:
            numbers.append(int(part.strip()) if isinstance(part, str) else int(part))
        except (TypeError, ValueError):
            raise InputError(f"{key} must be an integer or a list of integers, got {value!r}") from None
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def defaults() -> dict:
    """Every option's default, read from the dataclass's fields (nothing is constructed or validated)."""
    return {f.name: f.default for f in fields(EvaluateConfig)}


def method_names() -> list[str]:
    """Every registered tokenizer method, sorted, read without importing a tokenizer: a method that other code
    registers (:func:`rqgmm.tokenizers.base.register`) exists only once the registry module is loaded."""
    registry = sys.modules.get("rqgmm.tokenizers.base")
    return registry.methods() if registry is not None else sorted(BUILTIN_METHODS)


def tokenizer_names() -> list[str]:
    """Every method, and ``METHOD+balanced`` for the methods with balanced codes (``balance`` parameter)."""
    registry = sys.modules.get("rqgmm.tokenizers.base")
    names = method_names()
    balanced = [m for m in names if m in BALANCED_METHODS or (
        m not in BUILTIN_METHODS and "balance" in registry.tokenizer_class(m)._get_param_names())]
    return [*names, *(f"{m}+balanced" for m in balanced)]


def _as_list(value, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InputError(f"{key} must be a comma-separated string or a list of strings, got {value!r}")


def _coerce(key: str, value):
    """A TOML or flag value in the type of its field."""
    if key in LIST_KEYS:
        return _as_list(value, key)
    default = defaults()[key]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InputError(f"{key} must be true or false, got {value!r}")
        return value
    if key in SHAPE_KEYS:
        return _shape_value(value, key)
    if isinstance(default, float):
        if isinstance(value, bool):
            raise InputError(f"{key} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"{key} must be a number, got {value!r}") from None
    if isinstance(default, int):
        if isinstance(value, (bool, float)):  # TOML true or 2.7: never read as 1 or 2
            raise InputError(f"{key} must be an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InputError(f"{key} must be an integer, got {value!r}") from None
    if not isinstance(value, str):
        raise InputError(f"{key} must be a string, got {value!r}")
    return value


OPTION_KEYS = tuple(f.name for f in fields(EvaluateConfig) if f.name not in ("train", "time_given"))


def read_toml(path: str) -> dict:
    """The options of a TOML file, keys normalised to field names; unknown keys refused."""
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML ({exc}); fix the file") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 by definition; a Latin-1 or UTF-16 file lands here
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save the TOML file "
                         "as UTF-8") from None
    options = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in OPTION_KEYS:
            raise InputError(f"unknown key {key!r} in {path}; valid keys: {', '.join(OPTION_KEYS)}")
        options[name] = value
    return options


def config_from(options: dict) -> EvaluateConfig:
    """An EvaluateConfig from option values (TOML and flags merged), validated."""
    values = {k: _coerce(k, v) for k, v in options.items() if v is not None}
    values["time_given"] = "time" in values
    if values.get("methods") == ("all",):  # every tokenizer of the registry: the paper's table on the user's log
        values["methods"] = tuple(method_names())
    if "seeds" not in values and values.get("quick"):
        values["seeds"] = QUICK_SEEDS
    return EvaluateConfig(**values)


def config_from_args(args: argparse.Namespace) -> EvaluateConfig:
    """The config of ``rqgmm evaluate``: the TOML file's options, then the flags given."""
    options = read_toml(args.config) if args.config else {}
    given = {k: getattr(args, k, None) for k in OPTION_KEYS}
    # a flag not given is None (False for --quick); 0 and 0.0 are given values (--epsilon 0), never "not given"
    options.update({k: v for k, v in given.items() if v is not None and v is not False})
    return config_from(options)


#: Options that say which runs the grid holds and where they run, not what a run computes: finished runs
#: stay valid when these change (a re-run with more seeds or another backbone reuses them).
GRID_AXES = ("methods", "backbones", "variants", "seeds", "quick", "device", "task", "sequence", "dedup", "epsilon")
#: Training options that do not change a run's result (``seed`` is one of the grid's axes).
TRAIN_PLACEMENT = ("device", "progress", "num_threads", "seed")


def run_settings(config: EvaluateConfig) -> dict:
    """The options every run's result depends on, JSON-able: a finished run is reused only under the same."""
    values = {k: v for k, v in asdict(config).items() if k not in (*GRID_AXES, "train", "time_given")}
    values["train"] = {k: v for k, v in asdict(config.train).items() if k not in TRAIN_PLACEMENT}
    return values
