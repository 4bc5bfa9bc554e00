"""aws etl backend: brought by issue #4; until then every call says so."""

from cloud.aws.pending import PendingAwsBackend
from cloud.interfaces import EtlJob


class GlueEtlJob(PendingAwsBackend, EtlJob):
    """Not implemented yet: see issue #4."""

    issue = 4

    def run(self, lake, progress=None, bookmark_option="job-bookmark-enable"):
        raise self.pending("run")

    def reset_bookmark(self, lake):
        raise self.pending("reset_bookmark")
