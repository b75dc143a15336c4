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
