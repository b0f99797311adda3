"""One exception hierarchy for the pipeline; only `pipeline.cli` turns exit codes into process exits."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2
    PAGES_FAILED = 3
    SERVICE_FAILED = 4


class CensusError(Exception):
    """Base class: every error the pipeline raises on purpose."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(CensusError):
    """Bad command line, missing input, invalid template or config."""

    exit_code = ExitCode.USAGE


class PageError(CensusError):
    """One page cannot be processed (unreadable, too large, no table...). The batch goes on."""

    exit_code = ExitCode.PAGES_FAILED

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ServiceError(CensusError):
    """An external service (Label Studio, a Dask scheduler, tesseract) failed or is unreachable."""

    exit_code = ExitCode.SERVICE_FAILED
