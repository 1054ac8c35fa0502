//! The `quotahub` binary: a thin shell around [`quotahub::cli`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = quotahub::cli::Cli::parse();
    let telemetry = match quotahub::telemetry::init(cli.log_format()) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("quotahub: cannot set up logging and tracing: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match quotahub::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("quotahub: {error:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}
