#!/usr/bin/env python3
"""Compiles every file of the contract (proto/**/*.proto) with stock protoc (grpcio-tools), each file
on its own, as a Java, Go or Python client generating stubs would. Exits non-zero, with protoc's
messages, when any file does not compile.

    python3 tests/interop/contract.py [--out DIR]

Other scripts import `compile_contract` to get Python stubs of the contract.
"""

import argparse
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"


def proto_files():
    return sorted(PROTO.rglob("*.proto"))


def compile_contract(out):
    """Generates Python messages and gRPC stubs of every contract file into `out`; returns the
    files protoc refused (with its messages on stderr)."""
    import grpc_tools
    from grpc_tools import protoc

    # protoc's own copy of the well-known types (google/protobuf/*.proto).
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    refused = []
    for path in proto_files():
        status = protoc.main(
            [
                "protoc",
                f"-I{PROTO}",
                f"-I{well_known}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                str(path.relative_to(PROTO)),
            ]
        )
        if status != 0:
            refused.append(str(path.relative_to(ROOT)))
    return refused


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="where to write the stubs (default: a temporary directory)")
    args = parser.parse_args()
    files = proto_files()
    if not files:
        print(f"no .proto files under {PROTO}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        refused = compile_contract(args.out or scratch)
    if refused:
        print("protoc refuses: " + ", ".join(refused), file=sys.stderr)
        return 1
    print(f"protoc compiles all {len(files)} contract files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
