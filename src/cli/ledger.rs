//! `quotahub ledger report`: the periodic reconciliation of the rectification ledger (定期对账) —
//! per department, items opened, closed and overdue and the oldest still open, or with
//! `--by-level` the assigned items by the level they wait on (`--cases-by-level`: the assigned
//! cases) — as a table, CSV or JSON. It asks the hub's Report RPC, which reads the store's one `ledger_report`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::ClientArgs;
use crate::domain::AgencyKind;
use crate::proto;

/// `quotahub ledger ...`.
#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Items opened, closed, overdue and the oldest open, per department, for a period.
    Report(ReportArgs),
}

/// Flags of `quotahub ledger report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// How to reach the hub (as the staffing office of `--jurisdiction` by default).
    #[command(flatten)]
    pub client: ClientArgs,
    /// First day of the period, YYYY-MM-DD [default: from the beginning].
    #[arg(long)]
    pub from: Option<String>,
    /// Last day of the period, YYYY-MM-DD [default: today].
    #[arg(long)]
    pub to: Option<String>,
    /// table, csv or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Assigned items not yet closed by the level they wait on (逐级对账销号), instead of the
    /// departments' lines.
    #[arg(long)]
    pub by_level: bool,
    /// Assigned cases not yet closed by the level they wait on, as `--by-level` shows items.
    #[arg(long, conflicts_with = "by_level")]
    pub cases_by_level: bool,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `quotahub ledger ...`.
pub async fn run(command: LedgerCommand) -> anyhow::Result<()> {
    let LedgerCommand::Report(args) = command;
    if !matches!(args.format.as_str(), "table" | "csv" | "json") {
        anyhow::bail!("--format takes table, csv or json, not `{}`", args.format);
    }
    let channel = args.client.connect(AgencyKind::StaffingOffice).await?;
    let report = proto::ledger_service_client::LedgerServiceClient::new(channel)
        .report(proto::LedgerReportRequest {
            jurisdiction: args.client.jurisdiction.clone(),
            from: args.from.clone().unwrap_or_default(),
            to: args.to.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    let text = if args.by_level {
        render_levels(&report.by_level, &args.format)
    } else if args.cases_by_level {
        render_levels(&report.cases_by_level, &args.format)
    } else {
        render(&report.rows, &args.format)
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}

/// The report in a format: `table` (aligned columns), `csv` (a header line) or `json` (an array).
pub fn render(rows: &[proto::LedgerReportRow], format: &str) -> String {
    const HEADER: [&str; 6] = [
        "jurisdiction",
        "department_uscc",
        "opened",
        "closed",
        "overdue",
        "oldest_open_on",
    ];
    let fields = |row: &proto::LedgerReportRow| {
        [
            row.jurisdiction.clone(),
            row.department_uscc.clone(),
            row.opened.to_string(),
            row.closed.to_string(),
            row.overdue.to_string(),
            row.oldest_open_on.clone(),
        ]
    };
    match format {
        "json" => {
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    serde_json::json!({
                        "jurisdiction": row.jurisdiction, "department_uscc": row.department_uscc,
                        "opened": row.opened, "closed": row.closed, "overdue": row.overdue,
                        "oldest_open_on": (!row.oldest_open_on.is_empty()).then_some(&row.oldest_open_on),
                    })
                })
                .collect();
            format!("{}\n", serde_json::Value::Array(rows))
        }
        "csv" => {
            // Codes, counts and dates: nothing that needs quoting.
            let mut text = HEADER.join(",");
            text.push('\n');
            for row in rows {
                text.push_str(&fields(row).join(","));
                text.push('\n');
            }
            text
        }
        _ => {
            let lines: Vec<[String; 6]> = std::iter::once(HEADER.map(str::to_owned))
                .chain(rows.iter().map(fields))
                .collect();
            let widths: Vec<usize> = (0..6)
                .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
                .collect();
            let mut text = String::new();
            for line in &lines {
                let cells: Vec<String> = line
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect();
                text.push_str(cells.join("  ").trim_end());
                text.push('\n');
            }
            text
        }
    }
}

/// The report by level in a format, as [`render`] does the departments' lines.
pub fn render_levels(rows: &[proto::LevelReportRow], format: &str) -> String {
    const HEADER: [&str; 4] = ["jurisdiction", "waiting", "overdue", "working"];
    let fields = |row: &proto::LevelReportRow| {
        [
            row.jurisdiction.clone(),
            row.waiting.to_string(),
            row.overdue.to_string(),
            row.working.to_string(),
        ]
    };
    match format {
        "json" => {
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    serde_json::json!({
                        "jurisdiction": row.jurisdiction, "waiting": row.waiting,
                        "overdue": row.overdue, "working": row.working,
                    })
                })
                .collect();
            format!("{}\n", serde_json::Value::Array(rows))
        }
        "csv" => std::iter::once(HEADER.join(","))
            .chain(rows.iter().map(|row| fields(row).join(",")))
            .map(|line| line + "\n")
            .collect(),
        _ => {
            let lines: Vec<[String; 4]> = std::iter::once(HEADER.map(str::to_owned))
                .chain(rows.iter().map(fields))
                .collect();
            let widths: Vec<usize> = (0..4)
                .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
                .collect();
            lines
                .iter()
                .map(|line| {
                    let cells: Vec<String> = line
                        .iter()
                        .zip(&widths)
                        .map(|(cell, width)| format!("{cell:<width$}"))
                        .collect();
                    format!("{}\n", cells.join("  ").trim_end())
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_by_level_renders_as_csv_json_and_a_table() {
        let row = proto::LevelReportRow {
            jurisdiction: "140105".into(),
            waiting: 2,
            overdue: 1,
            working: 2,
        };
        assert_eq!(
            render_levels(std::slice::from_ref(&row), "csv"),
            "jurisdiction,waiting,overdue,working\n140105,2,1,2\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_levels(std::slice::from_ref(&row), "json")).unwrap();
        assert_eq!(json[0]["waiting"], 2);
        let table = render_levels(&[row], "table");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].find("waiting"),
            lines[1].find('2'),
            "columns line up"
        );
    }

    fn row() -> proto::LedgerReportRow {
        proto::LedgerReportRow {
            jurisdiction: "140100".into(),
            department_uscc: "11140100MB0000001G".into(),
            opened: 3,
            closed: 1,
            overdue: 2,
            oldest_open_on: "2024-02-10".into(),
        }
    }

    #[test]
    fn the_report_renders_as_csv_json_and_a_table() {
        assert_eq!(
            render(&[row()], "csv"),
            "jurisdiction,department_uscc,opened,closed,overdue,oldest_open_on\n\
             140100,11140100MB0000001G,3,1,2,2024-02-10\n"
        );
        let json: serde_json::Value = serde_json::from_str(&render(&[row()], "json")).unwrap();
        assert_eq!(json[0]["overdue"], 2);
        assert_eq!(json[0]["oldest_open_on"], "2024-02-10");
        let table = render(&[row()], "table");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].find("opened"),
            lines[1].find('3'),
            "columns line up"
        );
    }
}
