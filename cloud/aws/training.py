"""aws training backend: brought by issue #5; until then every call says so."""

from cloud.aws.pending import PendingAwsBackend
from cloud.interfaces import Trainer


class SageMakerDeepAR(PendingAwsBackend, Trainer):
    """Not implemented yet: see issue #5."""

    issue = 5

    def train(self, lake, spec, progress=None):
        raise self.pending("train")
