"""A base for aws backends whose issue has not landed yet: every call raises a clear error."""


class PendingAwsBackend:
    issue = 0

    def __init__(self, region: str = "us-east-1", **options: object) -> None:
        self.region = region
        self.options = options

    def pending(self, operation: str) -> NotImplementedError:
        """Return the error to raise for an operation this aws backend does not do yet."""
        return NotImplementedError(
            f"{type(self).__name__}.{operation} is not implemented yet (issue #{self.issue}); "
            "set IOTCAST_CLOUD_BACKEND=local to run this stage locally"
        )
