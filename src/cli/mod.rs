//! The `quotahub` command: `serve` runs the hub, `pki init` makes development certificates,
//! `import` pushes a CSV or JSONL file as an agency.

mod import;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::server::{Application, shutdown_signal};

/// quotahub: the data-sharing hub for staffing-quota supervision.
#[derive(Debug, Parser)]
#[command(name = "quotahub", version, about)]
pub struct Cli {
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
    Import(import::ImportArgs),
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
    /// Do not make development certificates when they are missing.
    #[arg(long, env = "QUOTAHUB_NO_DEV_PKI")]
    pub no_dev_pki: bool,
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
        if self.no_dev_pki {
            settings.tls.dev_pki = Some(false);
        }
        settings.absolutize()?;
        Ok(settings)
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
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Hides a password in a database URL for the log.
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
