//! `quotahub load DIR`: pushes a whole directory written by `quotahub gen` into a running hub,
//! each file in the manifest's order and as the agency the manifest names, so that a newcomer
//! sees a real city in one command.
//!
//! Everything goes now, on the live hub's clock: the delivery timeline (`deliveries.jsonl`, which
//! day each division's agency sends what) is not replayed, since only a hub whose clock can be
//! moved can be told it is another day (`quotahub bench` does that). So the truth's freshness
//! findings (LATE_PAYROLL, BACKDATED_EVENT) are not what the live hub will find: it judges
//! freshness from the day it began watching (`[freshness] watch_from`, by default its first
//! start), owes no month due before it, and counts events that took effect before an agency's
//! first push as history. `load` says so.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;

use super::import::{self, ErrorReport, RecordKind, Summary};
use crate::domain::findings::RuleCode;
use crate::domain::{Agency, AgencyKind, Coded, Jurisdiction};
use crate::generator::Manifest;

/// Flags of `quotahub load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// A directory written by `quotahub gen`: its `manifest.json` says which files to push, in
    /// which order and as which agency.
    pub dir: PathBuf,
    /// The hub, and the directory of the agencies' certificates.
    #[command(flatten)]
    pub hub: super::HubArgs,
    /// Records per bulk stream.
    #[arg(long, default_value_t = 5_000)]
    pub stream_size: usize,
    /// Write each refused record's error as a JSON line (with its file) to this file.
    #[arg(long)]
    pub errors: Option<PathBuf>,
}

pub(super) async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let manifest = read_manifest(&args.dir)?;
    let mut files = manifest.files.clone();
    files.sort_by_key(|file| file.order);
    let mut errors = ErrorReport::open(args.errors.as_deref())?;
    let mut total = Summary::default();
    for file in &files {
        let kind = RecordKind::from_str(&file.kind, true)
            .map_err(|e| anyhow::anyhow!("{}: kind `{}`: {e}", file.file, file.kind))?;
        let agency_kind = AgencyKind::from_slug(&file.agency_kind)
            .with_context(|| format!("{}: agency kind `{}`", file.file, file.agency_kind))?;
        let jurisdiction = Jurisdiction::parse(&file.jurisdiction).map_err(anyhow::Error::msg)?;
        let client = client_args(&args, &Agency::new(jurisdiction, agency_kind))?;
        let channel = client.connect(agency_kind).await?;
        let path = args.dir.join(&file.file);
        let summary =
            import::push_file(&channel, kind, &path, args.stream_size, &mut errors).await?;
        println!(
            "{} ({} as {}-{}): {summary}",
            file.file, file.records, file.jurisdiction, file.agency_kind
        );
        total.add(summary);
    }
    errors.flush()?;
    let freshness = freshness_truth(&args.dir.join(&manifest.truth))?;
    println!(
        "{}: {total}; the generator planted {} problems (truth in {})",
        args.dir.display(),
        manifest.truth_count,
        args.dir.join(&manifest.truth).display()
    );
    println!(
        "freshness: every file went now, as the root's agencies, on this hub's clock; it judges \
         LATE_PAYROLL and BACKDATED_EVENT from the day it began watching ([freshness] watch_from, \
         by default its first start): no month due before then is owed, and events that took \
         effect before an agency's first push are history. The truth's {freshness} findings of \
         those rules hold for the delivery timeline ({}, from {}) replayed on a hub whose clock \
         follows it (`quotahub bench`), not here; expect the other {} findings.",
        manifest.deliveries,
        manifest.start,
        manifest.truth_count - freshness
    );
    Ok(total.exit_code())
}

/// How many of the truth's findings are about an agency's data freshness.
fn freshness_truth(path: &Path) -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut count = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let planted: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} holds a line that is not JSON", path.display()))?;
        let code = planted["code"].as_str().unwrap_or_default();
        if RuleCode::from_code(code).is_some_and(RuleCode::about_agency) {
            count += 1;
        }
    }
    Ok(count)
}

fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}; `quotahub gen --out {}` writes one",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a manifest", path.display()))
}

/// The client flags of one agency, its certificate found in the PKI directory; a missing one is
/// named with the way to make it.
fn client_args(args: &LoadArgs, agency: &Agency) -> anyhow::Result<super::ClientArgs> {
    let (cert, key) = crate::pki::agency_files(&args.hub.pki_dir, agency);
    if !cert.exists() || !key.exists() {
        anyhow::bail!(
            "no certificate for {agency} in {} (looked for {}); `quotahub pki init` makes them for \
             the sample city 140100 and district 140105, other jurisdictions need certificates \
             from the hub's CA, registered with `quotahub agency add`",
            args.hub.pki_dir.display(),
            cert.display()
        );
    }
    Ok(super::ClientArgs {
        hub: args.hub.clone(),
        jurisdiction: agency.jurisdiction.to_string(),
        cert: Some(cert),
        key: Some(key),
    })
}
