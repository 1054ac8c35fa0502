//! The `quotahub` binary: a thin shell around [`quotahub::cli`].

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("QUOTAHUB_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match quotahub::cli::run(quotahub::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("quotahub: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
