//! What an operator sees: the spans of a call (through an in-memory OpenTelemetry exporter) and
//! the counts a scrape of the admin port's `/metrics` finds after some traffic.

use std::net::SocketAddr;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::server::Application;
use quotahub::store::{Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing_subscriber::layer::SubscriberExt;

use crate::feed::{next_event, subscribe};
use crate::helpers::*;
use crate::on_both_backends;

/// The spans every in-process hub of this test binary records, from the first call on. The
/// subscriber is the process's default: a subscriber set for one thread loses spans whose last
/// handle is dropped on another thread (the SQLite driver's worker threads hold some).
fn recorded_spans() -> Option<&'static InMemorySpanExporter> {
    static EXPORTER: OnceLock<Option<(InMemorySpanExporter, SdkTracerProvider)>> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let subscriber = tracing_subscriber::registry()
                .with(tracing_subscriber::EnvFilter::new("quotahub=info"))
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
            tracing::subscriber::set_global_default(subscriber)
                .ok()
                .map(|()| (exporter, provider))
        })
        .as_ref()
        .map(|(exporter, _)| exporter)
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

async fn a_push_leaves_an_rpc_span_with_agency_and_method_around_its_store_span(backend: Backend) {
    let Some(exporter) = recorded_spans() else {
        println!("skipped: another subscriber is the process's default (TEST_LOG is set)");
        return;
    };
    // Other tests push as other agencies at the same time: this one's agency is its own.
    let jurisdiction = match backend {
        Backend::Sqlite => "140121",
        Backend::Postgres => "140122",
    };
    let app = TestApp::spawn(backend).await;
    let unit = uscc(jurisdiction, 1);
    let mut staffing = app.staffing(jurisdiction).await;
    staffing
        .push_institution(organ("i1", &unit, jurisdiction))
        .await
        .unwrap();
    staffing.push_quota(quota("q1", &unit, 3)).await.unwrap();
    let refused = staffing
        .push_quota(quota("q-bad", "not-a-uscc", 3))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // A call's span ends when the server drops the call, which may come just after the client has
    // its answer.
    let agency = agency(jurisdiction, AgencyKind::StaffingOffice).id();
    let ours = |span: &SpanData| {
        span.name == "quotahub.v1.StaffingService/PushQuota"
            && attribute(span, "agency").as_deref() == Some(agency.as_str())
    };
    let spans = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            let spans = exporter.get_finished_spans().unwrap();
            if spans.iter().filter(|span| ours(span)).count() >= 2 {
                return spans;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the spans of both calls");
    let pushes: Vec<&SpanData> = spans.iter().filter(|span| ours(span)).collect();
    assert_eq!(pushes.len(), 2, "one span per call: {pushes:#?}");
    for span in &pushes {
        assert_eq!(
            attribute(span, "rpc.method").as_deref(),
            Some("quotahub.v1.StaffingService/PushQuota")
        );
        assert_eq!(attribute(span, "rpc.system").as_deref(), Some("grpc"));
    }
    let codes: Vec<Option<String>> = pushes
        .iter()
        .map(|span| attribute(span, "rpc.grpc.status_code"))
        .collect();
    assert!(codes.contains(&Some("0".into())), "{codes:?}");
    assert!(
        codes.contains(&Some((tonic::Code::InvalidArgument as i32).to_string())),
        "{codes:?}"
    );

    // The accepted push's store call is a child of its call's span and says what it stored.
    let accepted = pushes
        .iter()
        .find(|span| attribute(span, "rpc.grpc.status_code").as_deref() == Some("0"))
        .unwrap();
    assert_eq!(attribute(accepted, "records").as_deref(), Some("1"));
    let store_push = spans
        .iter()
        .find(|span| {
            span.name == "store.push" && span.parent_span_id == accepted.span_context.span_id()
        })
        .unwrap_or_else(|| panic!("a store.push span under the call: {spans:#?}"));
    assert_eq!(attribute(store_push, "kind").as_deref(), Some("quota"));
    assert_eq!(
        store_push.span_context.trace_id(),
        accepted.span_context.trace_id()
    );
}

/// A hub with an admin port on a fresh database of `backend`.
struct AdminApp {
    app: TestApp,
    admin: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn spawn_with_admin(backend: Backend) -> AdminApp {
    // The harness's hub, and a second replica on its database with an admin port: the harness's
    // clients are pointed at the second, so that its metrics count all the traffic.
    let app = TestApp::spawn(backend).await;
    let store = Store::connect(app.db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let application = Application::with_listener(
        listener,
        store,
        &pki().server_tls(),
        quotahub::api::Limits::default(),
    )
    .unwrap()
    .with_admin(admin_listener);
    let admin = application.admin_addr().unwrap();
    let address = application.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let mut app = app;
    app.address = address;
    AdminApp {
        app,
        admin,
        _stop: stop,
    }
}

/// GETs `path` from the admin port over plain HTTP/1.1: the status code and the body.
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

on_both_backends!(
    a_push_leaves_an_rpc_span_with_agency_and_method_around_its_store_span,
    metrics_count_the_calls_records_findings_and_subscribers_that_traffic_caused,
);

async fn metrics_count_the_calls_records_findings_and_subscribers_that_traffic_caused(
    backend: Backend,
) {
    let hub = spawn_with_admin(backend).await;
    let app = &hub.app;
    assert_eq!(http_get(hub.admin, "/healthz").await.0, 200);
    assert_eq!(http_get(hub.admin, "/readyz").await.0, 200);
    // grpc.health.v1 answers on the admin port too, in plaintext and without a certificate (the
    // kubelet's gRPC probe), for the hub as a whole and per service.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", hub.admin))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut probe = tonic_health::pb::health_client::HealthClient::new(plain);
    for service in ["", "quotahub.v1.FinanceService"] {
        let status = probe
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    let unit = uscc("140100", 1);
    let mut staffing = app.staffing("140100").await;
    staffing
        .push_institution(organ("i1", &unit, "140100"))
        .await
        .unwrap();
    for n in 0..3 {
        staffing
            .push_quota(quota(&format!("q{n}"), &unit, 3))
            .await
            .unwrap();
    }
    staffing.push_quota(quota("q0", &unit, 3)).await.unwrap();
    let refused = staffing
        .push_quota(quota("q-bad", "not-a-uscc", 3))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // Ghost pay for someone on no roll, in an institution the hub does not know: two findings.
    let ghost = uscc("140100", 2);
    let mut finance = app.finance("140100").await;
    let lines = vec![
        payroll("p1", &resident(1), &ghost, "2024-01"),
        payroll("p2", &resident(2), "not-a-uscc", "2024-01"),
    ];
    let bulk = finance
        .push_payroll_lines(futures::stream::iter(lines))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((bulk.accepted, bulk.rejected), (1, 1));

    // A subscriber that has received an event is connected, and behind by what it has not acked.
    let mut inspector = proto::feed_service_client::FeedServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Discipline)).await,
    );
    inspector
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "ops".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut stream = subscribe(&mut inspector, "ops", None).await;
    next_event(&mut stream).await;

    let (status, text) = http_get(hub.admin, "/metrics").await;
    assert_eq!(status, 200);
    let staffing_office = agency("140100", AgencyKind::StaffingOffice).id();
    let calls = |code: &str, method: &str, agency: &str| {
        sample(
            &text,
            &format!(
                "quotahub_rpc_calls_total{{agency=\"{agency}\",code=\"{code}\",method=\"quotahub.v1.{method}\"}}"
            ),
        )
    };
    assert_eq!(
        calls("OK", "StaffingService/PushQuota", &staffing_office),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        calls(
            "INVALID_ARGUMENT",
            "StaffingService/PushQuota",
            &staffing_office
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "quotahub_rpc_duration_seconds_count{{agency=\"{staffing_office}\",method=\"quotahub.v1.StaffingService/PushQuota\"}}"
            )
        ),
        Some(5.0),
        "{text}"
    );
    let records = |kind: &str, outcome: &str| {
        sample(
            &text,
            &format!("quotahub_records_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(records("quota", "accepted"), Some(3.0), "{text}");
    assert_eq!(records("quota", "replayed"), Some(1.0), "{text}");
    assert_eq!(records("quota", "rejected"), Some(1.0), "{text}");
    assert_eq!(records("payroll_line", "accepted"), Some(1.0), "{text}");
    assert_eq!(records("payroll_line", "rejected"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "quotahub_feed_subscribers"),
        Some(1.0),
        "{text}"
    );
    let open: f64 = text
        .lines()
        .filter(|line| line.starts_with("quotahub_findings_open{rule=\"PAID_NOT_ON_ROLL\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(open, 1.0, "{text}");
    let head = app.store.feed_head().await.unwrap();
    assert!(head >= 1);
    let discipline = agency("140100", AgencyKind::Discipline).id();
    assert_eq!(
        sample(
            &text,
            &format!(
                "quotahub_feed_unacknowledged_events{{agency=\"{discipline}\",subscription=\"ops\"}}"
            )
        ),
        Some(head as f64),
        "{text}"
    );
    assert!(
        sample(&text, "quotahub_db_pool_connections{state=\"size\"}").is_some_and(|n| n >= 1.0),
        "{text}"
    );
}
