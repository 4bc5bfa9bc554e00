"""aws query backend: brought by issue #4; until then every call says so."""

from cloud.aws.pending import PendingAwsBackend
from cloud.interfaces import QueryEngine


class AthenaQuery(PendingAwsBackend, QueryEngine):
    """Not implemented yet: see issue #4."""

    issue = 4

    def execute(self, lake, sql, params=None):
        raise self.pending("execute")
