//! `quotahub agency add|disable|enable|rekey|list` and `quotahub audit verify`: the operator's
//! tools, working directly on the hub's database (no certificate needed, only the database URL).
//! Running hubs see a registry change within a second or two, without a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::audit::Verdict;
use crate::domain::Agency;
use crate::domain::agency::AGENCY_URI_PREFIX;
use crate::store::Store;

/// Which database to work on.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Database URL, `sqlite://FILE` or `postgres://...` [default: sqlite in the data directory].
    #[arg(long, env = "QUOTAHUB_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The hub's data directory, for the default database.
    #[arg(long, env = "QUOTAHUB_DATA_DIR", default_value = "quotahub-data")]
    pub data_dir: PathBuf,
}

impl DatabaseArgs {
    async fn open(&self) -> anyhow::Result<Store> {
        let url = self
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("quotahub.db").display()));
        crate::server::open_store(&url).await
    }
}

/// `quotahub agency ...`.
#[derive(Debug, Subcommand)]
pub enum AgencyCommand {
    /// Register an agency (enabled) with its client certificate.
    Add {
        /// `{jurisdiction}/{kind}`, e.g. `140105/finance`.
        agency: String,
        /// The agency's certificate (PEM); it must name the agency.
        #[arg(long)]
        cert: PathBuf,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Refuse every call of an agency from now on.
    Disable {
        /// `{jurisdiction}/{kind}`.
        agency: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Serve an agency again.
    Enable {
        /// `{jurisdiction}/{kind}`.
        agency: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Register a new certificate for an agency.
    Rekey {
        /// `{jurisdiction}/{kind}`.
        agency: String,
        /// The new certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Revoke every other certificate of the agency.
        #[arg(long)]
        revoke_old: bool,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List the registry.
    List {
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// `quotahub audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-walk the audit chain and name the first entry that was changed, removed or inserted;
    /// rebuild the log's Merkle tree from the entries and hold it against signed checkpoints (the
    /// hub's own and those given): truncation, rewriting and forks are each named.
    Verify {
        /// A checkpoint a witness kept (a signed note); may be given more than once.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
        /// The log's public key (`origin+id+key`), or a file holding it [default:
        /// `{data_dir}/pki/audit-log.pub` when it exists].
        #[arg(long)]
        log_key: Option<String>,
        /// The database.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn parse_agency(id: &str) -> anyhow::Result<Agency> {
    Agency::from_uri(&format!("{AGENCY_URI_PREFIX}{id}")).map_err(anyhow::Error::msg)
}

/// Runs `quotahub agency ...`, writing to `out`.
pub async fn run_agency(command: AgencyCommand, mut out: impl Write) -> anyhow::Result<()> {
    match command {
        AgencyCommand::Add {
            agency,
            cert,
            database,
        } => {
            let agency = parse_agency(&agency)?;
            let fingerprint = crate::server::fingerprint_of(&agency, &cert)?;
            database
                .open()
                .await?
                .add_agency(&agency, Some(&fingerprint))
                .await?;
            writeln!(out, "{agency} registered with certificate {fingerprint}")?;
        }
        AgencyCommand::Disable { agency, database } => {
            let agency = parse_agency(&agency)?;
            database
                .open()
                .await?
                .set_agency_enabled(&agency.id(), false)
                .await?;
            writeln!(out, "{agency} disabled")?;
        }
        AgencyCommand::Enable { agency, database } => {
            let agency = parse_agency(&agency)?;
            database
                .open()
                .await?
                .set_agency_enabled(&agency.id(), true)
                .await?;
            writeln!(out, "{agency} enabled")?;
        }
        AgencyCommand::Rekey {
            agency,
            cert,
            revoke_old,
            database,
        } => {
            let agency = parse_agency(&agency)?;
            let fingerprint = crate::server::fingerprint_of(&agency, &cert)?;
            database
                .open()
                .await?
                .rekey_agency(&agency.id(), &fingerprint, revoke_old)
                .await?;
            writeln!(
                out,
                "{agency} re-keyed to {fingerprint}{}",
                if revoke_old {
                    "; its other certificates are revoked"
                } else {
                    ""
                }
            )?;
        }
        AgencyCommand::List { database } => {
            for registered in database.open().await?.agencies().await? {
                let valid = registered
                    .certificates
                    .iter()
                    .filter(|c| c.revoked_at.is_none())
                    .count();
                writeln!(
                    out,
                    "{:<28} {:<8} {} certificate(s), {} revoked",
                    registered.agency.id(),
                    if registered.enabled {
                        "enabled"
                    } else {
                        "DISABLED"
                    },
                    valid,
                    registered.certificates.len() - valid
                )?;
            }
        }
    }
    Ok(())
}

/// Runs `quotahub audit ...`; fails (exit code 1) when the chain or the log is broken.
pub async fn run_audit(command: AuditCommand, mut out: impl Write) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify {
        checkpoints,
        log_key,
        database,
    } = command;
    let vkey = match log_key {
        Some(key) if Path::new(&key).exists() => {
            Some(std::fs::read_to_string(&key).with_context(|| format!("cannot read {key}"))?)
        }
        Some(key) => Some(key),
        None => {
            let default = database
                .data_dir
                .join("pki")
                .join(crate::pki::LOG_PUBLIC_KEY);
            std::fs::read_to_string(default).ok()
        }
    };
    anyhow::ensure!(
        checkpoints.is_empty() || vkey.is_some(),
        "--checkpoint needs the log's public key (--log-key)"
    );
    let vkey = vkey.map(|key| key.trim().to_owned());
    let mut witnesses = Vec::new();
    for path in &checkpoints {
        let note = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let checkpoint =
            crate::domain::audit::open_checkpoint(&note, vkey.as_deref().unwrap_or(""))
                .map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
        witnesses.push(checkpoint);
    }
    let store = database.open().await?;
    let report = crate::audit::verify_log(&store, &witnesses, vkey.as_deref()).await?;
    let mut sound = true;
    match report.chain {
        Verdict::Whole(entries) => writeln!(out, "audit chain whole: {entries} entries")?,
        Verdict::Broken(found) => {
            sound = false;
            writeln!(out, "audit chain BROKEN: {found}")?;
        }
    }
    for found in &report.breaks {
        sound = false;
        writeln!(out, "audit log {found}")?;
    }
    if report.breaks.is_empty() {
        writeln!(
            out,
            "audit log consistent: {} entries, {} signed checkpoint(s) held against it{}",
            report.size,
            report.checkpoints,
            if vkey.is_none() {
                " (no log key: the hub's checkpoints were not checked)"
            } else {
                ""
            }
        )?;
    }
    Ok(if sound {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
