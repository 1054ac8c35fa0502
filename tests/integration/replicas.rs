//! Several hub processes on one PostgreSQL: the real binary, started twice, with clients pushing to
//! both at once. What the replicas keep must be exactly what a full re-check of the data finds.

use std::collections::BTreeSet;
use std::process::Stdio;

use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::store::reconcile::FindingFilter;
use quotahub::store::{Store, StoreOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::helpers::*;

/// A `quotahub serve` process, killed when dropped.
pub struct HubProcess {
    child: Child,
    pub endpoint: String,
}

impl HubProcess {
    /// Kills the hub at once (SIGKILL): no drain, no flush.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill the hub");
    }
}

pub async fn start_hub(
    db_url: &str,
    pki_dir: &std::path::Path,
    data_dir: &std::path::Path,
) -> HubProcess {
    register_agencies_in(db_url).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_quotahub"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-dev-pki",
            "--database-url",
            db_url,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--tls-ca")
        .arg(pki_dir.join("ca.pem"))
        .arg("--tls-cert")
        .arg(pki_dir.join("server.pem"))
        .arg("--tls-key")
        .arg(pki_dir.join("server-key.pem"))
        // sqlx's slow-statement warnings (two hubs on one busy test server have many) only with
        // TEST_LOG, like the rest of the hub's logs.
        .env(
            "QUOTAHUB_LOG",
            if std::env::var_os("TEST_LOG").is_some() {
                "info,quotahub=debug"
            } else {
                "warn,sqlx=error"
            },
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start quotahub serve");
    // The hub prints its address once it listens; no sleeping.
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("the hub says where it listens");
    let address = line
        .split_whitespace()
        .find(|word| word.starts_with("https://"))
        .expect("an address")
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    HubProcess {
        child,
        endpoint: address,
    }
}

pub async fn channel(endpoint: &str, kind: AgencyKind) -> Channel {
    channel_as(endpoint, "140100", kind).await
}

pub async fn channel_as(endpoint: &str, jurisdiction: &str, kind: AgencyKind) -> Channel {
    let certificate = pki().agency(&agency(jurisdiction, kind));
    quotahub::tls::client_channel(
        endpoint,
        pki().ca.cert_pem().as_bytes(),
        certificate.cert_pem.as_bytes(),
        certificate.key_pem.as_bytes(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_keep_exactly_the_findings_a_full_recheck_gives_and_feed_every_subscriber()
 {
    if !postgres_given() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let files = tempfile::tempdir().unwrap();
    let tls = pki().server_tls();
    std::fs::write(files.path().join("ca.pem"), &tls.ca_pem).unwrap();
    std::fs::write(files.path().join("server.pem"), &tls.cert_pem).unwrap();
    std::fs::write(files.path().join("server-key.pem"), &tls.key_pem).unwrap();
    let hubs = [
        start_hub(db.url(), files.path(), &files.path().join("a")).await,
        start_hub(db.url(), files.path(), &files.path().join("b")).await,
    ];

    // District units: both the city's agencies and the district's may push for them, so pushes to
    // one unit come from different agencies at once and only the findings' scope locks order them.
    let units: Vec<String> = (1..=3).map(|n| uscc("140105", n)).collect();

    // A subscriber on each hub, reading while the pushes go on.
    let mut subscribers = Vec::new();
    for hub in &hubs {
        let mut feed = proto::feed_service_client::FeedServiceClient::new(
            channel(&hub.endpoint, AgencyKind::Discipline).await,
        );
        let name = format!("watch-{}", subscribers.len());
        feed.put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: name.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        let mut stream = crate::feed::subscribe(&mut feed, &name, None).await;
        let (seen_tx, seen_rx) = tokio::sync::watch::channel(Vec::<u64>::new());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(Some(message)) = stream.message().await {
                if let Some(proto::feed_message::Message::Event(event)) = message.message {
                    feed.ack(proto::AckRequest {
                        name: name.clone(),
                        seq: event.seq,
                    })
                    .await
                    .unwrap();
                    seen.push(event.seq);
                    seen_tx.send_replace(seen.clone());
                }
            }
        });
        subscribers.push(seen_rx);
    }
    let mut staffing = proto::staffing_service_client::StaffingServiceClient::new(
        channel(&hubs[0].endpoint, AgencyKind::StaffingOffice).await,
    );
    for (n, unit) in units.iter().enumerate() {
        staffing
            .push_institution(organ(&format!("i{n}"), unit, "140105"))
            .await
            .unwrap();
        staffing
            .push_quota(quota(&format!("q{n}"), unit, 5))
            .await
            .unwrap();
    }

    // Eight clients, four on each hub and four per agency, hire at the same moment into the same
    // three units, one record at a time, so that many pushes to one institution overlap.
    let mut clients = Vec::new();
    for client in 0..8u32 {
        let endpoint = hubs[(client % 2) as usize].endpoint.clone();
        let jurisdiction = if (client / 2) % 2 == 0 {
            "140100"
        } else {
            "140105"
        };
        let units = units.clone();
        clients.push(tokio::spawn(async move {
            let mut hr = proto::personnel_service_client::PersonnelServiceClient::new(
                channel_as(&endpoint, jurisdiction, AgencyKind::Hr).await,
            );
            let mut finance = proto::finance_service_client::FinanceServiceClient::new(
                channel_as(&endpoint, jurisdiction, AgencyKind::Finance).await,
            );
            for n in 0..6u32 {
                let person = resident(client * 100 + n);
                let unit = &units[((client + n) % 3) as usize];
                hr.push_personnel_event(hire(
                    &format!("h{client}-{n}"),
                    &person,
                    unit,
                    "2021-01-01",
                ))
                .await
                .unwrap();
                // Every third person is also paid by another unit (pay-unit mismatch), and one
                // person per client is hired into a second unit (duplicate enrollment).
                if n % 3 == 0 {
                    let other = &units[((client + n + 1) % 3) as usize];
                    finance
                        .push_payroll_line(payroll(
                            &format!("p{client}-{n}"),
                            &person,
                            other,
                            "2024-01",
                        ))
                        .await
                        .unwrap();
                }
                if n == 5 {
                    let other = &units[((client + n + 2) % 3) as usize];
                    hr.push_personnel_event(hire(
                        &format!("d{client}"),
                        &person,
                        other,
                        "2022-01-01",
                    ))
                    .await
                    .unwrap();
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }

    // What the replicas kept, read through the other hub...
    let mut reconciliation = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        channel(&hubs[1].endpoint, AgencyKind::Audit).await,
    );
    let kept: BTreeSet<(i32, String, String, String, i64)> = reconciliation
        .list_findings(proto::ListFindingsRequest {
            page_size: 5_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings
        .into_iter()
        .map(|f| (f.code, f.institution_uscc, f.subject, f.period, f.actual))
        .collect();
    let over_quota = kept
        .iter()
        .filter(|f| f.0 == proto::RuleCode::OverQuota as i32)
        .count();
    assert_eq!(
        over_quota, 3,
        "every unit ends over its quota of 5: {kept:?}"
    );
    assert!(
        kept.iter()
            .any(|f| f.0 == proto::RuleCode::DuplicateEnrollment as i32)
    );
    assert!(
        kept.iter()
            .any(|f| f.0 == proto::RuleCode::PayUnitMismatch as i32)
    );

    // ...equals a full re-check from scratch of the same data.
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .unwrap();
    sqlx::query("DELETE FROM findings")
        .execute(store.readers())
        .await
        .unwrap();
    store
        .reconcile(None, store.checks().clock.today(), false)
        .await
        .unwrap();
    let from_scratch: BTreeSet<(i32, String, String, String, i64)> = store
        .findings(&FindingFilter {
            open: true,
            limit: u32::MAX,
            ..FindingFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|f| {
            use quotahub::api::convert::Wire;
            let key = f.finding.key;
            (
                key.code.to_wire(),
                key.institution,
                key.subject,
                key.period,
                f.finding.actual,
            )
        })
        .collect();
    assert_eq!(kept, from_scratch);

    // Every subscriber, on either hub, received every event of the feed: no gap, none skipped.
    let head = u64::try_from(store.feed_head().await.unwrap()).unwrap();
    assert!(head > 50, "the pushes wrote many events ({head})");
    for mut seen in subscribers {
        let all = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            seen.wait_for(|seen| seen.len() as u64 >= head),
        )
        .await
        .expect("every event within 20 s")
        .unwrap()
        .clone();
        assert_eq!(all, (1..=head).collect::<Vec<_>>());
    }
    store.close().await;
}

/// Writes the test PKI's server files into `dir`.
fn server_files(dir: &std::path::Path) {
    let tls = pki().server_tls();
    std::fs::write(dir.join("ca.pem"), &tls.ca_pem).unwrap();
    std::fs::write(dir.join("server.pem"), &tls.cert_pem).unwrap();
    std::fs::write(dir.join("server-key.pem"), &tls.key_pem).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_every_alert_acknowledged_as_written_is_on_the_feed() {
    let files = tempfile::tempdir().unwrap();
    server_files(files.path());
    let db_url = format!("sqlite://{}", files.path().join("hub.db").display());
    let hub = start_hub(&db_url, files.path(), &files.path().join("data")).await;

    // Pushes that raise findings, one after another, until the hub is killed under them.
    let endpoint = hub.endpoint.clone();
    let pusher = tokio::spawn(async move {
        let mut finance = proto::finance_service_client::FinanceServiceClient::new(
            channel(&endpoint, AgencyKind::Finance).await,
        );
        let mut written: Vec<(i32, String, String, u64)> = Vec::new();
        for n in 0..10_000u32 {
            let unit = uscc("140100", 1 + n % 5);
            match finance
                .push_payroll_line(payroll(&format!("p{n}"), &resident(n), &unit, "2024-01"))
                .await
            {
                Ok(result) => {
                    for change in result.into_inner().findings {
                        let finding = change.finding.unwrap();
                        written.push((
                            change.change,
                            finding.subject,
                            finding.institution_uscc,
                            finding.version,
                        ));
                    }
                }
                Err(_) => break,
            }
        }
        written
    });
    // Let some alerts through, then kill the hub mid-flight.
    let mut count = 0;
    let probe = Store::connect(&db_url, &StoreOptions::default())
        .await
        .unwrap();
    while count < 40 {
        count = probe.feed_head().await.unwrap();
        tokio::task::yield_now().await;
    }
    hub.kill().await;
    let written = pusher.await.unwrap();
    assert!(
        written.len() >= 20,
        "alerts were acknowledged before the kill ({})",
        written.len()
    );

    // Restart on the same database and read the whole feed.
    let hub = start_hub(&db_url, files.path(), &files.path().join("data")).await;
    let mut feed = proto::feed_service_client::FeedServiceClient::new(
        channel(&hub.endpoint, AgencyKind::Audit).await,
    );
    feed.put_subscription(proto::PutSubscriptionRequest {
        subscription: Some(proto::Subscription {
            name: "after".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let head = u64::try_from(probe.feed_head().await.unwrap()).unwrap();
    let mut stream = feed
        .subscribe(proto::SubscribeRequest {
            name: "after".into(),
            max_in_flight: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut on_feed = BTreeSet::new();
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < head {
        let event = crate::feed::next_event(&mut stream).await;
        seqs.push(event.seq);
        let finding = event.finding.unwrap();
        on_feed.insert((
            event.event_type,
            finding.subject,
            finding.institution_uscc,
            finding.version,
        ));
    }
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "no gap after the crash"
    );
    for (change, subject, institution, version) in &written {
        assert!(
            on_feed.contains(&(*change, subject.clone(), institution.clone(), *version)),
            "an acknowledged alert is missing: {subject} at {institution} v{version}"
        );
    }
    probe.close().await;
}
