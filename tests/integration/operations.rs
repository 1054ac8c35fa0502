//! Operating the hub: the real binary stopped with SIGTERM in the middle of a subscription and a
//! bulk push, and two hub processes on a PostgreSQL server that restarts under load. The restart
//! uses a private PostgreSQL cluster made for the test (never the shared server of the suite).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::store::{Store, StoreOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::feed::next_event;
use crate::helpers::*;
use crate::replicas::{channel, channel_as};

/// A `quotahub serve` process with its log, killed when dropped.
struct Hub {
    child: Child,
    endpoint: String,
    log: Arc<Mutex<String>>,
}

/// Writes the test PKI's server files into `dir`.
fn server_files(dir: &Path) {
    let tls = pki().server_tls();
    std::fs::write(dir.join("ca.pem"), &tls.ca_pem).unwrap();
    std::fs::write(dir.join("server.pem"), &tls.cert_pem).unwrap();
    std::fs::write(dir.join("server-key.pem"), &tls.key_pem).unwrap();
}

/// Starts `quotahub serve` on `db_url` with the settings file `config` and the environment `env`,
/// and waits for the line that says where it listens.
async fn start_hub(
    db_url: &str,
    files: &Path,
    data: &str,
    config: &Path,
    env: &[(&str, &str)],
) -> Hub {
    // Only registered agencies are served.
    register_agencies_in(db_url).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_quotahub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-dev-pki"])
        .args(["--database-url", db_url])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(files.join(data))
        .arg("--tls-ca")
        .arg(files.join("ca.pem"))
        .arg("--tls-cert")
        .arg(files.join("server.pem"))
        .arg("--tls-key")
        .arg(files.join("server-key.pem"))
        .env("QUOTAHUB_LOG", "info,sqlx=error")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let log = Arc::new(Mutex::new(String::new()));
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    Hub {
        child,
        endpoint,
        log,
    }
}

async fn feed_as(endpoint: &str, kind: AgencyKind) -> FeedClient {
    proto::feed_service_client::FeedServiceClient::new(channel(endpoint, kind).await)
}

type FeedClient = proto::feed_service_client::FeedServiceClient<tonic::transport::Channel>;

async fn put_subscription(feed: &mut FeedClient, name: &str) {
    feed.put_subscription(proto::PutSubscriptionRequest {
        subscription: Some(proto::Subscription {
            name: name.into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_feed_and_finishes_a_bulk_push_in_flight_then_exits_cleanly() {
    let files = tempfile::tempdir().unwrap();
    server_files(files.path());
    let config = files.path().join("quotahub.toml");
    let db_url = format!("sqlite://{}", files.path().join("hub.db").display());
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        &config,
        format!(
            "shutdown_grace_secs = 30\n[limits]\nbatch_size = 5\n[admin]\nlisten = \"{admin}\"\n"
        ),
    )
    .unwrap();
    let mut hub = start_hub(
        &db_url,
        files.path(),
        "data",
        &config,
        &[("QUOTAHUB_LOG_FORMAT", "json")],
    )
    .await;
    assert_eq!(crate::telemetry::http_get(admin, "/readyz").await.0, 200);

    // An open subscription that has received an event.
    let mut inspector = feed_as(&hub.endpoint, AgencyKind::Discipline).await;
    put_subscription(&mut inspector, "inbox").await;
    let mut finance = proto::finance_service_client::FinanceServiceClient::new(
        channel(&hub.endpoint, AgencyKind::Finance).await,
    );
    let unit = uscc("140100", 1);
    finance
        .push_payroll_line(payroll("first", &resident(0), &unit, "2024-01"))
        .await
        .unwrap();
    let mut stream = crate::feed::subscribe(&mut inspector, "inbox", None).await;
    next_event(&mut stream).await;

    // A bulk push whose first two batches the hub has stored: the call is in flight.
    let (lines, pending) = tokio::sync::mpsc::channel::<proto::PayrollLine>(100);
    let bulk = tokio::spawn(async move {
        finance
            .push_payroll_lines(tokio_stream::wrappers::ReceiverStream::new(pending))
            .await
    });
    for n in 1..=10 {
        lines
            .send(payroll(
                &format!("bulk-{n}"),
                &resident(n),
                &unit,
                "2024-01",
            ))
            .await
            .unwrap();
    }
    let probe = Store::connect(&db_url, &StoreOptions::default())
        .await
        .unwrap();
    let stored = || async {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM payroll_lines")
            .fetch_one(probe.readers())
            .await
            .unwrap();
        count
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while stored().await < 11 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the first batches are stored");

    // A health watcher, as a load balancer keeps one.
    let mut health = HealthClient::new(channel(&hub.endpoint, AgencyKind::Audit).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let status = |message: Option<tonic_health::pb::HealthCheckResponse>| {
        ServingStatus::try_from(message.expect("a status").status).unwrap()
    };
    assert_eq!(
        status(watch.message().await.unwrap()),
        ServingStatus::Serving
    );

    let pid = hub.child.id().expect("the hub runs").to_string();
    let signalled_at = std::time::Instant::now();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());

    // The subscriber is told to reconnect elsewhere, and its stream ends without an error.
    let mut drained = false;
    while let Some(message) = stream.message().await.expect("the stream ends cleanly") {
        drained |= matches!(
            message.message,
            Some(proto::feed_message::Message::Drain(_))
        );
    }
    assert!(drained, "a drain message before the stream ended");
    // While it drains, the hub is alive but no longer ready, and says so over grpc.health too.
    assert_eq!(crate::telemetry::http_get(admin, "/readyz").await.0, 503);
    assert_eq!(crate::telemetry::http_get(admin, "/healthz").await.0, 200);
    assert_eq!(
        status(watch.message().await.unwrap()),
        ServingStatus::NotServing
    );
    // The watcher leaves, as a balancer does once it has seen NOT_SERVING.
    drop((watch, health));

    // The bulk push, still in flight, sends its last records and gets every result.
    for n in 11..=15 {
        lines
            .send(payroll(
                &format!("bulk-{n}"),
                &resident(n),
                &unit,
                "2024-01",
            ))
            .await
            .unwrap();
    }
    drop(lines);
    let response = bulk
        .await
        .unwrap()
        .expect("the bulk push completes")
        .into_inner();
    assert_eq!((response.accepted, response.rejected), (15, 0));

    let status = tokio::time::timeout(Duration::from_secs(60), hub.child.wait())
        .await
        .expect("the hub exits")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    println!(
        "SIGTERM to exit: {:?} (grace 30 s), with a subscriber drained and a bulk push finished",
        signalled_at.elapsed()
    );
    let log = hub.log.lock().unwrap().clone();
    // JSON logs, as asked: one object per line.
    let messages: Vec<String> = log
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("a JSON log line ({error}): {line}"));
            event["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        messages.iter().any(|message| message == "quotahub stopped"),
        "{log}"
    );
    assert!(
        !log.contains("stopping anyway"),
        "stopped within the grace period: {log}"
    );
    assert_eq!(stored().await, 16, "every acknowledged record is stored");
    probe.close().await;
}

/// A PostgreSQL cluster of its own in a temporary directory, stopped when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Makes and starts a cluster, or says why it cannot.
    async fn start() -> Result<PrivatePostgres, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| "no /usr/lib/postgresql".to_owned())?
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
            .max()
            .ok_or("no initdb and pg_ctl under /usr/lib/postgresql/*/bin")?;
        // initdb refuses to run as root: run the cluster as the postgres user then.
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if root {
            let chowned = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !chowned.success() {
                return Err("cannot hand the cluster's directory to the postgres user".into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let cluster = PrivatePostgres {
            bin,
            dir,
            port,
            as_postgres: root,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "-N"],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            std::process::Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn start_server(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        )
    }

    fn stop_server(&self) -> Result<(), String> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

async fn serving(endpoint: &str) -> Option<ServingStatus> {
    let mut health = HealthClient::new(channel(endpoint, AgencyKind::Audit).await);
    let response = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// Waits, without a deadline of its own, until the hub at `endpoint` reports `wanted`.
async fn until_status(endpoint: &str, wanted: ServingStatus) {
    while serving(endpoint).await != Some(wanted) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the pusher had acknowledged: payroll record ids and (change, subject, institution,
/// version) of the alerts in their results.
#[derive(Default, Clone)]
struct Acknowledged {
    records: Vec<(String, String)>,
    alerts: Vec<(i32, String, String, u64)>,
    failures: Vec<tonic::Code>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_lose_nothing_acknowledged_when_postgresql_restarts_under_load() {
    let cluster = match PrivatePostgres::start().await {
        Ok(cluster) => cluster,
        Err(reason) => {
            println!("skipped: cannot start a private PostgreSQL cluster: {reason}");
            return;
        }
    };
    let files = tempfile::tempdir().unwrap();
    server_files(files.path());
    let config = files.path().join("quotahub.toml");
    std::fs::write(
        &config,
        "[database]\nacquire_timeout_secs = 2\nprobe_interval_secs = 1\n",
    )
    .unwrap();
    let a = start_hub(&cluster.url(), files.path(), "a", &config, &[]).await;
    let b = start_hub(&cluster.url(), files.path(), "b", &config, &[]).await;
    until_status(&a.endpoint, ServingStatus::Serving).await;

    // A subscriber on hub B, acknowledging as it goes.
    let mut inspector = feed_as(&b.endpoint, AgencyKind::Discipline).await;
    put_subscription(&mut inspector, "watch").await;
    let (seen_tx, mut seen) = tokio::sync::watch::channel(Vec::<u64>::new());
    {
        let mut inspector = inspector.clone();
        tokio::spawn(async move {
            // The stream ends when the database goes away under it; resume from the cursor.
            let mut all = Vec::new();
            loop {
                let Ok(response) = inspector
                    .subscribe(proto::SubscribeRequest {
                        name: "watch".into(),
                        heartbeat_ms: 200,
                        ..Default::default()
                    })
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let mut stream = response.into_inner();
                while let Ok(Some(message)) = stream.message().await {
                    if let Some(proto::feed_message::Message::Event(event)) = message.message {
                        let acked = inspector
                            .ack(proto::AckRequest {
                                name: "watch".into(),
                                seq: event.seq,
                            })
                            .await;
                        if !all.contains(&event.seq) {
                            all.push(event.seq);
                        }
                        seen_tx.send_replace(all.clone());
                        if acked.is_err() {
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    // Four clients push to hub A at once, each one record after another, every record raising
    // alerts (pay for people on no roll).
    let (progress_tx, mut progress) = tokio::sync::watch::channel(Acknowledged::default());
    let progress_tx = Arc::new(progress_tx);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut pushers = Vec::new();
    for client in 0..4u32 {
        let endpoint = a.endpoint.clone();
        let (progress_tx, stop) = (progress_tx.clone(), stop.clone());
        pushers.push(tokio::spawn(async move {
            let mut finance = proto::finance_service_client::FinanceServiceClient::new(
                channel_as(&endpoint, "140100", AgencyKind::Finance).await,
            );
            // Resident numbers stay unique below 3,000 (see `resident`).
            let mut n = 0u32;
            while !*stop.borrow() && n < 700 {
                let person = client * 700 + n;
                let unit = uscc("140100", 1 + person % 5);
                let record_id = format!("p{person}");
                match finance
                    .push_payroll_line(payroll(&record_id, &resident(person), &unit, "2024-01"))
                    .await
                {
                    Ok(result) => {
                        let alerts: Vec<_> = result
                            .into_inner()
                            .findings
                            .into_iter()
                            .map(|change| {
                                let finding = change.finding.unwrap();
                                (
                                    change.change,
                                    finding.subject,
                                    finding.institution_uscc,
                                    finding.version,
                                )
                            })
                            .collect();
                        progress_tx.send_modify(|done| {
                            done.records.push((record_id, unit));
                            done.alerts.extend(alerts);
                        });
                        n += 1;
                    }
                    // Refused while the database is away: the same record is sent again.
                    Err(status) => {
                        progress_tx.send_modify(|done| done.failures.push(status.code()));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }

    progress
        .wait_for(|done| done.records.len() >= 20)
        .await
        .unwrap();
    cluster.stop_server().unwrap();
    // While the database is away, the hubs say so and refuse writes quickly.
    until_status(&a.endpoint, ServingStatus::NotServing).await;
    until_status(&b.endpoint, ServingStatus::NotServing).await;
    progress
        .wait_for(|done| !done.failures.is_empty())
        .await
        .unwrap();
    cluster.start_server().unwrap();
    until_status(&a.endpoint, ServingStatus::Serving).await;
    until_status(&b.endpoint, ServingStatus::Serving).await;
    let before = progress.borrow().records.len();
    progress
        .wait_for(|done| done.records.len() >= before + 20)
        .await
        .unwrap();
    stop_tx.send_replace(true);
    for pusher in pushers {
        pusher.await.unwrap();
    }
    let done = progress.borrow().clone();
    assert!(
        done.failures
            .iter()
            .all(|code| *code == tonic::Code::Unavailable),
        "writes fail with UNAVAILABLE while the database is away: {:?}",
        done.failures
    );

    // Every acknowledged record can be read through the other hub...
    let mut query = proto::query_service_client::QueryServiceClient::new(
        channel(&b.endpoint, AgencyKind::Finance).await,
    );
    let mut on_b = BTreeSet::new();
    for n in 1..=5 {
        let lines = query
            .list_payroll(proto::ListPayrollRequest {
                institution_uscc: uscc("140100", n),
                period: "2024-01".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .lines;
        on_b.extend(lines.into_iter().map(|line| line.record_id));
    }
    for (record_id, unit) in &done.records {
        assert!(
            on_b.contains(record_id),
            "acknowledged {record_id} at {unit} is missing"
        );
    }

    // ...every acknowledged alert is on its feed...
    let store = Store::connect(&cluster.url(), &StoreOptions::default())
        .await
        .unwrap();
    let head = u64::try_from(store.feed_head().await.unwrap()).unwrap();
    let mut audit = feed_as(&b.endpoint, AgencyKind::Audit).await;
    put_subscription(&mut audit, "after").await;
    let mut stream = audit
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
        let event = next_event(&mut stream).await;
        seqs.push(event.seq);
        let finding = event.finding.unwrap();
        on_feed.insert((
            event.event_type,
            finding.subject,
            finding.institution_uscc,
            finding.version,
        ));
    }
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "no gap in the feed");
    for alert in &done.alerts {
        assert!(
            on_feed.contains(alert),
            "an acknowledged alert is missing: {alert:?}"
        );
    }

    // ...and the subscriber on hub B, which lived through the restart, received all of it.
    let all = tokio::time::timeout(
        Duration::from_secs(30),
        seen.wait_for(|seen| seen.len() as u64 >= head),
    )
    .await
    .expect("every event within 30 s")
    .unwrap()
    .clone();
    let mut all = all;
    all.sort_unstable();
    assert_eq!(all, (1..=head).collect::<Vec<_>>());
    let log = a.log.lock().unwrap().clone();
    assert!(log.contains("the database does not answer"), "{log}");
    println!(
        "PostgreSQL restart under load: {} records and {} alerts acknowledged, {} writes refused with UNAVAILABLE while it was away, {head} feed events",
        done.records.len(),
        done.alerts.len(),
        done.failures.len()
    );
    store.close().await;
    drop((a, b));
}
