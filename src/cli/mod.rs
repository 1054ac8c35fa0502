//! The `quotahub` command: `serve` runs the hub, `pki init` makes development certificates,
//! `import` pushes a CSV or JSONL file as an agency.

pub mod admin;
pub mod demo;
pub mod evidence;
pub mod import;
pub mod ledger;
pub mod load;
pub mod report;
pub mod subscribe;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::server::{Application, shutdown_signal};

/// quotahub: the data-sharing hub for staffing-quota supervision.
#[derive(Debug, Parser)]
#[command(name = "quotahub", version, about)]
pub struct Cli {
    /// Log lines as `human` text or `json` [default: human, or `log.format` of `serve --config`].
    #[arg(long, global = true, env = "QUOTAHUB_LOG_FORMAT", value_enum)]
    pub log_format: Option<crate::telemetry::LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub.
    Serve(ServeArgs),
    /// Development certificates.
    Pki {
        /// What to do with them.
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Push a CSV or JSONL file of records as the agency whose certificate is given.
    #[command(after_help = EXIT_STATUS)]
    Import(import::ImportArgs),
    /// Push a whole directory written by `quotahub gen` into a running hub, each file as the
    /// agency its manifest names.
    #[command(after_help = EXIT_STATUS)]
    Load(load::LoadArgs),
    /// Re-check a jurisdiction now (定期核查) and print what was raised, updated and resolved.
    Reconcile(ReconcileArgs),
    /// The rectification ledger: `quotahub ledger report` (定期对账) as a table, CSV or JSON.
    Ledger {
        /// What to do with it.
        #[command(subcommand)]
        command: ledger::LedgerCommand,
    },
    /// The report to the leadership (向编委领导报告) for a period: PDF, HTML or its figures as JSON.
    Report(report::ReportArgs),
    /// Follow the alert feed: print alerts as they arrive, acknowledge them, resume after a restart.
    Subscribe(subscribe::SubscribeArgs),
    /// See what quotahub does: a hub on a temporary database, a generated city pushed by every
    /// agency over mutual TLS, and a discipline inspector's live feed of what it finds.
    Demo(demo::DemoArgs),
    /// Measure the hub against baselines from the same run and print one table.
    Bench(crate::bench::BenchArgs),
    /// Generate a city or a province with planted problems, as files `quotahub import` takes,
    /// with the ground truth of what the hub should find.
    Gen(GenArgs),
    /// The agency registry: which agencies the hub serves, with which certificates.
    Agency {
        /// What to do.
        #[command(subcommand)]
        command: admin::AgencyCommand,
    },
    /// The audit trail of every call.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: admin::AuditCommand,
    },
    /// Evidence bundles: export a matter's from the hub, verify one offline.
    Evidence {
        /// What to do.
        #[command(subcommand)]
        command: evidence::EvidenceCommand,
    },
}

/// The exit status of the commands that push files, for scripts.
const EXIT_STATUS: &str = "Exit status: 0 when every record was stored or was already there; \
2 when the hub refused some records or some lines could not be read (the others are stored; \
the refusals are on stderr or in the --errors file); 1 when the push stopped on an error \
(the hub unreachable, a file missing).";

/// Flags of `quotahub gen`.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// small, city or province.
    #[arg(long, default_value = "city")]
    pub scale: String,
    /// Seed: the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory to write `{kind}.jsonl`, `truth.jsonl` and `manifest.json` into.
    #[arg(long, default_value = "quotahub-gen")]
    pub out: PathBuf,
}

/// Where the hub is and how to trust it, for every command that talks to it.
#[derive(Debug, Clone, clap::Args)]
pub struct HubArgs {
    /// Hub address.
    #[arg(
        long,
        env = "QUOTAHUB_SERVER",
        default_value = "https://127.0.0.1:50051"
    )]
    pub server: String,
    /// Directory of the development PKI, for the default certificate paths
    /// (`{jurisdiction}-{agency kind}.pem` and `-key.pem`, as `quotahub pki init` writes them).
    #[arg(long, env = "QUOTAHUB_PKI_DIR", default_value = "quotahub-data/pki")]
    pub pki_dir: PathBuf,
    /// CA bundle to trust the hub by [default: PKI_DIR/ca.pem].
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// How a command reaches the hub, and as which agency.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The hub.
    #[command(flatten)]
    pub hub: HubArgs,
    /// Jurisdiction of the agency (and of its default certificate).
    #[arg(long, default_value = "140100")]
    pub jurisdiction: String,
    /// Agency certificate [default: PKI_DIR/{jurisdiction}-{agency kind}.pem].
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Agency key [default: PKI_DIR/{jurisdiction}-{agency kind}-key.pem].
    #[arg(long)]
    pub key: Option<PathBuf>,
}

impl ClientArgs {
    /// A mutual-TLS channel to the hub as an agency of `kind` (unless a certificate is given).
    pub async fn connect(
        &self,
        kind: crate::domain::AgencyKind,
    ) -> anyhow::Result<tonic::transport::Channel> {
        use anyhow::Context;
        let jurisdiction =
            crate::domain::Jurisdiction::parse(&self.jurisdiction).map_err(anyhow::Error::msg)?;
        let agency = crate::domain::Agency::new(jurisdiction, kind);
        let hub = &self.hub;
        let (default_cert, default_key) = crate::pki::agency_files(&hub.pki_dir, &agency);
        let ca = hub.ca.clone().unwrap_or_else(|| hub.pki_dir.join("ca.pem"));
        let cert = self.cert.clone().unwrap_or(default_cert);
        let key = self.key.clone().unwrap_or(default_key);
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        Ok(
            crate::tls::client_channel(&hub.server, &read(&ca)?, &read(&cert)?, &read(&key)?)
                .await?,
        )
    }
}

/// Flags of `quotahub reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// How to reach the hub (as the staffing office of `--jurisdiction` by default).
    #[command(flatten)]
    pub client: ClientArgs,
    /// Date to check the roll at, YYYY-MM-DD [default: today].
    #[arg(long)]
    pub as_of: Option<String>,
    /// Report what would change without keeping it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print every change (at most 1,000), not only the counts: the call then waits for the
    /// hub's re-check job instead of following its progress.
    #[arg(long)]
    pub verbose: bool,
}

/// `quotahub pki ...`.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Make a development CA, a server certificate for localhost, and a certificate per agency kind
    /// for the sample city 140100 and district 140105.
    Init {
        /// Where to write them.
        #[arg(long, env = "QUOTAHUB_PKI_DIR", default_value = "quotahub-data/pki")]
        dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

/// Flags of `quotahub serve`; each overrides the TOML file and has a `QUOTAHUB_` variable.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML settings file.
    #[arg(long, env = "QUOTAHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "QUOTAHUB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Database URL, `sqlite://FILE` or `postgres://...` [default: sqlite in the data directory].
    #[arg(long, env = "QUOTAHUB_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory for the embedded database and development certificates [default: ./quotahub-data].
    #[arg(long, env = "QUOTAHUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// CA bundle that client certificates must chain to [default: DATA_DIR/pki/ca.pem].
    #[arg(long, env = "QUOTAHUB_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Server certificate [default: DATA_DIR/pki/server.pem].
    #[arg(long, env = "QUOTAHUB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key [default: DATA_DIR/pki/server-key.pem].
    #[arg(long, env = "QUOTAHUB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Revocation list for client certificates, PEM or DER [default: none].
    #[arg(long, env = "QUOTAHUB_TLS_CRL")]
    pub tls_crl: Option<PathBuf>,
    /// Do not make development certificates when they are missing.
    #[arg(long, env = "QUOTAHUB_NO_DEV_PKI")]
    pub no_dev_pki: bool,
    /// Address of the plain-HTTP admin port (/metrics, /healthz, /readyz) [default: none].
    #[arg(long, env = "QUOTAHUB_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Address of the supervision console's HTTPS port [default: none; 127.0.0.1:50052 with
    /// development certificates].
    #[arg(long, env = "QUOTAHUB_CONSOLE_LISTEN")]
    pub console_listen: Option<SocketAddr>,
    /// Longest wait for calls in flight at shutdown, in seconds [default: 30].
    #[arg(long, env = "QUOTAHUB_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// The CJK font of the leadership report's PDF [default: Debian's Noto Sans CJK,
    /// /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc].
    #[arg(long, env = "QUOTAHUB_REPORT_FONT")]
    pub report_font: Option<PathBuf>,
}

impl ServeArgs {
    /// Layers defaults, the TOML file, the environment and the flags.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = match &self.config {
            Some(path) => Settings::from_toml_file(path)?,
            None => Settings::default(),
        };
        if let Some(listen) = self.listen {
            settings.listen = listen;
        }
        if let Some(url) = &self.database_url {
            settings.database_url = Some(url.clone());
        }
        if let Some(dir) = &self.data_dir {
            settings.data_dir = dir.clone();
        }
        settings.tls.ca = self.tls_ca.clone().or(settings.tls.ca);
        settings.tls.cert = self.tls_cert.clone().or(settings.tls.cert);
        settings.tls.key = self.tls_key.clone().or(settings.tls.key);
        settings.tls.crl = self.tls_crl.clone().or(settings.tls.crl);
        if self.no_dev_pki {
            settings.tls.dev_pki = Some(false);
        }
        if let Some(address) = self.admin_listen {
            settings.admin.listen = Some(address);
        }
        if let Some(address) = self.console_listen {
            settings.console.listen = Some(address);
        }
        if let Some(grace) = self.shutdown_grace_secs {
            settings.shutdown_grace_secs = grace;
        }
        if let Some(font) = &self.report_font {
            settings.report.font = font.clone();
        }
        settings.absolutize()?;
        Ok(settings)
    }
}

impl Cli {
    /// The log format in effect: the flag or `QUOTAHUB_LOG_FORMAT`, else `log.format` of the
    /// settings file `serve` is given, else human-readable.
    pub fn log_format(&self) -> crate::telemetry::LogFormat {
        if let Some(format) = self.log_format {
            return format;
        }
        match &self.command {
            Command::Serve(ServeArgs {
                config: Some(path), ..
            }) => Settings::from_toml_file(path)
                .map(|settings| settings.log.format)
                .unwrap_or_default(),
            _ => crate::telemetry::LogFormat::default(),
        }
    }
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    crate::tls::install_crypto_provider();
    match cli.command {
        Command::Serve(args) => {
            let settings = args.settings()?;
            tracing::info!(data_dir = %settings.data_dir.display(), database = %redact(&settings.database_url()), "starting");
            let application = Application::build(&settings).await?;
            println!(
                "quotahub listening on https://{} (mutual TLS; certificates in {})",
                application.local_addr(),
                settings.pki().dir.display()
            );
            if let Some(console) = application.console_addr() {
                println!(
                    "supervision console on https://{console}/ (an agency's certificate in the browser is the login)"
                );
            }
            application.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Pki {
            command: PkiCommand::Init { dir, force },
        } => {
            let report = crate::pki::init(&dir, force)?;
            println!(
                "development PKI in {}: {} files written, {} kept",
                report.dir.display(),
                report.written.len(),
                report.kept.len()
            );
            for path in &report.written {
                println!("  wrote {}", path.display());
            }
        }
        Command::Import(args) => return import::run(args).await,
        Command::Load(args) => return load::run(args).await,
        Command::Ledger { command } => ledger::run(command).await?,
        Command::Report(args) => report::run(args).await?,
        Command::Subscribe(args) => {
            subscribe::run(args, std::io::stdout().lock(), shutdown_signal()).await?;
        }
        Command::Demo(args) => demo::run(args, std::io::stdout().lock()).await?,
        Command::Bench(args) => crate::bench::run(args).await?,
        Command::Agency { command } => admin::run_agency(command, std::io::stdout().lock()).await?,
        Command::Audit { command } => {
            return admin::run_audit(command, std::io::stdout().lock()).await;
        }
        Command::Evidence { command } => {
            return evidence::run(command, std::io::stdout().lock()).await;
        }
        Command::Gen(args) => {
            let config = match args.scale.as_str() {
                "small" => crate::generator::GenConfig::small(args.seed),
                "city" => crate::generator::GenConfig::city(args.seed),
                "province" => crate::generator::GenConfig::province(args.seed),
                other => anyhow::bail!("--scale takes small, city or province, not `{other}`"),
            };
            let dataset = crate::generator::generate(&config);
            let manifest = crate::generator::write(&dataset, &args.out)?;
            println!(
                "{}: {} files as of {}, {} planted problems in truth.jsonl; `quotahub load {}` pushes them into a running hub",
                args.out.display(),
                manifest.files.len(),
                manifest.as_of,
                manifest.truth_count,
                args.out.display()
            );
            print!("{}", gen_rates(&config, &dataset, &manifest));
        }
        Command::Reconcile(args) => {
            let channel = args
                .client
                .connect(crate::domain::AgencyKind::StaffingOffice)
                .await?;
            let mut client =
                crate::proto::reconciliation_service_client::ReconciliationServiceClient::new(
                    channel,
                )
                .max_decoding_message_size(64 * 1024 * 1024);
            // The re-check runs as a job on the hub: followed to its end, with its progress,
            // unless every change is to be printed (then the call waits for the job and lists them).
            let mut report = client
                .reconcile(crate::proto::ReconcileRequest {
                    jurisdiction: args.client.jurisdiction.clone(),
                    as_of: args.as_of.clone().unwrap_or_default(),
                    dry_run: args.dry_run,
                    return_operation: !args.verbose,
                })
                .await?
                .into_inner();
            let mut operation = report.operation.clone().unwrap_or_default();
            let mut shown = None;
            while !operation.done {
                let progress = (operation.chunks_done, operation.chunks_total);
                if shown != Some(progress) {
                    eprintln!(
                        "{}: {} of {} chunks, {} raised, {} updated, {} resolved so far",
                        operation.name,
                        operation.chunks_done,
                        operation.chunks_total,
                        operation.raised,
                        operation.updated,
                        operation.resolved
                    );
                    shown = Some(progress);
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                operation = client
                    .get_operation(crate::proto::GetOperationRequest {
                        name: operation.name.clone(),
                    })
                    .await?
                    .into_inner();
            }
            if operation.state != crate::proto::OperationState::Succeeded as i32 {
                anyhow::bail!(
                    "{} ended {}: {}",
                    operation.name,
                    crate::proto::OperationState::try_from(operation.state)
                        .map(|s| s.as_str_name())
                        .unwrap_or("?"),
                    operation.error
                );
            }
            report.institutions = operation.institutions;
            report.raised = operation.raised;
            report.updated = operation.updated;
            report.resolved = operation.resolved;
            report.open = operation.open;
            println!(
                "{} as of {}: {} institutions, {} raised, {} updated, {} resolved, {} open{}",
                report.jurisdiction,
                report.as_of,
                report.institutions,
                report.raised,
                report.updated,
                report.resolved,
                report.open,
                if report.kept {
                    ""
                } else {
                    " (dry run: nothing kept)"
                }
            );
            if args.verbose {
                for change in &report.changes {
                    if let Some(finding) = &change.finding {
                        let kind = crate::proto::FindingChangeType::try_from(change.change)
                            .map(|c| c.as_str_name())
                            .unwrap_or("?");
                        println!("  {kind:<30} {}", finding.explanation_en);
                    }
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Hides a password in a database URL for the log.
/// What `quotahub gen` says of what it planted: the rates (as scaled), the findings per rule, and
/// for whom the freshness findings hold.
fn gen_rates(
    config: &crate::generator::GenConfig,
    dataset: &crate::generator::Dataset,
    manifest: &crate::generator::Manifest,
) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "planted at these rates (scaled by {}{}):\n",
        config.anomaly_scale,
        if config.min_each > 0 {
            format!(", at least {} of each", config.min_each)
        } else {
            String::new()
        }
    );
    for (problem, rate, of) in crate::generator::RATES {
        let _ = writeln!(
            out,
            "  {problem:<58} {:>7.3}% of {of}",
            rate * config.anomaly_scale * 100.0
        );
    }
    let mut per_code: std::collections::BTreeMap<String, usize> = Default::default();
    for planted in &dataset.truth {
        *per_code.entry(planted.code.to_string()).or_default() += 1;
    }
    let counts: Vec<String> = per_code
        .iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    let _ = writeln!(out, "findings in the truth: {}", counts.join(", "));
    let freshness = dataset
        .truth
        .iter()
        .filter(|p| p.code.about_agency())
        .count();
    let _ = writeln!(
        out,
        "the {freshness} LATE_PAYROLL and BACKDATED_EVENT findings hold for the delivery timeline \
         ({}, {} deliveries by the divisions' HR and finance agencies from {}): a hub started on \
         {} that receives each delivery on its day, as `quotahub bench` replays it; `quotahub load` \
         pushes every file now as the root's agencies, and a live hub judges freshness by its own \
         clock from its first start ([freshness] watch_from)",
        manifest.deliveries, manifest.delivery_count, manifest.start, manifest.start
    );
    out
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            redact("postgres://hub:s3cret@db:5432/quotahub"),
            "postgres://hub:***@db:5432/quotahub"
        );
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn flags_override_the_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\ndatabase_url = \"sqlite://a.db\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "quotahub",
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:7001",
        ]);
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let settings = args.settings().unwrap();
        assert_eq!(settings.listen.port(), 7001);
        assert_eq!(settings.database_url(), "sqlite://a.db");
    }
}
