"""The kinds of failure the CLI turns into one line on stderr and an exit code (edgecnn.cli.FAILURES)."""


class UsageError(ValueError):
    """A problem with what the user asked for. The CLI prints its message as one line and exits 2."""


class ExportError(Exception):
    """An export that ran but produced something that must not ship. The CLI prints it and exits 1."""


class ValidationFailed(Exception):
    """Artifacts ran, and at least one broke its parity limits. The report is written; the CLI exits 1."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report  # the ValidationReport that was written, for the caller to show


class DeviceError(Exception):
    """A phone-side step (adb, benchmark_model) failed. The CLI prints it and exits 1."""


class WriteError(Exception):
    """Results could not be written, and nothing half-written was left. The CLI prints it and exits 1."""


class DiskFull(WriteError):
    """The disk (or quota) filled up while writing."""


class ConcurrentWrite(WriteError):
    """Another edgecnn process is writing the same folder."""


# every failure above: what a caller running many jobs records against one job before going on
EXPECTED_FAILURES = (UsageError, ExportError, ValidationFailed, DeviceError, WriteError)
