"""Errors a user can fix by changing the command line; the CLI prints them as one line, exit 2."""


class ConfigError(ValueError):
    """Bad configuration or input, detected before any result is written."""


class DataNotFoundError(ConfigError):
    """No data source could serve the requested dataset."""


class BadDataError(ConfigError):
    """Data that was found but cannot be trusted (wrong counts, shapes, dtypes, ranges, corrupt files).

    A user error like any other: one line naming the file, the array and what is wrong, exit 2,
    no run folder.
    """


MAX_SHOWN = 200


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def shown(value: object, limit: int = MAX_SHOWN, quote: bool = True) -> str:
    """A value as an error line echoes it (strings quoted), shortened with '…' past ``limit`` characters.

    A 20 KB value pasted on the command line must not become a 20 KB error line.
    """
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return _cut(repr(value) if isinstance(value, str) and quote else str(value), limit)


def one_line(message: object, limit: int = MAX_SHOWN + 60) -> str:
    """The first line of a message, every word longer than ``limit`` characters (a value, a path) shortened.

    The limit leaves room for a ``key=`` before a value :func:`shown` has already shortened.
    """
    first = (str(message).strip().splitlines() or [""])[0]
    return " ".join(_cut(word, limit) for word in first.split(" "))
