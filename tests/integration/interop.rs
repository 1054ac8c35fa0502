//! Stock clients against the real hub: the contract compiled by protoc (grpcio-tools), a stock
//! grpcio client pushing a 50,000-record stream at full speed, reflection serving the types of the
//! error details, the code of a message over the size limit, the alert-latency script (subscribers
//! acknowledging on `StreamingSubscribe`, ghost pay pushed) run small.
//!
//! The Python scripts (tests/interop/) need a python3 with grpcio and grpcio-tools: the one named
//! by `QUOTAHUB_TEST_PYTHON`, else `python3`. Without them these tests say so and pass, except in
//! CI (`CI=true`), where they fail: `.ci/run` installs them.

use std::io::Write as _;
use std::path::Path;

use prost::Message as _;
use quotahub::domain::AgencyKind;
use tokio::process::Command;
use tonic::Code;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_stock_grpcio_client_pushes_50_000_records_in_one_stream,
    reflection_serves_the_error_details_types,
    a_message_over_the_size_limit_is_resource_exhausted,
    the_alert_latency_script_measures_the_hub_with_a_stock_grpcio_client,
    a_stock_grpcio_client_reads_the_supervision_figures,
);

/// A python3 with grpcio and grpcio-tools, or `None` (with a note on the terminal) when there is
/// none outside CI.
pub(crate) async fn python() -> Option<String> {
    let python = std::env::var("QUOTAHUB_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let usable = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .await
        .is_ok_and(|output| output.status.success());
    if usable {
        return Some(python);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the interop tests: `{python}` cannot import grpc and grpc_tools \
         (.ci/run installs them; QUOTAHUB_TEST_PYTHON names the interpreter)"
    );
    // Straight to the terminal: the test harness captures only print! and eprint!.
    let _ = writeln!(
        std::io::stderr(),
        "interop test not run: `{python}` cannot import grpc and grpc_tools \
         (pip install grpcio grpcio-tools, or set QUOTAHUB_TEST_PYTHON)"
    );
    None
}

/// Runs a script of tests/interop/ and returns its output, failing the test when it fails.
pub(crate) async fn run_script(python: &str, script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let output = Command::new(python)
        .arg(&path)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the interop script");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    print!("{stdout}");
    stdout
}

#[tokio::test]
async fn the_contract_compiles_with_stock_protoc() {
    let Some(python) = python().await else {
        return;
    };
    let stdout = run_script(&python, "contract.py", &[]).await;
    assert!(stdout.contains("protoc compiles all"), "{stdout}");
}

async fn a_stock_grpcio_client_pushes_50_000_records_in_one_stream(backend: Backend) {
    let Some(python) = python().await else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    // Stored as an initial load (no findings checked): the checked path of 50,000 payroll lines
    // takes minutes in a debug build, and each line's findings (paid, not on the roll) would make
    // the answer larger than the 64 MiB a message may be. What is tested is HTTP/2: the hub still
    // stops reading the stream while it stores each batch.
    app.store.set_push_checks(false);
    let finance = agency("140100", AgencyKind::Finance);
    app.register(&finance).await;
    let files = ClientFiles::new(&finance);
    let address = app.address.to_string();
    let unit = uscc("140100", 1);
    // The script checks every record's result: 49,500 accepted, the 500 with a spoilt resident ID
    // refused with a field violation each, all in stream order.
    let stdout = run_script(
        &python,
        "bulk_push.py",
        &[
            "--address",
            &address,
            "--ca",
            &files.ca,
            "--cert",
            &files.cert,
            "--key",
            &files.key,
            "--uscc",
            &unit,
            "--records",
            "50000",
            "--bad-every",
            "100",
        ],
    )
    .await;
    assert!(stdout.contains("49500 accepted, 500 refused"), "{stdout}");
}

/// Asks the hub's reflection service one question.
async fn reflect(
    client: &mut ServerReflectionClient<tonic::transport::Channel>,
    question: MessageRequest,
) -> MessageResponse {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(question),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let answer: ServerReflectionResponse = answers
        .message()
        .await
        .expect("an answer")
        .expect("one answer");
    answer.message_response.expect("a response")
}

fn files_of(answer: MessageResponse) -> Vec<prost_types::FileDescriptorProto> {
    match answer {
        MessageResponse::FileDescriptorResponse(files) => files
            .file_descriptor_proto
            .iter()
            .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
            .collect(),
        other => panic!("not a file: {other:?}"),
    }
}

async fn reflection_serves_the_error_details_types(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app.channel(&agency("140100", AgencyKind::Finance)).await;
    let mut client = ServerReflectionClient::new(channel);
    // What grpcurl asks to decode a status's details: the file of each detail's type...
    for symbol in [
        "google.rpc.BadRequest",
        "google.rpc.PreconditionFailure",
        "google.rpc.RetryInfo",
    ] {
        let files = files_of(
            reflect(
                &mut client,
                MessageRequest::FileContainingSymbol(symbol.to_owned()),
            )
            .await,
        );
        let file = files
            .iter()
            .find(|file| file.package() == "google.rpc")
            .unwrap_or_else(|| panic!("no google.rpc file for {symbol}: {files:?}"));
        let name = symbol.trim_start_matches("google.rpc.");
        assert!(
            file.message_type.iter().any(|m| m.name() == name),
            "{symbol} is not in {}",
            file.name()
        );
        // ...then every file it imports.
        for dependency in &file.dependency {
            let imported = files_of(
                reflect(
                    &mut client,
                    MessageRequest::FileByFilename(dependency.clone()),
                )
                .await,
            );
            assert!(
                imported.iter().any(|f| f.name() == dependency),
                "{dependency} (imported by {}) is not served",
                file.name()
            );
        }
    }
}

async fn a_message_over_the_size_limit_is_resource_exhausted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut finance = app.finance("140100").await;
    let mut line = payroll("huge", &resident(1), &uscc("140100", 1), "2024-03");
    // 64 MiB is the limit of one message.
    line.name = "x".repeat(64 * 1024 * 1024 + 1);
    let status = finance
        .push_payroll_line(line.clone())
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // In a stream too.
    let status = finance
        .push_payroll_lines(tokio_stream::iter([line]))
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

/// A smoke run of `tests/interop/alert_latency.py` (the benchmark against NATS JetStream in
/// BENCHMARKS.md): 1 and then 3 grpcio subscribers acknowledging on their streams, a few ghost
/// payroll lines pushed one at a time, every alert received by every subscriber (the script fails
/// otherwise). NATS is left out; no figure is asserted.
async fn the_alert_latency_script_measures_the_hub_with_a_stock_grpcio_client(backend: Backend) {
    let Some(python) = python().await else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    // The script reads the certificates of 140100 as `quotahub serve` lays them out.
    let certificates = tempfile::tempdir().unwrap();
    std::fs::write(certificates.path().join("ca.pem"), pki().ca.cert_pem()).unwrap();
    for (kind, file) in [
        (AgencyKind::StaffingOffice, "staffing-office"),
        (AgencyKind::Finance, "finance"),
        (AgencyKind::Discipline, "discipline"),
    ] {
        let agency = agency("140100", kind);
        app.register(&agency).await;
        let certificate = pki().agency(&agency);
        std::fs::write(
            certificates.path().join(format!("140100-{file}.pem")),
            &certificate.cert_pem,
        )
        .unwrap();
        std::fs::write(
            certificates.path().join(format!("140100-{file}-key.pem")),
            &certificate.key_pem,
        )
        .unwrap();
    }
    let address = app.address.to_string();
    let stdout = run_script(
        &python,
        "alert_latency.py",
        &[
            "--address",
            &address,
            "--pki-dir",
            certificates.path().to_str().unwrap(),
            "--subscribers",
            "1,3",
            "--messages",
            "5",
            "--warmup",
            "1",
            "--nats",
            "",
        ],
    )
    .await;
    assert!(stdout.contains("| 1 | 5 |"), "{stdout}");
    assert!(stdout.contains("| 3 | 5 |"), "{stdout}");
}

/// The supervision division's reads from a stock client: the balance, the findings in numbers,
/// freshness, a campaign opened (and resent) and listed, the leadership report as a PDF. The
/// script checks each answer against the one over-quota institution pushed here.
async fn a_stock_grpcio_client_reads_the_supervision_figures(backend: Backend) {
    let Some(python) = python().await else {
        return;
    };
    let today = "2024-06-15";
    let app = TestApp::spawn_on(backend, today.parse().unwrap()).await;
    let unit = uscc("140100", 1);
    let mut staffing = app.staffing("140100").await;
    staffing
        .push_institution(organ("i1", &unit, "140100"))
        .await
        .unwrap();
    staffing.push_quota(quota("q1", &unit, 1)).await.unwrap();
    let mut hr = app.hr("140100").await;
    for n in 1..=2 {
        hr.push_personnel_event(hire(&format!("h{n}"), &resident(n), &unit, "2024-03-01"))
            .await
            .unwrap();
    }
    let office = agency("140100", AgencyKind::StaffingOffice);
    app.register(&office).await;
    let files = ClientFiles::new(&office);
    let address = app.address.to_string();
    let stdout = run_script(
        &python,
        "supervision.py",
        &[
            "--address",
            &address,
            "--ca",
            &files.ca,
            "--cert",
            &files.cert,
            "--key",
            &files.key,
            "--institution",
            &unit,
            "--today",
            today,
        ],
    )
    .await;
    assert!(stdout.contains("supervision figures read"), "{stdout}");
    // The campaign the script opened (once, though sent twice) is the hub's.
    let campaigns: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM campaigns")
        .fetch_one(app.store.readers())
        .await
        .unwrap();
    assert_eq!(campaigns, 1);
}
