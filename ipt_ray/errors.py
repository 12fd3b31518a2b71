"""Errors that reach the user.

Every mistake in user input (a flag, a space file, a data file, a bundle) raises
:class:`UserError` or a subclass. The CLI turns it into one line on stderr and exit
status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable


class UserError(Exception):
    """Bad input from the user. The message is one line naming the value and what is allowed."""


#: A setting's name in a :class:`SettingError` template: ``{workers_per_trial}``.
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class SettingError(UserError):
    """A setting of a library call (a keyword argument) out of range or contradicting another.

    The message names settings as ``{name}`` placeholders: ``str(error)`` shows them as
    keyword arguments (``workers_per_trial``), :meth:`render` as anything else (the CLI:
    ``--workers-per-trial``), so that one message serves the Python API and the command line.
    """

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.render(lambda name: name))

    def render(self, show: Callable[[str], str]) -> str:
        """The message with each ``{name}`` replaced by ``show(name)``."""
        return _PLACEHOLDER.sub(lambda m: show(m.group(1)), self.template)

    def __reduce__(self) -> tuple[type[SettingError], tuple[str]]:  # picklable across Ray
        return (type(self), (self.template,))


class ConfigError(UserError, ValueError):
    """A configuration value is invalid (a field, its bad value, and what is allowed)."""


class DataError(UserError):
    """A task or data file cannot be used (missing columns, bad labels, empty splits, ...)."""


class TrainingDiverged(UserError, FloatingPointError):
    """The training loss became NaN or infinite (most often: the learning rate is too high).

    A user error for ``ipt-ray train`` (one line, exit 2); in a search, the trial fails with
    this message and the search goes on.
    """


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(what: str, value: str, choices: Iterable[str]) -> ConfigError:
    """Build the standard error for a value outside a fixed set of choices."""
    options = sorted(choices)
    return ConfigError(
        f"unknown {what} {value!r}{did_you_mean(value, options)}; allowed: {', '.join(options)}"
    )


def check_known_keys(what: str, keys: Iterable[str], known: Iterable[str]) -> None:
    """Refuse the first of ``keys`` outside ``known`` with :func:`unknown_choice`'s error.

    Raises:
        ConfigError: "unknown WHAT 'key' (did you mean ...); allowed: ...".
    """
    allowed = set(known)
    for key in keys:
        if key not in allowed:
            raise unknown_choice(what, key, allowed)
