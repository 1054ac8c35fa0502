#!/usr/bin/env python3
"""Assigns a case down the levels and confirms it back up as a stock grpcio client would, with
stubs protoc generates from the contract: the city's staffing office takes a report about district
140105 and assigns it there (AssignCase); the district investigates and reports back
(ConfirmCaseLevel), the city closes it. Checks the refusals on the way: a stale version (ABORTED,
naming expected_version), a target that does not hold the case (INVALID_ARGUMENT, naming `to`),
the city confirming before the district (FAILED_PRECONDITION, naming 140105).

    python3 tests/interop/case_levels.py --address 127.0.0.1:PORT --ca ca.pem \
        --city-cert city.pem --city-key city-key.pem \
        --district-cert district.pem --district-key district-key.pem

The certificates are the staffing offices' of 140100 and 140105. Exits non-zero, naming the first
answer that is not the expected one; on success prints `case ID closed after ...`.
"""

import argparse
import sys
import tempfile

from contract import compile_contract


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--city-cert", required=True)
    parser.add_argument("--city-key", required=True)
    parser.add_argument("--district-cert", required=True)
    parser.add_argument("--district-key", required=True)
    args = parser.parse_args()

    stubs = tempfile.TemporaryDirectory()
    refused = compile_contract(stubs.name)
    if refused:
        print("protoc refuses: " + ", ".join(refused), file=sys.stderr)
        return 1
    sys.path.insert(0, stubs.name)
    import grpc
    from quotahub.v1 import ledger_pb2, ledger_pb2_grpc

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    def stub(cert, key):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(key),
            certificate_chain=read(cert),
        )
        channel = grpc.secure_channel(
            args.address,
            credentials,
            options=[("grpc.ssl_target_name_override", "localhost")],
        )
        return ledger_pb2_grpc.CaseServiceStub(channel)

    city = stub(args.city_cert, args.city_key)
    district = stub(args.district_cert, args.district_key)

    def refusal(call, request, code, words):
        """The call must be refused with `code` and a message holding `words`."""
        try:
            call(request, timeout=30)
        except grpc.RpcError as error:
            if error.code() != code or words not in (error.details() or ""):
                raise SystemExit(f"expected {code.name} naming {words!r}, got {error.code().name}: {error.details()}")
            return
        raise SystemExit(f"expected {code.name} naming {words!r}, the call succeeded")

    case = city.TakeReport(
        ledger_pb2.ReportRequest(
            channel=ledger_pb2.REPORT_CHANNEL_MAILBOX,
            text="区属单位编外人员占用编制",
            owner="督查科 李某",
            due_on="2024-06-30",
            jurisdiction="140105",
        ),
        timeout=30,
    )

    def assign(version, to):
        return ledger_pb2.AssignCaseRequest(
            case_id=case.id, to=to, expected_version=version, text="请核查并按时上报"
        )

    refusal(city.AssignCase, assign(case.version + 1, "140105"), grpc.StatusCode.ABORTED, "expected_version")
    refusal(city.AssignCase, assign(case.version, "140106"), grpc.StatusCode.INVALID_ARGUMENT, "to:")
    case = city.AssignCase(assign(case.version, "140105"), timeout=30)
    if [level.jurisdiction for level in case.levels] != ["140100", "140105"] or case.waiting_on != "140105":
        raise SystemExit(f"the chain is not city -> district: {case}")

    case = district.MoveCase(
        ledger_pb2.MoveCaseRequest(
            case_id=case.id,
            to=ledger_pb2.CASE_STATE_INVESTIGATING,
            expected_version=case.version,
            text="立案调查",
        ),
        timeout=30,
    )

    def confirmation(text):
        return ledger_pb2.ConfirmCaseLevelRequest(case_id=case.id, expected_version=case.version, text=text)

    refusal(city.ConfirmCaseLevel, confirmation("销号"), grpc.StatusCode.FAILED_PRECONDITION, "140105")
    case = district.ConfirmCaseLevel(confirmation("经核查属实"), timeout=30)
    if case.waiting_on != "140100" or case.state != ledger_pb2.CASE_STATE_INVESTIGATING:
        raise SystemExit(f"after the report back the case does not wait on the city: {case}")
    case = city.ConfirmCaseLevel(confirmation("责令清退编外人员"), timeout=30)
    if case.state != ledger_pb2.CASE_STATE_CLOSED or case.outcome != "责令清退编外人员":
        raise SystemExit(f"the city's confirmation did not close the case: {case}")
    print(f"case {case.id} closed after 140105 then 140100 confirmed ({len(case.history)} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
