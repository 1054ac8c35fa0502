//! `quotahub report`: the report to the leadership (向编委领导报告) for a period and a
//! jurisdiction, as PDF or HTML (Chinese first), or its figures as JSON. It asks the hub's
//! ReportService, which renders it; the PDF is made by the hub with its own font.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::ClientArgs;
use crate::domain::AgencyKind;
use crate::proto;

/// Flags of `quotahub report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// How to reach the hub (as the staffing office of `--jurisdiction` by default).
    #[command(flatten)]
    pub client: ClientArgs,
    /// First day of the period, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// Last day of the period, YYYY-MM-DD.
    #[arg(long)]
    pub to: String,
    /// pdf, html or json (the figures).
    #[arg(long, default_value = "pdf")]
    pub format: String,
    /// `en` for English; Chinese otherwise.
    #[arg(long, default_value = "zh")]
    pub language: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `quotahub report`.
pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let format = match args.format.as_str() {
        "pdf" => proto::ReportFormat::Pdf,
        "html" => proto::ReportFormat::Html,
        "json" => proto::ReportFormat::Unspecified,
        other => anyhow::bail!("--format takes pdf, html or json, not `{other}`"),
    };
    let channel = args.client.connect(AgencyKind::StaffingOffice).await?;
    let report = proto::report_service_client::ReportServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .leadership_report(proto::LeadershipReportRequest {
            jurisdiction: args.client.jurisdiction.clone(),
            from: args.from.clone(),
            to: args.to.clone(),
            format: format as i32,
            language: args.language.clone(),
        })
        .await?
        .into_inner();
    let bytes = if format == proto::ReportFormat::Unspecified {
        let mut figures = report;
        figures.document.clear();
        let mut text = serde_json::to_string_pretty(&figures_json(&figures))?;
        text.push('\n');
        text.into_bytes()
    } else {
        report.document
    };
    match &args.out {
        Some(path) => std::fs::write(path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(&bytes)?,
    }
    Ok(())
}

/// The figures as JSON, field names as in the contract.
fn figures_json(report: &proto::LeadershipReportResponse) -> serde_json::Value {
    let rule = |code: i32| {
        proto::RuleCode::try_from(code)
            .map(|c| c.as_str_name().trim_start_matches("RULE_CODE_").to_owned())
            .unwrap_or_default()
    };
    serde_json::json!({
        "jurisdiction": report.jurisdiction,
        "from": report.from,
        "to": report.to,
        "balance": report.balance.iter().map(|row| serde_json::json!({
            "jurisdiction": row.jurisdiction,
            "category": proto::QuotaCategory::try_from(row.category)
                .map(|c| c.as_str_name().trim_start_matches("QUOTA_CATEGORY_").to_owned())
                .unwrap_or_default(),
            "approved": row.approved,
            "active": row.active,
            "surplus": row.surplus,
        })).collect::<Vec<_>>(),
        "findings": report.findings.iter().map(|row| serde_json::json!({
            "code": rule(row.code),
            "raised": row.raised,
            "closed": row.closed,
            "open_at_end": row.open_at_end,
        })).collect::<Vec<_>>(),
        "departments": report.departments.iter().map(|row| serde_json::json!({
            "jurisdiction": row.jurisdiction,
            "department_uscc": row.department_uscc,
            "department_name": row.department_name,
            "handled": row.handled,
            "closed": row.closed,
            "overdue": row.overdue,
            "closure_permille": row.closure_permille,
        })).collect::<Vec<_>>(),
        "closure_permille": report.closure_permille,
        "overdue": report.overdue,
        "penalties": report.penalties.len(),
        "bulletins": report.bulletins.len(),
        "campaigns_kept": report.campaigns_kept,
    })
}
