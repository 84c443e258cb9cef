class UsageError(ValueError):
    """A problem with what the user asked for. The CLI prints its message as one line and exits 2."""
