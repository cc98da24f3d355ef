"""Declared constraints of constructor arguments and configs, and the one validator that reads them.

Estimators and configs declare ``_parameter_constraints`` (argument name -> :class:`Constraint`,
as scikit-learn declares its own) and call :func:`validate_params` once; every argument then gets
the same wording of message. Importable without numpy or torch, so a command line's options are
checked before any heavy library loads (numpy's scalars are ``numbers.Integral``/``numbers.Real``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Callable

from rqgmm.errors import InputError


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise ``InputError`` if it is not an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Constraint:
    """One rule a constructor argument must meet; ``check`` raises InputError naming the argument."""

    def check(self, name: str, value) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Constraint):
    """An int >= ``low`` (bools refused); None too when ``optional``."""

    low: int = 1
    optional: bool = False

    def check(self, name: str, value) -> None:
        if value is None and self.optional:
            return
        check_positive_int(name, value, minimum=self.low)


@dataclass(frozen=True)
class Real(Constraint):
    """A finite number in [``low``, ``high``] (``low`` excluded when ``open_low``); None too when ``optional``."""

    low: float = 0.0
    high: float = math.inf
    open_low: bool = False
    optional: bool = False

    def check(self, name: str, value) -> None:
        if value is None and self.optional:
            return
        number = not isinstance(value, bool) and isinstance(value, numbers.Real)
        inside = number and math.isfinite(float(value)) and (
            float(value) > self.low if self.open_low else float(value) >= self.low) and float(value) <= self.high
        if not inside:
            low = f"> {self.low:g}" if self.open_low else f">= {self.low:g}"
            bound = low if self.high == math.inf else f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"
            raise InputError(f"{name} must be a number {bound}, got {value!r}")


@dataclass(frozen=True)
class Options(Constraint):
    """One of ``values``."""

    values: tuple

    def check(self, name: str, value) -> None:
        if value not in self.values:
            raise InputError(f"{name} must be one of {list(self.values)}, got {value!r}")


@dataclass(frozen=True)
class Rule(Constraint):
    """A check of its own: ``rule(value)`` raises InputError (a device, a precision, a list of sizes)."""

    rule: Callable[[Any], Any]

    def check(self, name: str, value) -> None:
        self.rule(value)


@dataclass(frozen=True)
class Choices(Constraint):
    """A non-empty list of ``values``' members, or one member when ``single``; ``values`` may be a function
    that returns them (a registry, read when the check runs)."""

    values: tuple | Callable[[], Sequence]
    single: bool = False

    def check(self, name: str, value) -> None:
        allowed = self.values() if callable(self.values) else self.values
        given = (value,) if self.single else value
        unknown = [v for v in given if v not in allowed]
        if unknown:
            raise InputError(f"unknown {name} value(s) {unknown}; choose from {', '.join(allowed)}")
        if not given:
            raise InputError(f"{name} is empty; choose from {', '.join(allowed)}")


#: The rule of arguments that ``fit`` checks against the data (initial parameters), or that are free.
ANY = Rule(lambda value: None)


def validate_params(estimator, name: Callable[[str], str] = str) -> None:
    """Check every constructor argument of ``estimator`` against its class's ``_parameter_constraints``.

    The declaration maps each argument name to a :class:`Constraint`; one
    argument missing from it is a bug in the class (raised as such). A
    scikit-learn estimator's arguments are checked in ``get_params`` order, a
    dataclass's (a config) in the declaration's order. ``name`` gives the name
    a message shows for an argument (a command-line flag, say).
    """
    constraints = type(estimator)._parameter_constraints
    if hasattr(estimator, "get_params"):
        params = estimator.get_params(deep=False)
    else:
        given = {f.name: getattr(estimator, f.name) for f in fields(estimator)}
        params = {key: given[key] for key in constraints if key in given} | given
    undeclared = set(params) - set(constraints)
    if undeclared:
        raise TypeError(f"{type(estimator).__name__} declares no constraint for {sorted(undeclared)}")
    for key, value in params.items():
        constraints[key].check(name(key), value)
