"""svid-broker's Python client: the agent's SVID from the SPIFFE Workload API, a task as a context
manager, credentials issued per request.

    from svid_broker import BrokerClient

    with BrokerClient() as broker, broker.task("dev", "summarise the logs") as task:
        cred = task.issue("token/demo", justification="read the demo api")
"""
import os
import sys

# The generated stubs import each other as top-level packages (svidbroker.v1, spiffe.workload).
_GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_gen")
if _GEN not in sys.path:
    sys.path.insert(0, _GEN)

from .client import BrokerClient, Issued, PendingApproval, Task, BrokerError  # noqa: E402
from .workload import WorkloadSource, X509Svid  # noqa: E402

__all__ = [
    "BrokerClient",
    "BrokerError",
    "Issued",
    "PendingApproval",
    "Task",
    "WorkloadSource",
    "X509Svid",
]
