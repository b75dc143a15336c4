"""Errors a user can fix by changing the command line; the CLI prints them as one line, exit 2."""


class ConfigError(ValueError):
    """Bad configuration or input, detected before any result is written."""


class DataNotFoundError(ConfigError):
    """No data source could serve the requested dataset."""
