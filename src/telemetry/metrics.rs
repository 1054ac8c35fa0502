//! The hub's metrics, through the OpenTelemetry metrics API: recorded where things happen, read by
//! a reader of our own that renders the Prometheus text format for the admin port's `/metrics`,
//! and exported over OTLP as well when configured. (opentelemetry-prometheus does not follow
//! opentelemetry 0.33; the text format is small enough to write here.)
//!
//! Every [`Metrics`] has its own meter provider, so two hubs in one process (the tests) keep
//! separate counts.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Histogram, MeterProvider as _, ObservableGauge, UpDownCounter,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};

use crate::store::Store;
use crate::store::stats::StoreStats;

/// Bucket bounds of call latency, in seconds: a read takes milliseconds, a bulk push seconds.
const LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The instruments, shared by every clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    calls: Counter<u64>,
    latency: Histogram<f64>,
    records: Counter<u64>,
    subscribers: UpDownCounter<i64>,
    escalations: Counter<u64>,
    /// What the gauges report, refreshed from the store by the hub's probe and at every scrape.
    gauges: Arc<Mutex<Gauges>>,
    _observed: Vec<ObservableGauge<i64>>,
}

/// Reads gauges into an observer (value, labels).
type Reading = fn(&Gauges, &mut dyn FnMut(i64, &[KeyValue]));

/// The latest readings of the gauges that come from the database.
#[derive(Debug, Default)]
struct Gauges {
    stats: StoreStats,
    /// The store whose pools are observed, once the hub has one.
    store: Option<Store>,
    /// Whether the last probe reached the database.
    database_up: Option<bool>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new(None)
    }
}

impl Metrics {
    /// Metrics for `/metrics`, and over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub fn from_env() -> anyhow::Result<Metrics> {
        let exporter = if super::otlp_configured() {
            Some(
                opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .build()?,
            )
        } else {
            None
        };
        Ok(Metrics::new(exporter))
    }

    /// Metrics for `/metrics`, and for `exporter` every 30 seconds if given.
    pub fn new(exporter: Option<opentelemetry_otlp::MetricExporter>) -> Metrics {
        let reader = Arc::new(ManualReader::builder().build());
        let mut builder = SdkMeterProvider::builder()
            .with_resource(super::resource())
            .with_reader(SharedReader(reader.clone()));
        if let Some(exporter) = exporter {
            builder = builder.with_reader(
                opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                    .with_interval(Duration::from_secs(30))
                    .build(),
            );
        }
        let provider = builder.build();
        let meter = provider.meter("quotahub");
        let gauges = Arc::new(Mutex::new(Gauges::default()));
        let observe = |name: &'static str, description: &'static str, read: Reading| {
            let gauges = gauges.clone();
            meter
                .i64_observable_gauge(name)
                .with_description(description)
                .with_callback(move |observer| {
                    let gauges = gauges.lock().expect("not poisoned");
                    read(&gauges, &mut |value, attributes| {
                        observer.observe(value, attributes);
                    });
                })
                .build()
        };
        let observed = vec![
            observe(
                "quotahub_findings_open",
                "Open findings by rule code and severity.",
                |gauges, observe| {
                    for (rule, severity, count) in &gauges.stats.open_findings {
                        observe(
                            *count,
                            &[
                                KeyValue::new("rule", rule.clone()),
                                KeyValue::new("severity", severity.clone()),
                            ],
                        );
                    }
                },
            ),
            observe(
                "quotahub_feed_unacknowledged_events",
                "Feed events after each subscription's acknowledged cursor.",
                |gauges, observe| {
                    for (agency, name, behind) in &gauges.stats.unacknowledged {
                        observe(
                            *behind,
                            &[
                                KeyValue::new("agency", agency.clone()),
                                KeyValue::new("subscription", name.clone()),
                            ],
                        );
                    }
                },
            ),
            observe(
                "quotahub_db_pool_connections",
                "Database connections open, by state (size counts all, idle the unused).",
                |gauges, observe| {
                    if let Some(store) = &gauges.store {
                        let pool = store.pool_stats();
                        observe(i64::from(pool.size), &[KeyValue::new("state", "size")]);
                        observe(i64::from(pool.idle), &[KeyValue::new("state", "idle")]);
                    }
                },
            ),
            observe(
                "quotahub_db_up",
                "1 when the last probe reached the database, 0 when it failed.",
                |gauges, observe| {
                    if let Some(up) = gauges.database_up {
                        observe(i64::from(up), &[]);
                    }
                },
            ),
        ];
        let inner = Inner {
            calls: meter
                .u64_counter("quotahub_rpc_calls")
                .with_description("gRPC calls by method, agency and status code.")
                .build(),
            latency: meter
                .f64_histogram("quotahub_rpc_duration_seconds")
                .with_description(
                    "Time to answer a call (for a stream, until the stream starts), by method and agency.",
                )
                .with_unit("s")
                .with_boundaries(LATENCY_BOUNDS.to_vec())
                .build(),
            records: meter
                .u64_counter("quotahub_records")
                .with_description("Pushed records by kind and outcome (accepted, replayed, rejected).")
                .build(),
            subscribers: meter
                .i64_up_down_counter("quotahub_feed_subscribers")
                .with_description("Feed streams connected to this replica.")
                .build(),
            escalations: meter
                .u64_counter("quotahub_escalations")
                .with_description("Alert escalation steps taken by this replica.")
                .build(),
            provider,
            reader,
            gauges,
            _observed: observed,
        };
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// Counts a call and its latency.
    pub fn call(&self, method: &str, agency: &str, code: tonic::Code, elapsed: Duration) {
        let labels = [
            KeyValue::new("method", method.to_owned()),
            KeyValue::new("agency", agency.to_owned()),
        ];
        self.inner.latency.record(elapsed.as_secs_f64(), &labels);
        let [method, agency] = labels;
        self.inner.calls.add(
            1,
            &[
                method,
                agency,
                KeyValue::new("code", crate::api::status::grpc_code_name(code)),
            ],
        );
    }

    /// Counts pushed records of one kind.
    pub fn records(&self, kind: &'static str, accepted: u64, replayed: u64, rejected: u64) {
        for (outcome, count) in [
            ("accepted", accepted),
            ("replayed", replayed),
            ("rejected", rejected),
        ] {
            if count > 0 {
                self.inner.records.add(
                    count,
                    &[
                        KeyValue::new("kind", kind),
                        KeyValue::new("outcome", outcome),
                    ],
                );
            }
        }
    }

    /// Counts a feed stream as connected until the returned guard is dropped.
    pub fn subscriber_connected(&self) -> SubscriberGuard {
        self.inner.subscribers.add(1, &[]);
        SubscriberGuard {
            metrics: self.clone(),
        }
    }

    /// Counts escalation steps.
    pub fn escalated(&self, steps: usize) {
        self.inner
            .escalations
            .add(u64::try_from(steps).unwrap_or(u64::MAX), &[]);
    }

    /// Observes this store's pools from now on.
    pub fn watch_store(&self, store: &Store) {
        self.gauges().store = Some(store.clone());
    }

    /// Records the outcome of a database probe.
    pub fn database_up(&self, up: bool) {
        self.gauges().database_up = Some(up);
    }

    /// Replaces the gauges read from the database.
    pub fn store_stats(&self, stats: StoreStats) {
        self.gauges().stats = stats;
    }

    fn gauges(&self) -> std::sync::MutexGuard<'_, Gauges> {
        self.inner.gauges.lock().expect("not poisoned")
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut metrics = ResourceMetrics::default();
        if let Err(error) = self.inner.reader.collect(&mut metrics) {
            tracing::warn!(%error, "cannot collect metrics");
        }
        render(&metrics)
    }

    /// Sends what the OTLP exporter has not sent yet and stops it.
    pub fn shutdown(&self) {
        if let Err(error) = self.inner.provider.shutdown() {
            tracing::debug!(%error, "metrics provider already shut down");
        }
    }
}

/// Decrements the subscriber gauge when a feed stream ends.
#[derive(Debug)]
pub struct SubscriberGuard {
    metrics: Metrics,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.metrics.inner.subscribers.add(-1, &[]);
    }
}

/// The manual reader, registered with the provider while the hub keeps a handle to collect from.
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, metrics: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(metrics)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// A number as Prometheus writes it.
trait Sample: Copy {
    fn text(self) -> String;
}

impl Sample for u64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for i64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for f64 {
    fn text(self) -> String {
        if self.is_nan() {
            "NaN".to_owned()
        } else if self.is_infinite() {
            if self > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
        } else {
            self.to_string()
        }
    }
}

/// Renders collected metrics in the Prometheus text format: a counter becomes `{name}_total`, a
/// histogram its cumulative `_bucket`s, `_sum` and `_count`.
fn render(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let name = sanitize(metric.name());
            match metric.data() {
                AggregatedMetrics::F64(data) => {
                    render_data(&mut out, &name, metric.description(), data);
                }
                AggregatedMetrics::U64(data) => {
                    render_data(&mut out, &name, metric.description(), data);
                }
                AggregatedMetrics::I64(data) => {
                    render_data(&mut out, &name, metric.description(), data);
                }
            }
        }
    }
    out
}

fn render_data<T: Sample>(out: &mut String, name: &str, help: &str, data: &MetricData<T>) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    match data {
        MetricData::Sum(sum) => {
            let (name, kind) = if sum.is_monotonic() {
                (
                    format!("{}_total", name.trim_end_matches("_total")),
                    "counter",
                )
            } else {
                (name.to_owned(), "gauge")
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for point in sum.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(point.attributes(), None),
                    point.value().text()
                );
            }
        }
        MetricData::Gauge(gauge) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for point in gauge.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(point.attributes(), None),
                    point.value().text()
                );
            }
        }
        MetricData::Histogram(histogram) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for point in histogram.data_points() {
                let mut cumulative = 0;
                let bounds: Vec<String> = point
                    .bounds()
                    .map(Sample::text)
                    .chain(std::iter::once("+Inf".to_owned()))
                    .collect();
                for (bound, count) in bounds.iter().zip(point.bucket_counts()) {
                    cumulative += count;
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(point.attributes(), Some(bound))
                    );
                }
                let plain = labels(point.attributes(), None);
                let _ = writeln!(out, "{name}_sum{plain} {}", point.sum().text());
                let _ = writeln!(out, "{name}_count{plain} {}", point.count());
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// `{key="value",...}` with the values escaped, and `le` last for a histogram bucket.
fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut pairs: Vec<String> = attributes
        .map(|kv| {
            format!(
                "{}=\"{}\"",
                sanitize(kv.key.as_str()),
                escape(&kv.value.as_str())
            )
        })
        .collect();
    pairs.sort();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus names take letters, digits, `_` and `:` only.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_gauges_render_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.call(
            "quotahub.v1.StaffingService/PushQuota",
            "140100-STAFFING_OFFICE",
            tonic::Code::Ok,
            Duration::from_millis(3),
        );
        metrics.records("quota", 2, 0, 1);
        let guard = metrics.subscriber_connected();
        metrics.store_stats(StoreStats {
            open_findings: vec![("OVER_QUOTA".into(), "HIGH".into(), 4)],
            unacknowledged: vec![("140100-DISCIPLINE".into(), "inbox \"a\"".into(), 7)],
        });
        let text = metrics.render_prometheus();
        assert!(
            text.contains("quotahub_rpc_calls_total{agency=\"140100-STAFFING_OFFICE\",code=\"OK\",method=\"quotahub.v1.StaffingService/PushQuota\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE quotahub_rpc_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.0025\"} 0"), "{text}");
        assert!(text.contains("quotahub_rpc_duration_seconds_count{agency=\"140100-STAFFING_OFFICE\",method=\"quotahub.v1.StaffingService/PushQuota\"} 1"), "{text}");
        assert!(
            text.contains("quotahub_records_total{kind=\"quota\",outcome=\"accepted\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("quotahub_records_total{kind=\"quota\",outcome=\"rejected\"} 1"),
            "{text}"
        );
        assert!(!text.contains("outcome=\"replayed\""), "{text}");
        assert!(text.contains("quotahub_feed_subscribers 1"), "{text}");
        assert!(
            text.contains("quotahub_findings_open{rule=\"OVER_QUOTA\",severity=\"HIGH\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("subscription=\"inbox \\\"a\\\"\"} 7"),
            "{text}"
        );
        drop(guard);
        assert!(
            metrics
                .render_prometheus()
                .contains("quotahub_feed_subscribers 0")
        );
    }
}
