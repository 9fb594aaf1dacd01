"""Errors the engine's parts share."""


class SetupError(Exception):
    """The run cannot start: bad input or an unusable session path. Exit code 2."""
