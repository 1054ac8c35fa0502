//! Hardening found from outside (issue 13): every answered call is in the audit trail after a
//! kill -9, idle sockets cannot exhaust the TLS handshake slots, and the audit agencies of the
//! hub's province see the refused handshakes and the calls of certificates that name no agency.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quotahub::domain::AgencyKind;
use quotahub::domain::audit::{AuditEntry, HANDSHAKE_METHOD};
use quotahub::pki::Validity;
use quotahub::proto;
use quotahub::store::trust::AuditFilter;
use quotahub::store::{Store, StoreOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tonic::Code;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    every_answered_call_is_in_the_audit_trail_after_kill_9,
    idle_sockets_from_one_address_do_not_keep_an_agency_out,
    province_auditors_see_the_handshakes_their_hub_refused,
    province_auditors_see_calls_of_certificates_naming_no_agency,
);

/// Starts `quotahub serve` on `db_url` (agencies registered first) and returns the process and
/// the endpoint it announces.
async fn start_hub(db_url: &str, files: &Path) -> (Child, String) {
    register_agencies_in(db_url).await;
    let tls = pki().server_tls();
    std::fs::write(files.join("ca.pem"), &tls.ca_pem).unwrap();
    std::fs::write(files.join("server.pem"), &tls.cert_pem).unwrap();
    std::fs::write(files.join("server-key.pem"), &tls.key_pem).unwrap();
    std::fs::write(files.join("quotahub.toml"), "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quotahub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-dev-pki"])
        .args(["--database-url", db_url])
        .arg("--config")
        .arg(files.join("quotahub.toml"))
        .arg("--data-dir")
        .arg(files.join("data"))
        .arg("--tls-ca")
        .arg(files.join("ca.pem"))
        .arg("--tls-cert")
        .arg(files.join("server.pem"))
        .arg("--tls-key")
        .arg(files.join("server-key.pem"))
        .env("QUOTAHUB_LOG", "warn,sqlx=error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start quotahub serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("the hub says where it listens");
    let endpoint = line
        .split_whitespace()
        .find(|word| word.starts_with("https://"))
        .expect("an address")
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, endpoint)
}

/// The record ids of the pushes of funding the trail holds.
async fn audited_fundings(db_url: &str) -> BTreeSet<String> {
    let store = Store::connect(db_url, &StoreOptions::default())
        .await
        .expect("open the store");
    let entries = store
        .audit_entries(&AuditFilter {
            method: Some("/quotahub.v1.FinanceService/PushFunding".into()),
            limit: 1_000_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    store.close().await;
    entries
        .into_iter()
        .filter_map(|row| {
            row.entry
                .touched
                .strip_prefix("record_id ")
                .map(str::to_owned)
        })
        .collect()
}

/// Three finance agencies push funding to a hub process until it is killed with SIGKILL right
/// after an answer arrives; after each of a few rounds every answered push is in the trail.
async fn every_answered_call_is_in_the_audit_trail_after_kill_9(backend: Backend) {
    let db = TestDb::new(backend).await;
    let files = tempfile::tempdir().unwrap();
    let answered = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    for round in 0..3u32 {
        let (mut hub, endpoint) = start_hub(db.url(), files.path()).await;
        let (kill_tx, mut kill) = tokio::sync::mpsc::unbounded_channel::<()>();
        let target = 150 * (round as usize + 1);
        let mut clients = Vec::new();
        for (client, division) in ["140100", "140105", "140200"].into_iter().enumerate() {
            let (endpoint, answered, kill_tx) =
                (endpoint.clone(), answered.clone(), kill_tx.clone());
            clients.push(tokio::spawn(async move {
                let certificate = pki().agency(&agency(division, AgencyKind::Finance));
                let channel = quotahub::tls::client_channel(
                    &endpoint,
                    pki().ca.cert_pem().as_bytes(),
                    certificate.cert_pem.as_bytes(),
                    certificate.key_pem.as_bytes(),
                )
                .await
                .unwrap();
                let mut finance = proto::finance_service_client::FinanceServiceClient::new(channel);
                for n in 0..2_000u32 {
                    let record_id = format!("r{round}-c{client}-{n}");
                    let pushed = finance
                        .push_funding(proto::Funding {
                            record_id: record_id.clone(),
                            institution_uscc: uscc(division, 1 + n % 5),
                            category: proto::QuotaCategory::Administrative as i32,
                            period: "2024-03".into(),
                            funded_headcount: 1,
                            amount_fen: 650_000,
                        })
                        .await;
                    // A call that got no answer (the hub is gone) ends the client.
                    if pushed.is_err() {
                        return;
                    }
                    let count = {
                        let mut answered = answered.lock().unwrap();
                        answered.insert(record_id);
                        answered.len()
                    };
                    if count >= target {
                        let _ = kill_tx.send(());
                    }
                }
            }));
        }
        drop(kill_tx);
        // SIGKILL as soon as an answer brings the count to the target (or every client stopped).
        let _ = kill.recv().await;
        hub.start_kill().expect("SIGKILL the hub");
        hub.wait().await.unwrap();
        for client in clients {
            client.await.unwrap();
        }
        assert!(
            answered.lock().unwrap().len() >= target,
            "the pushes were not answered"
        );
        let audited = audited_fundings(db.url()).await;
        let missing: Vec<String> = answered
            .lock()
            .unwrap()
            .difference(&audited)
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} answered pushes are not in the audit trail: {missing:?}",
            missing.len()
        );
    }
}

/// Idle sockets from 127.0.0.1, far more than the hub's handshake slots, held open while a
/// registered agency connects from the same address and calls.
async fn idle_sockets_from_one_address_do_not_keep_an_agency_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut idle = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        idle.push(TcpStream::connect(app.address).await.expect("connect"));
    }
    let certificate = pki().agency(&agency("140100", AgencyKind::Finance));
    let channel = quotahub::tls::client_channel(
        &app.endpoint(),
        pki().ca.cert_pem().as_bytes(),
        certificate.cert_pem.as_bytes(),
        certificate.key_pem.as_bytes(),
    )
    .await
    .expect("the agency connects despite the idle sockets");
    proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
        .list_findings(proto::ListFindingsRequest::default())
        .await
        .expect("and is served");
    drop(idle);
}

/// Waits (at most ten seconds) for an entry that `matches` to be in the trail.
async fn in_trail(app: &TestApp, matches: impl Fn(&AuditEntry) -> bool) {
    for _ in 0..200 {
        app.audit.flush().await;
        let entries = app
            .store
            .audit_entries(&AuditFilter {
                limit: 100_000,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        if entries.iter().any(|row| matches(&row.entry)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no such entry in the audit trail");
}

/// What the audit agency of `jurisdiction` reads of the trail for `method`.
async fn trail_as(app: &TestApp, jurisdiction: &str, method: &str) -> Vec<proto::AuditRecord> {
    proto::audit_service_client::AuditServiceClient::new(
        app.channel(&agency(jurisdiction, AgencyKind::Audit)).await,
    )
    .query_audit(proto::QueryAuditRequest {
        method: method.into(),
        page_size: 1_000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .entries
}

async fn province_auditors_see_the_handshakes_their_hub_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let anonymous = async {
        let channel = quotahub::tls::client_channel_without_identity(
            &app.endpoint(),
            pki().ca.cert_pem().as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
            .list_findings(proto::ListFindingsRequest::default())
            .await
            .map_err(|e| e.to_string())
    };
    assert!(anonymous.await.is_err());
    in_trail(&app, |e| e.method == HANDSHAKE_METHOD).await;

    let province = trail_as(&app, "140000", HANDSHAKE_METHOD).await;
    assert!(
        province
            .iter()
            .any(|e| e.outcome.to_lowercase().contains("no certificates")),
        "{province:?}"
    );
    // Below the province, an auditor sees only its own agencies' calls.
    assert!(trail_as(&app, "140100", HANDSHAKE_METHOD).await.is_empty());
}

async fn province_auditors_see_calls_of_certificates_naming_no_agency(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let nameless = pki()
        .ca
        .issue_client_with_uris(&["https://example.org/agency"], Validity::default_leaf())
        .unwrap();
    let channel = quotahub::tls::client_channel(
        &app.endpoint(),
        pki().ca.cert_pem().as_bytes(),
        nameless.cert_pem.as_bytes(),
        nameless.key_pem.as_bytes(),
    )
    .await
    .unwrap();
    let status = proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
        .list_findings(proto::ListFindingsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let method = "/quotahub.v1.ReconciliationService/ListFindings";
    in_trail(&app, |e| {
        e.method == method && e.outcome == "UNAUTHENTICATED"
    })
    .await;

    let province = trail_as(&app, "140000", method).await;
    assert!(
        province
            .iter()
            .any(|e| e.agency_id.is_empty() && e.outcome == "UNAUTHENTICATED"),
        "{province:?}"
    );
    assert!(
        trail_as(&app, "140100", method)
            .await
            .iter()
            .all(|e| !e.agency_id.is_empty())
    );
}
