"""The SPIFFE Workload API over its Unix socket: the agent's X.509-SVID and trust bundles, kept
fresh by a background thread that follows the FetchX509SVID stream (rotations arrive there)."""
import base64
import os
import ssl
import threading
from dataclasses import dataclass

import grpc

from spiffe.workload import workload_pb2, workload_pb2_grpc

_HEADER = (("workload.spiffe.io", "true"),)


@dataclass(frozen=True)
class X509Svid:
    spiffe_id: str
    cert_chain_pem: bytes
    private_key_pem: bytes
    bundle_pem: bytes


def split_der_certs(data: bytes):
    """Splits concatenated DER certificates (the Workload API's encoding) into a list."""
    certs, i = [], 0
    while i < len(data):
        if data[i] != 0x30:
            raise ValueError("not a DER SEQUENCE")
        first = data[i + 1]
        if first < 0x80:
            length, header = first, 2
        else:
            n = first & 0x7F
            length = int.from_bytes(data[i + 2 : i + 2 + n], "big")
            header = 2 + n
        certs.append(data[i : i + header + length])
        i += header + length
    return certs


def _certs_pem(der: bytes) -> bytes:
    return "".join(ssl.DER_cert_to_PEM_cert(c) for c in split_der_certs(der)).encode()


def _key_pem(der: bytes) -> bytes:
    b64 = base64.encodebytes(der).decode().replace("\n", "")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n").encode()


def endpoint_target(endpoint: str) -> str:
    """SPIFFE_ENDPOINT_SOCKET (unix:///path or unix:path) as a gRPC target."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://") :]
    elif endpoint.startswith("unix:"):
        path = endpoint[len("unix:") :]
    else:
        raise ValueError("SPIFFE_ENDPOINT_SOCKET must be a unix: address, got " + endpoint)
    if not os.path.exists(path):
        raise FileNotFoundError("no Workload API socket at " + path + " (check SPIFFE_ENDPOINT_SOCKET)")
    return "unix:" + path


class WorkloadSource:
    """Holds the current X.509-SVID; blocks in the constructor until the first one arrived."""

    def __init__(self, endpoint=None, timeout=10.0):
        endpoint = endpoint or os.environ.get("SPIFFE_ENDPOINT_SOCKET")
        if not endpoint:
            raise ValueError("set SPIFFE_ENDPOINT_SOCKET to the Workload API socket")
        self._channel = grpc.insecure_channel(endpoint_target(endpoint))
        self._stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(self._channel)
        self._lock = threading.Lock()
        self._svid = None
        self._first = threading.Event()
        self._error = None
        self._closed = False
        self._stream = self._stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=_HEADER)
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()
        if not self._first.wait(timeout):
            self.close()
            raise TimeoutError("no X.509-SVID from the Workload API within %.0f s" % timeout)
        if self._svid is None:
            self.close()
            raise RuntimeError("Workload API refused: %s" % self._error)

    def _follow(self):
        try:
            for resp in self._stream:
                if not resp.svids:
                    continue
                s = resp.svids[0]
                svid = X509Svid(
                    spiffe_id=s.spiffe_id,
                    cert_chain_pem=_certs_pem(s.x509_svid),
                    private_key_pem=_key_pem(s.x509_svid_key),
                    bundle_pem=_certs_pem(s.bundle),
                )
                with self._lock:
                    self._svid = svid
                self._first.set()
        except grpc.RpcError as err:
            if not self._closed:
                self._error = "%s: %s" % (err.code().name, err.details())
        finally:
            self._first.set()

    def svid(self) -> X509Svid:
        with self._lock:
            if self._svid is None:
                raise RuntimeError("no SVID")
            return self._svid

    def close(self):
        self._closed = True
        self._stream.cancel()
        self._channel.close()
