//! `quotahub evidence export | verify`: a matter's evidence bundle fetched from the hub into a
//! file, and a bundle checked offline with nothing but the hub's public log key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::domain::AgencyKind;
use crate::domain::evidence::{Bundle, verify};
use crate::proto;

/// `quotahub evidence ...`.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Export a matter's evidence bundle (ReconciliationService.ExportEvidence) into a file.
    Export {
        /// How to reach the hub (as the discipline agency of `--jurisdiction` by default).
        #[command(flatten)]
        client: super::ClientArgs,
        /// Agency kind of the certificate (discipline, audit, staffing-office, ...).
        #[arg(long, default_value = "discipline")]
        agency: String,
        /// alert (a finding), ledger-item or case.
        #[arg(long, default_value = "alert")]
        matter: String,
        /// The matter's id: an alert's is `CODE|institution|subject|period`.
        #[arg(long)]
        id: String,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a bundle offline and say in plain words what it proves; exit status 1 when any part
    /// fails, naming it.
    Verify {
        /// The bundle file.
        file: PathBuf,
        /// The hub's public log key (`origin+id+key`), or a file holding it.
        #[arg(long)]
        log_key: String,
    },
}

/// Runs `quotahub evidence ...`, writing to `out`.
pub async fn run(command: EvidenceCommand, mut out: impl Write) -> anyhow::Result<ExitCode> {
    match command {
        EvidenceCommand::Export {
            client,
            agency,
            matter,
            id,
            out: file,
        } => {
            let kind = AgencyKind::from_slug(&agency)
                .ok_or_else(|| anyhow::anyhow!("`{agency}` is not an agency kind"))?;
            let matter = match matter.as_str() {
                "alert" | "finding" => proto::MatterKind::Alert,
                "ledger-item" | "ledger_item" => proto::MatterKind::LedgerItem,
                "case" => proto::MatterKind::Case,
                other => anyhow::bail!("--matter takes alert, ledger-item or case, not `{other}`"),
            };
            let channel = client.connect(kind).await?;
            let bundle =
                proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
                    .export_evidence(proto::ExportEvidenceRequest {
                        matter: matter as i32,
                        matter_id: id,
                    })
                    .await?
                    .into_inner();
            std::fs::write(&file, &bundle.json)
                .with_context(|| format!("cannot write {}", file.display()))?;
            writeln!(
                out,
                "evidence bundle written to {}: sealed by audit entry {}, proven into the signed checkpoint of {} entries",
                file.display(),
                bundle.seal_seq,
                bundle.tree_size
            )?;
            Ok(ExitCode::SUCCESS)
        }
        EvidenceCommand::Verify { file, log_key } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let key = if Path::new(&log_key).exists() {
                std::fs::read_to_string(&log_key)
                    .with_context(|| format!("cannot read {log_key}"))?
            } else {
                log_key
            };
            let bundle = match Bundle::from_json(&text) {
                Ok(bundle) => bundle,
                Err(reason) => {
                    writeln!(out, "FAILED: {}: {reason}", file.display())?;
                    return Ok(ExitCode::FAILURE);
                }
            };
            let found = verify(&bundle, key.trim());
            for line in &found.proven {
                writeln!(out, "proven: {line}")?;
            }
            for line in &found.failed {
                writeln!(out, "FAILED: {line}")?;
            }
            writeln!(
                out,
                "{}",
                if found.sound() {
                    "evidence bundle VERIFIED"
                } else {
                    "evidence bundle NOT VERIFIED: the parts named above fail"
                }
            )?;
            Ok(if found.sound() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
