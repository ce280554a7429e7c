"""Error types that name what is wrong, so a failing job says which file, member or key."""


class EnsflowError(Exception):
    """Base class: the message is meant for an operator, one clear line."""


class ConfigError(EnsflowError):
    """A configuration value is missing or malformed."""


class InputStateError(EnsflowError):
    """A member's input state (pickle or source fields) is unusable."""


class UnsafePickleError(InputStateError):
    """A pickle asked to import something outside the allow-list."""


class StorageError(EnsflowError):
    """A transfer failed for good (after retries) or a checksum did not match."""


class ObjectNotFoundError(StorageError):
    """The object is not there (yet): for a watcher a normal answer, not a failure."""


class OpenDataError(EnsflowError):
    """Open data for the cycle is missing or inconsistent with its index."""


class ForecastError(EnsflowError):
    """Inference produced something unusable (non-finite values, wrong fields)."""


class IndexNotPublishedError(OpenDataError):
    """An object's `.index` is not there (yet): a watcher asks again later."""
