"""Several ``mmframe serve`` instances sharing markets through leases in Redis (issue 16). See
:mod:`mmframe._cluster.lease`."""

from .lease import Lease, LeaseClient, fair_share

__all__ = ["Lease", "LeaseClient", "fair_share"]
