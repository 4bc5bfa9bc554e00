"""aws catalog backend: brought by issue #4; until then every call says so."""

from cloud.aws.pending import PendingAwsBackend
from cloud.interfaces import Crawler


class GlueCrawler(PendingAwsBackend, Crawler):
    """Not implemented yet: see issue #4."""

    issue = 4

    def crawl(self, lake, progress=None):
        raise self.pending("crawl")
