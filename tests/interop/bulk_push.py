#!/usr/bin/env python3
"""Drives the hub as a stock grpcio client would: one PushPayrollLines stream of many small records
sent as fast as grpcio writes them, one in a hundred bad, and checks the result of every record.

    python3 tests/interop/bulk_push.py --address 127.0.0.1:PORT --ca ca.pem --cert agency.pem \
        --key agency-key.pem --uscc USCC [--records 50000] [--bad-every 100]

The certificate must be a finance agency's whose jurisdiction covers the USCC. Exits non-zero, with
the first discrepancies, when the stream fails or any result is not the expected one.
"""

import argparse
import datetime
import sys
import tempfile

from contract import compile_contract

# GB 11643: weights of the 17 digits and the check character for each remainder.
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
CHECK = "10X98765432"


def resident_id(n):
    """A valid, distinct resident ID (Taiyuan, born from 1970 on) for every n below 366,000."""
    birth = datetime.date(1970, 1, 1) + datetime.timedelta(days=n // 1000)
    body = f"140105{birth:%Y%m%d}{n % 1000:03d}"
    return body + CHECK[sum(int(d) * w for d, w in zip(body, WEIGHTS)) % 11]


def spoil(resident):
    """The same ID with a wrong check character."""
    return resident[:-1] + ("0" if resident[-1] != "0" else "1")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--uscc", required=True, help="the paying institution")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--bad-every", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600.0, help="the call's deadline, seconds")
    args = parser.parse_args()

    stubs = tempfile.TemporaryDirectory()
    refused = compile_contract(stubs.name)
    if refused:
        print("protoc refuses: " + ", ".join(refused), file=sys.stderr)
        return 1
    sys.path.insert(0, stubs.name)
    import grpc
    from quotahub.v1 import finance_pb2, finance_pb2_grpc, common_pb2

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key),
        certificate_chain=read(args.cert),
    )
    bad = lambda i: args.bad_every > 0 and i % args.bad_every == args.bad_every - 1

    def lines():
        for i in range(args.records):
            resident = resident_id(i)
            yield finance_pb2.PayrollLine(
                record_id=f"py-{i}",
                period="2024-03",
                institution_uscc=args.uscc,
                resident_id=spoil(resident) if bad(i) else resident,
                name="王五",
                gross_fen=650_000,
            )

    with grpc.secure_channel(
        args.address,
        credentials,
        options=[("grpc.ssl_target_name_override", "localhost")],
    ) as channel:
        stub = finance_pb2_grpc.FinanceServiceStub(channel)
        try:
            response = stub.PushPayrollLines(lines(), timeout=args.timeout)
        except grpc.RpcError as error:
            print(f"the stream failed: {error.code()} {error.details()}", file=sys.stderr)
            return 1

    problems = []
    expected_bad = sum(1 for i in range(args.records) if bad(i))
    counts = (response.accepted, response.rejected, response.replayed)
    if counts != (args.records - expected_bad, expected_bad, 0):
        problems.append(f"accepted, rejected, replayed = {counts}")
    if len(response.results) != args.records:
        problems.append(f"{len(response.results)} results for {args.records} records")
    accepted = common_pb2.RecordOutcome.Value("RECORD_OUTCOME_ACCEPTED")
    rejected = common_pb2.RecordOutcome.Value("RECORD_OUTCOME_REJECTED")
    for i, result in enumerate(response.results):
        if len(problems) >= 10:
            break
        if result.index != i or result.record_id != f"py-{i}":
            problems.append(f"result {i} is for record {result.index} ({result.record_id!r})")
        elif bad(i):
            fields = [v.field for v in result.error.field_violations]
            if (
                result.outcome != rejected
                or result.error.code != "INVALID_ARGUMENT"
                or fields != ["resident_id"]
            ):
                problems.append(f"bad record {i}: {result}")
        elif result.outcome != accepted or result.HasField("error"):
            problems.append(f"good record {i}: {result}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(
        f"{args.records} records in one stream: {counts[0]} accepted, {counts[1]} refused "
        f"(an answer of {response.ByteSize()} bytes)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
