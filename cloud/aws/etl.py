"""aws etl backend: brought by issue #4; until then every call says so."""

from cloud.aws.pending import PendingAwsBackend
from cloud.interfaces import EtlJob


class GlueEtlJob(PendingAwsBackend, EtlJob):
    """Not implemented yet: see issue #4."""

    issue = 4

    def run(self, lake, progress=None):
        raise self.pending("run")
