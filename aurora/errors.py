"""The base of the errors a user can cause; the command line prints them in one line."""

from __future__ import annotations


class AuroraError(RuntimeError):
    """A run cannot go on; the message says why and what to change."""


class SettingsError(AuroraError, ValueError):
    """A setting that cannot work: the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"{key}={value!r} cannot work: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed
