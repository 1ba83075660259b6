"""BrokerClient: the agent's side of svid-broker's gRPC API, authenticated with its X.509-SVID.

gRPC's C core checks a server by host name only, so the broker's SVID carries a DNS SAN
(`svid-broker` by default; SPIRE's entry `dns_names`) used as the TLS server name, and before each
new channel the client makes one TLS handshake of its own to check that the server at the address
presents the expected broker SPIFFE ID (URI SAN), as the SPIFFE TLS rules ask.
"""
import os
import socket
import ssl
import threading

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import grpc

from svidbroker.v1 import broker_pb2, broker_pb2_grpc

from .workload import WorkloadSource

DEFAULT_ADDR = "localhost:8443"


class BrokerError(Exception):
    """A refusal from the broker: `code` is the gRPC status name, `message` its explanation."""

    def __init__(self, code: str, message: str):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


@dataclass
class Issued:
    lease_id: str
    task_id: str
    role: str
    expires_at: float
    kind: str
    token: str = field(repr=False)
    data: Dict[str, str] = field(repr=False, default_factory=dict)
    metadata: Dict[str, str] = field(default_factory=dict)


@dataclass
class PendingApproval:
    approval_id: str
    task_id: str
    role: str
    approvals_required: int
    expires_at: float


def _ts(t) -> float:
    return t.seconds + t.nanos / 1e9


def _issued(msg) -> Issued:
    cred = msg.credential
    return Issued(
        lease_id=msg.lease_id,
        task_id=msg.task_id,
        role=msg.role,
        expires_at=_ts(msg.expires_at),
        kind=cred.kind,
        token=cred.token,
        data=dict(cred.data),
        metadata=dict(cred.metadata),
    )


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as err:
        raise BrokerError(err.code().name, err.details() or "") from None


_AGENT_CONTEXT_FIELDS = ("tool_name", "tool_call_id", "session_id", "model", "prompt_digest", "plan")


def _agent_context(context):
    """A dict with any of tool_name, tool_call_id, session_id, model, prompt_digest ("sha256:<hex>"), plan."""
    if not context:
        return None
    unknown = set(context) - set(_AGENT_CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown context fields: {', '.join(sorted(unknown))}")
    return broker_pb2.AgentContext(**context)


class Task:
    """One task; ends itself (revoking what it holds) when used as a context manager."""

    def __init__(self, client: "BrokerClient", msg):
        self._client = client
        self.id = msg.task_id
        self.environment = msg.environment
        self.expires_at = _ts(msg.expires_at)
        self.ended = False

    def issue(self, role: str, **kwargs):
        return self._client.issue(self.id, role, **kwargs)

    def await_approval(self, approval_id: str, on_progress=None, timeout=None) -> Issued:
        return self._client.await_approval(approval_id, on_progress=on_progress, timeout=timeout)

    def end(self, reason: str = "") -> List[str]:
        revoked = self._client.end_task(self.id, reason)
        self.ended = True
        return revoked

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.ended:
            self.end("task scope closed")
        return False


class BrokerClient:
    def __init__(
        self,
        address: Optional[str] = None,
        endpoint: Optional[str] = None,
        broker_id: Optional[str] = None,
        server_name: str = "svid-broker",
        timeout: float = 10.0,
    ):
        self.address = address or os.environ.get("SVID_BROKER_ADDR") or DEFAULT_ADDR
        self._source = WorkloadSource(endpoint)
        own_td = self._source.svid().spiffe_id.split("/")[2]
        self.broker_id = broker_id or os.environ.get("SVID_BROKER_ID") or "spiffe://%s/broker" % own_td
        self._server_name = server_name
        self._timeout = timeout
        self._lock = threading.Lock()
        self._svid = None
        self._channel = None
        self._stub = None

    @property
    def spiffe_id(self) -> str:
        return self._source.svid().spiffe_id

    def stub(self):
        """A stub for the SVID current now; a new channel after each rotation."""
        svid = self._source.svid()
        with self._lock:
            if svid is not self._svid:
                self._check_broker_identity(svid)
                creds = grpc.ssl_channel_credentials(
                    root_certificates=svid.bundle_pem,
                    private_key=svid.private_key_pem,
                    certificate_chain=svid.cert_chain_pem,
                )
                options = (("grpc.ssl_target_name_override", self._server_name),)
                if self._channel is not None:
                    self._channel.close()
                self._channel = grpc.secure_channel(self.address, creds, options=options)
                self._stub = broker_pb2_grpc.CredentialBrokerStub(self._channel)
                self._svid = svid
            return self._stub

    def _check_broker_identity(self, svid):
        host, port = self.address.rsplit(":", 1)
        ctx = ssl.create_default_context(cadata=svid.bundle_pem.decode())
        ctx.check_hostname = False
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection((host, int(port)), timeout=self._timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=self._server_name) as tls:
                cert = tls.getpeercert()
        uris = [v for (k, v) in cert.get("subjectAltName", ()) if k == "URI"]
        if uris != [self.broker_id]:
            raise BrokerError(
                "UNAUTHENTICATED", "the server at %s is %s, expected %s" % (self.address, uris, self.broker_id)
            )

    # -- calls -------------------------------------------------------------------------------

    def begin_task(
        self, environment: str, intent: str = "", ttl_seconds: int = 0, labels=None, context=None
    ) -> Task:
        """`context`: the agent's own account of the call (see `_agent_context`), recorded as asserted by it."""
        req = broker_pb2.BeginTaskRequest(
            environment=environment,
            intent=intent,
            ttl_seconds=ttl_seconds,
            labels=labels or {},
            context=_agent_context(context),
        )
        return Task(self, _call(self.stub().BeginTask, req, timeout=self._timeout))

    def task(
        self, environment: str, intent: str = "", ttl_seconds: int = 0, labels=None, context=None
    ) -> Task:
        """`with client.task("dev", "why") as task:` ends the task on exit."""
        return self.begin_task(environment, intent, ttl_seconds, labels, context)

    def issue(
        self,
        task_id: str,
        role: str,
        ttl_seconds: int = 0,
        sensitivity: str = "",
        change_type: str = "",
        justification: str = "",
        tool: str = "python",
        context=None,
    ):
        req = broker_pb2.IssueCredentialRequest(
            task_id=task_id,
            role=role,
            ttl_seconds=ttl_seconds,
            sensitivity=sensitivity,
            change_type=change_type,
            justification=justification,
            tool=tool,
            context=_agent_context(context),
        )
        msg = _call(self.stub().IssueCredential, req, timeout=self._timeout)
        if msg.status == broker_pb2.PENDING_APPROVAL:
            return PendingApproval(
                approval_id=msg.approval_id,
                task_id=msg.task_id,
                role=msg.role,
                approvals_required=msg.approvals_required,
                expires_at=_ts(msg.approval_expires_at),
            )
        return _issued(msg)

    def await_approval(
        self, approval_id: str, on_progress: Optional[Callable[[int, int], None]] = None, timeout=None
    ) -> Issued:
        stream = self.stub().AwaitApproval(broker_pb2.AwaitApprovalRequest(approval_id=approval_id), timeout=timeout)
        try:
            for msg in stream:
                if msg.HasField("issued"):
                    return _issued(msg.issued)
                if on_progress:
                    on_progress(msg.approvals_received, msg.approvals_required)
        except grpc.RpcError as err:
            raise BrokerError(err.code().name, err.details() or "") from None
        raise BrokerError("UNKNOWN", "the broker ended the wait without a credential")

    def end_task(self, task_id: str, reason: str = "") -> List[str]:
        """Ends the task; returns the ids of the leases it revoked."""
        res = _call(self.stub().EndTask, broker_pb2.EndTaskRequest(task_id=task_id, reason=reason), timeout=self._timeout)
        return [r.lease_id for r in res.revoked]

    def close(self):
        if self._channel is not None:
            self._channel.close()
        self._source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


