"""Generates Python stubs for svid-broker's proto/ (broker API and the SPIFFE Workload API).

Uses grpc_tools (pip's grpcio-tools) when present, else protoc with grpc_python_plugin (Debian's
protobuf-compiler and protobuf-compiler-grpc). Output: svid_broker/_gen/ (not committed).
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.environ.get("SVID_BROKER_PROTO", os.path.join(HERE, "..", "..", "proto"))
OUT = os.path.join(HERE, "svid_broker", "_gen")
PROTOS = ["svidbroker/v1/broker.proto", "spiffe/workload/workload.proto"]


def _command():
    try:
        import grpc_tools  # noqa: F401

        return [sys.executable, "-m", "grpc_tools.protoc"], []
    except ImportError:
        pass
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise SystemExit(
            "svid_broker: need grpcio-tools, or protoc and grpc_python_plugin "
            "(Debian: apt-get install -y protobuf-compiler protobuf-compiler-grpc)"
        )
    return [protoc], ["--plugin=protoc-gen-grpc_python=" + plugin]


def generate():
    base, plugin = _command()
    os.makedirs(OUT, exist_ok=True)
    includes = ["-I" + PROTO_ROOT]
    if os.path.isdir("/usr/include/google/protobuf"):
        includes.append("-I/usr/include")
    subprocess.run(
        base + plugin + includes + ["--python_out=" + OUT, "--grpc_python_out=" + OUT] + PROTOS,
        check=True,
    )
    for d in ["", "svidbroker", "svidbroker/v1", "spiffe", "spiffe/workload"]:
        init = os.path.join(OUT, d, "__init__.py")
        if not os.path.exists(init):
            open(init, "w").close()


if __name__ == "__main__":
    generate()
    print("generated stubs in", OUT)
