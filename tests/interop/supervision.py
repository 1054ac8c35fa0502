#!/usr/bin/env python3
"""Reads the supervision division's figures as a stock grpcio client would, with stubs protoc
generates from the contract, as the city's staffing office of a hub holding one over-quota
institution: the regional balance (RegionalBalance), the findings in numbers (SummarizeFindings),
whose data the hub waits for (FreshnessReport), a special inspection opened and listed
(CampaignService), and the report to the leadership as a PDF (ReportService.LeadershipReport, whose
fields `from` and `to` a Python client sets by name).

    python3 tests/interop/supervision.py --address 127.0.0.1:PORT --ca ca.pem \
        --cert office.pem --key office-key.pem --institution USCC --today YYYY-MM-DD

Exits non-zero, naming the first answer that is not the expected one; on success prints
`supervision figures read: ...`.
"""

import argparse
import sys
import tempfile

from contract import compile_contract


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--institution", required=True, help="the over-quota institution")
    parser.add_argument("--today", required=True, help="the hub's date")
    args = parser.parse_args()

    stubs = tempfile.TemporaryDirectory()
    refused = compile_contract(stubs.name)
    if refused:
        print("protoc refuses: " + ", ".join(refused), file=sys.stderr)
        return 1
    sys.path.insert(0, stubs.name)
    import grpc
    from quotahub.v1 import (
        campaign_pb2,
        campaign_pb2_grpc,
        findings_pb2,
        freshness_pb2,
        reconciliation_pb2,
        reconciliation_pb2_grpc,
        report_pb2,
        report_pb2_grpc,
    )

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    channel = grpc.secure_channel(
        args.address,
        grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(args.key),
            certificate_chain=read(args.cert),
        ),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    reconciliation = reconciliation_pb2_grpc.ReconciliationServiceStub(channel)
    campaigns = campaign_pb2_grpc.CampaignServiceStub(channel)
    reports = report_pb2_grpc.ReportServiceStub(channel)

    def expect(condition, what):
        if not condition:
            raise SystemExit(f"unexpected answer: {what}")

    balance = reconciliation.RegionalBalance(reconciliation_pb2.RegionalBalanceRequest(), timeout=30)
    rows = [(row.jurisdiction, row.approved, row.active) for row in balance.rows]
    expect(rows == [("140100", 1, 2)], f"the balance is one division, quota 1, people 2: {rows}")

    summary = reconciliation.SummarizeFindings(
        reconciliation_pb2.SummarizeFindingsRequest(), timeout=30
    )
    over = [c.open for c in summary.open_by_rule if c.code == findings_pb2.RULE_CODE_OVER_QUOTA]
    expect(over == [1], f"one OVER_QUOTA open: {summary.open_by_rule}")
    expect(len(summary.trend) == 12, f"twelve weeks of trend: {len(summary.trend)}")
    expect(
        [m.institution_uscc for m in summary.most_findings][:1] == [args.institution]
        and summary.institutions_with_findings >= 1,
        f"the institution leads the list: {summary.most_findings}",
    )

    freshness = reconciliation.FreshnessReport(freshness_pb2.FreshnessReportRequest(), timeout=30)
    expect(freshness.as_of == args.today, f"the report is of the hub's date: {freshness.as_of}")
    expect(freshness.payroll_due_day >= 1, f"a cadence: {freshness}")

    year, month, _ = args.today.split("-")
    opened = campaigns.OpenCampaign(
        campaign_pb2.OpenCampaignRequest(
            title="吃空饷专项检查",
            codes=[
                findings_pb2.RULE_CODE_PAID_NOT_ON_ROLL,
                findings_pb2.RULE_CODE_OVER_QUOTA,
            ],
            period_from=f"{year}-01",
            period_to=f"{year}-{month}",
            deadline=args.today,
            idempotency_key="interop-campaign-1",
        ),
        timeout=30,
    )
    again = campaigns.OpenCampaign(
        campaign_pb2.OpenCampaignRequest(
            title="吃空饷专项检查",
            codes=[
                findings_pb2.RULE_CODE_PAID_NOT_ON_ROLL,
                findings_pb2.RULE_CODE_OVER_QUOTA,
            ],
            period_from=f"{year}-01",
            period_to=f"{year}-{month}",
            deadline=args.today,
            idempotency_key="interop-campaign-1",
        ),
        timeout=30,
    )
    expect(again.id == opened.id, "a resend with the same key answers the first campaign")
    listed = campaigns.ListCampaigns(campaign_pb2.ListCampaignsRequest(), timeout=30)
    expect([c.campaign.id for c in listed.campaigns] == [opened.id], f"one campaign: {listed}")
    progress = campaigns.GetCampaign(campaign_pb2.CampaignRef(campaign_id=opened.id), timeout=30)
    expect(progress.institutions == 1, f"one institution in scope: {progress.institutions}")

    # `from` is a Python keyword: the field is set by name.
    report = reports.LeadershipReport(
        report_pb2.LeadershipReportRequest(
            **{"from": f"{year}-01-01", "to": args.today},
            format=report_pb2.REPORT_FORMAT_PDF,
        ),
        timeout=60,
    )
    expect(report.media_type == "application/pdf", f"a PDF: {report.media_type}")
    expect(report.document.startswith(b"%PDF-"), "the document is a PDF")
    expect(
        [(row.jurisdiction, row.approved, row.active) for row in report.balance] == rows,
        "the report's balance is RegionalBalance's",
    )
    expect(
        [c.id for c in report.campaigns] == [opened.id],
        f"the report lists the campaign: {list(report.campaigns)}",
    )

    print(
        f"supervision figures read: balance {rows}, {summary.open_total} open, "
        f"campaign {opened.id}, report {len(report.document)} bytes of PDF"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
