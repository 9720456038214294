"""User errors: a bad file, key or value, reported as one line naming all three."""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A user's input is wrong: `file: key: what was expected`.

    Library code raises it; only the CLI edge turns it into one line and exit code 2.
    """

    def __init__(self, key: str | None, message: str, file: str | Path | None = None):
        self.key = key
        self.message = message
        self.file = str(file) if file is not None else None
        super().__init__(str(self))

    def with_file(self, file: str | Path) -> ConfigError:
        """The same error, attributed to `file` (kept if one is already named)."""
        return self if self.file else ConfigError(self.key, self.message, file)

    def with_prefix(self, prefix: str) -> ConfigError:
        """The same error with its key nested under `prefix` (e.g. `base`)."""
        key = f"{prefix}.{self.key}" if self.key else prefix
        return ConfigError(key, self.message, self.file)

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        return ": ".join(parts + [self.message])
