"""aws identity backend: brought by issue #3; until then every call says so."""

from cloud.aws.pending import PendingAwsBackend
from cloud.interfaces import DeviceIdentity


class IoTCoreIdentity(PendingAwsBackend, DeviceIdentity):
    """Not implemented yet: see issue #3."""

    issue = 3

    def register_thing(self, thing_name):
        raise self.pending("register_thing")

    def broker_endpoint(self):
        raise self.pending("broker_endpoint")
