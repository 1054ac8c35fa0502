//! What the hub tells its operators: logs (human-readable or JSON), traces exported over OTLP when
//! the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and metrics read by Prometheus from the admin
//! port and exported over OTLP as well.
//!
//! - [`rpc`]: the tower layer that gives every call a span and its metrics;
//! - [`metrics`]: the instruments and the Prometheus text rendering;
//! - [`admin`]: the plain-HTTP admin port (`/metrics`, `/healthz`, `/readyz`).

pub mod admin;
pub mod metrics;
pub mod rpc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use metrics::Metrics;

/// The standard variable that turns OTLP export on.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How log lines are written.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event, with the fields of the spans around it.
    Json,
}

/// Whether OTLP export is configured in the environment.
pub fn otlp_configured() -> bool {
    std::env::var_os(OTLP_ENDPOINT_VAR).is_some_and(|value| !value.is_empty())
}

/// The resource every exported span and metric carries: `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` when set, `quotahub` otherwise.
pub fn resource() -> Resource {
    let builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        builder.build()
    } else {
        builder.with_service_name("quotahub").build()
    }
}

/// Flushes the exporters when the process ends.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Sends the spans still buffered, giving up after a few seconds when the collector does not
    /// answer (the process has already drained by then).
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(error) = provider.shutdown_with_timeout(std::time::Duration::from_secs(3))
        {
            eprintln!("quotahub: cannot flush traces: {error}");
        }
    }
}

/// Installs the process's subscriber: the log filter from `QUOTAHUB_LOG` (default
/// `info,sqlx=error`), lines in `format` on stderr, and spans to OTLP when configured. Call it
/// once, inside the Tokio runtime (the OTLP exporter is a tonic client).
pub fn init(format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_env("QUOTAHUB_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=error"));
    let (human, json) = match format {
        LogFormat::Human => (
            Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            ),
        ),
    };
    let tracer_provider = if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        Some(
            SdkTracerProvider::builder()
                .with_resource(resource())
                .with_batch_exporter(exporter)
                .build(),
        )
    } else {
        None
    };
    let otel = tracer_provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("quotahub")));
    tracing_subscriber::registry()
        .with(filter)
        .with(human)
        .with(json)
        .with(otel)
        .try_init()?;
    if tracer_provider.is_some() {
        tracing::info!(
            endpoint = %std::env::var(OTLP_ENDPOINT_VAR).unwrap_or_default(),
            "exporting traces and metrics over OTLP"
        );
    }
    Ok(TelemetryGuard { tracer_provider })
}
