//! Assembles the hub: the store, the services behind the authorization layer, health and
//! reflection, all served over mutual TLS on a listener the caller has already bound. `main` and
//! the tests start the hub the same way, and tests bind port 0 so they never wait for a port.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::Instrument;

use crate::api::admin::AdminApi;
use crate::api::guard::Guard;
use crate::api::policy::AuthLayer;
use crate::api::status::OverSizeLayer;
use crate::api::{Hub, Limits};
use crate::audit::{AuditSink, AuditWriter};
use crate::clock::Clock;
use crate::config::Settings;
use crate::proto;
use crate::store::{Checks, Store, StoreOptions};
use crate::telemetry::admin::{self, AdminState, Readiness};
use crate::telemetry::{Metrics, rpc::RpcLayer};
use crate::tls::{self, TlsIncoming};
use crate::tls_reload::TlsFiles;
use crate::{pki, proto::FILE_DESCRIPTOR_SET};

/// Largest message the hub accepts or sends (a bulk push's response lists every record).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control window of one stream: what a client may send on a call before the hub reads
/// it.
///
/// These two windows are what lets stock clients (grpcio, grpc-java, grpc-go) push a bulk stream
/// at full speed. They send each record in its own small DATA frame, and h2 charges every frame
/// under 256 bytes against a per-connection budget of half the connection window (hyper offers no
/// other way to set it), given back only as the hub reads the frames; once it is spent h2 ends the
/// connection with GOAWAY `ENHANCE_YOUR_CALM` ("too_many_data_frames"). A bulk push stops reading
/// while it stores a batch, so the client fills the stream's window meanwhile: with hyper's
/// defaults (1 MiB for both windows, so a 512 KiB budget) a window full of ~80-byte payroll lines
/// costs about 2.2 MiB of budget, and a 5,000-line grpcio stream was cut off. With a stream window
/// of 128 KiB and a connection window of 4 MiB (a 2 MiB budget), a stream blocked behind a batch
/// costs at most ~290 KiB of budget with 80-byte records (~700 KiB with 40-byte ones), so several
/// bulk streams can wait at once on one connection. The protection stays: a peer that floods tiny
/// frames on many streams still spends the budget and is cut off, and what the hub buffers
/// unread stays bounded by the connection window, 4 MiB per connection (was 1 MiB). A single
/// stream's throughput is its window per round trip, 128 KiB: 13 MB/s at 10 ms, far above what a
/// push is stored at.
const STREAM_WINDOW_BYTES: u32 = 128 * 1024;

/// HTTP/2 flow-control window of a connection, all its streams together; half of it is h2's budget
/// of small DATA frames (see [`STREAM_WINDOW_BYTES`]).
const CONNECTION_WINDOW_BYTES: u32 = 4 * 1024 * 1024;

/// The certificate material the server presents and trusts, as PEM.
#[derive(Clone)]
pub struct ServerTls {
    /// CA bundle that client certificates must chain to.
    pub ca_pem: Vec<u8>,
    /// Server certificate chain.
    pub cert_pem: Vec<u8>,
    /// Server private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the PEM files.
    pub fn read(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<ServerTls> {
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        Ok(ServerTls {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        })
    }
}

/// A hub ready to serve.
pub struct Application {
    listener: TcpListener,
    hub: Hub,
    tls: Arc<rustls::ServerConfig>,
    shutdown_grace: Duration,
    /// How often to re-check everything (定期核查); `None` for never.
    reconcile_every: Option<Duration>,
    /// How often to escalate overdue alerts; `None` for never.
    escalate_every: Option<Duration>,
    /// How often to check every agency's data is in on time (LATE_PAYROLL); `None` for never.
    freshness_every: Option<Duration>,
    /// How long feed events are kept.
    feed_retention: Duration,
    /// Registry, rate limits, deadlines and audit, consulted on every call.
    guard: Arc<Guard>,
    /// Appends the audit trail; finished after the last call.
    audit_writer: AuditWriter,
    /// The TLS files to watch for changes, and how often.
    tls_reload: Option<(TlsFiles, Duration)>,
    /// The plain-HTTP admin port (`/metrics`, `/healthz`, `/readyz`), when one is configured.
    admin: Option<TcpListener>,
    /// How often the database is probed for health.
    probe_every: Duration,
    /// Bounds on handshakes and on connections per peer address.
    connection_limits: tls::ConnectionLimits,
    /// The supervision console's listener and TLS configuration, when it is on.
    console: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
}

impl Application {
    /// Builds the hub from settings: makes development certificates if asked and missing,
    /// connects the store, binds the listen address.
    pub async fn build(settings: &Settings) -> anyhow::Result<Application> {
        let paths = settings.pki();
        if settings.dev_pki() && settings.tls.ca.is_none() {
            let report =
                pki::init(&paths.dir, false).context("cannot make development certificates")?;
            if !report.written.is_empty() {
                tracing::info!(dir = %report.dir.display(), files = report.written.len(), "made development certificates (one per agency kind for 140100 and 140105)");
            }
        }
        let tls = ServerTls::read(&paths.ca, &paths.cert, &paths.key)?;
        let store = Store::connect(&settings.database_url(), &settings.store_options())
            .await
            .map_err(|error| anyhow::anyhow!("cannot open the database: {error}"))?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let store = store.with_checks(Checks {
            rules: settings.rules_config()?,
            clock: Clock::System,
            escalation: settings.escalation_policy()?,
            cadence: settings.freshness.cadence()?,
        });
        let log_key = settings.log_key();
        if settings.dev_pki() && settings.audit.log_key.is_none() {
            pki::log_key(&log_key, pki::DEV_LOG_ORIGIN).context("cannot make the audit log key")?;
        }
        let store = if settings.audit.log_key.is_none() && !log_key.exists() {
            tracing::warn!(key = %log_key.display(), "no audit log key: no checkpoints are signed (set audit.log_key)");
            store
        } else {
            let signer = std::fs::read_to_string(&log_key)
                .with_context(|| format!("cannot read the audit log key {}", log_key.display()))?;
            let signer = crate::domain::audit::LogSigner::parse(&signer)
                .map_err(|reason| anyhow::anyhow!("{}: {reason}", log_key.display()))?;
            tracing::info!(origin = signer.origin(), public_key = %signer.public_key(), "audit log checkpoints signed");
            store.with_log(crate::store::trust::CheckpointPolicy {
                signer,
                every_entries: settings.audit.checkpoint_every_entries.max(1),
                every_micros: i64::try_from(settings.audit.checkpoint_every_secs)
                    .unwrap_or(i64::MAX / 1_000_000)
                    .saturating_mul(1_000_000),
            })
        };
        if !settings.reconcile.check_on_push {
            tracing::warn!(
                "reconcile.check_on_push is off: pushes are stored without checking findings until `quotahub reconcile` runs (initial load)"
            );
            store.set_push_checks(false);
        }
        let files = TlsFiles {
            ca: paths.ca.clone(),
            cert: paths.cert.clone(),
            key: paths.key.clone(),
            crl: settings.tls.crl.clone(),
        };
        let config = files.load().context("bad TLS material")?;
        if settings.dev_pki() && settings.tls.ca.is_none() {
            // The development agencies are registered so that their certificates work at once.
            register_dev_agencies(&store, &paths.dir).await?;
        }
        let admin = match settings.admin.listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (admin.listen)"))?,
            ),
            None => None,
        };
        let console = match settings.console_listen() {
            Some(address) => Some((
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (console.listen)"))?,
                files.load_console().context("bad TLS material")?,
            )),
            None => None,
        };
        let mut application = Application::with_listener(listener, store, &tls, settings.limits())?
            .with_metrics(Metrics::from_env()?);
        application.tls = config;
        application.tls_reload = settings.tls_reload().map(|every| (files, every));
        application.admin = admin;
        application.console = console;
        application.hub.report_font = settings.report.font.clone();
        application.probe_every = Duration::from_secs(settings.database.probe_interval_secs.max(1));
        application.shutdown_grace = Duration::from_secs(settings.shutdown_grace_secs);
        application.connection_limits = settings.connection_limits();
        application.escalate_every = (settings.feed.escalation_interval_secs > 0)
            .then(|| Duration::from_secs(settings.feed.escalation_interval_secs));
        application.feed_retention =
            Duration::from_secs(settings.feed.retention_days.max(1) * 86_400);
        application.reconcile_every = (settings.reconcile.interval_secs > 0)
            .then(|| Duration::from_secs(settings.reconcile.interval_secs));
        application.freshness_every = (settings.freshness.interval_secs > 0)
            .then(|| Duration::from_secs(settings.freshness.interval_secs));
        Ok(application)
    }

    /// Builds the hub on an already-bound listener and an open store.
    pub fn with_listener(
        listener: TcpListener,
        store: Store,
        tls: &ServerTls,
        limits: Limits,
    ) -> anyhow::Result<Application> {
        let config = tls::server_config(&tls.ca_pem, &tls.cert_pem, &tls.key_pem)
            .context("bad TLS material")?;
        let (audit, audit_writer) = AuditSink::start(store.clone());
        let guard = Arc::new(
            Guard::new(store.clone(), audit, &limits).context("cannot read the contract")?,
        );
        Ok(Application {
            guard,
            audit_writer,
            tls_reload: None,
            listener,
            hub: Hub::new(store, limits),
            tls: config,
            shutdown_grace: Duration::from_secs(30),
            reconcile_every: None,
            escalate_every: Some(Duration::from_secs(60)),
            freshness_every: None,
            feed_retention: Duration::from_secs(90 * 86_400),
            admin: None,
            probe_every: Duration::from_secs(5),
            connection_limits: tls::ConnectionLimits::default(),
            console: None,
        })
    }

    /// Records metrics in `metrics` (by default, a set of this hub's own).
    pub fn with_metrics(mut self, metrics: Metrics) -> Application {
        self.hub.metrics = metrics;
        self
    }

    /// Serves the admin port on an already-bound listener.
    pub fn with_admin(mut self, listener: TcpListener) -> Application {
        self.admin = Some(listener);
        self
    }

    /// The address of the admin port, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|listener| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
        })
    }

    /// Serves the supervision console on an already-bound listener, with the same certificates.
    pub fn with_console(
        mut self,
        listener: TcpListener,
        tls: &ServerTls,
    ) -> anyhow::Result<Application> {
        let config =
            tls::console_config_with_crls(&tls.ca_pem, &tls.cert_pem, &tls.key_pem, Vec::new())
                .context("bad TLS material")?;
        self.console = Some((listener, config));
        Ok(self)
    }

    /// The address of the console, if it is on.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console.as_ref().map(|(listener, _)| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
        })
    }

    /// The hub's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.hub.metrics
    }

    /// Lets calls in flight finish for at most this long once the hub is told to stop.
    pub fn shutdown_grace(mut self, grace: Duration) -> Application {
        self.shutdown_grace = grace;
        self
    }

    /// Bounds handshakes and connections per peer address thus (`[tls]` settings).
    pub fn connection_limits(mut self, limits: tls::ConnectionLimits) -> Application {
        self.connection_limits = limits;
        self
    }

    /// Probes the database this often; the hub reports NOT_SERVING while the probe fails.
    pub fn probe_every(mut self, interval: Duration) -> Application {
        self.probe_every = interval;
        self
    }

    /// The address the hub listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The store the hub uses.
    pub fn store(&self) -> &Store {
        &self.hub.store
    }

    /// Where calls' audit entries go (tests flush it before reading the trail).
    pub fn audit(&self) -> AuditSink {
        self.guard.audit.clone()
    }

    /// Watches these TLS files (CA, server certificate and key, CRL) and reloads them this often.
    pub fn reload_tls(mut self, files: TlsFiles, every: Duration) -> anyhow::Result<Application> {
        self.tls = files.load().context("bad TLS material")?;
        self.tls_reload = Some((files, every));
        Ok(self)
    }

    /// Escalates overdue alerts this often.
    pub fn escalate_every(mut self, interval: Option<Duration>) -> Application {
        self.escalate_every = interval;
        self
    }

    /// Checks every agency's data is in on time this often (the first time one interval after
    /// start).
    pub fn freshness_every(mut self, interval: Option<Duration>) -> Application {
        self.freshness_every = interval;
        self
    }

    /// Re-checks everything this often (the first time one interval after start).
    pub fn reconcile_every(mut self, interval: Option<Duration>) -> Application {
        self.reconcile_every = interval;
        self
    }

    /// Serves until `shutdown` completes, then stops taking calls, lets calls in flight finish
    /// (within the grace period) and closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = self.local_addr();
        // Before the first call: a month due before the hub's first start is nobody's lateness.
        let watched_from = self
            .hub
            .store
            .watch_freshness()
            .await
            .map_err(|error| anyhow::anyhow!("cannot keep the hub's first start: {error}"))?;
        tracing::info!(%watched_from, "data freshness judged from");
        let (health, health_service) = tonic_health::server::health_reporter();
        set_serving(&health, ServingStatus::Serving).await;

        // The google.rpc error details too, so that a client (grpcurl) can decode a status's
        // details (BadRequest, PreconditionFailure, RetryInfo) from reflection alone.
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let hub = self.hub.clone();
        let metrics = hub.metrics.clone();
        metrics.watch_store(&hub.store);
        let ready = Readiness::default();
        ready.set(true);
        macro_rules! limited {
            ($server:expr) => {
                $server
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            };
        }
        let admin = AdminApi::new(self.hub.store.clone(), self.guard.clone());
        // The span and metrics layer comes first, so that refused calls are seen too.
        let router = Server::builder()
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .layer(RpcLayer::new(metrics.clone()))
            .layer(AuthLayer::new(self.guard.clone()))
            .layer(OverSizeLayer)
            .add_service(health_service.clone())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(limited!(
                proto::staffing_service_server::StaffingServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::personnel_service_server::PersonnelServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::organization_service_server::OrganizationServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::finance_service_server::FinanceServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::query_service_server::QueryServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::reconciliation_service_server::ReconciliationServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::feed_service_server::FeedServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::ledger_service_server::LedgerServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::application_service_server::ApplicationServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::campaign_service_server::CampaignServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::case_service_server::CaseServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::report_service_server::ReportServiceServer::new(hub.clone())
            ))
            .add_service(limited!(
                proto::admin_service_server::AdminServiceServer::new(admin.clone())
            ))
            .add_service(limited!(
                proto::audit_service_server::AuditServiceServer::new(admin)
            ));

        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let reporter = health.clone();
        let draining = hub.draining.clone();
        let stopping_at = Arc::new(std::sync::OnceLock::new());
        let signal = {
            let (ready, stopping_at) = (ready.clone(), stopping_at.clone());
            async move {
                shutdown.await;
                let _ = stopping_at.set(tokio::time::Instant::now());
                // Balancers stop sending calls first; then feed streams send their drain message
                // and end, so that the server can stop.
                ready.set(false);
                set_serving(&reporter, ServingStatus::NotServing).await;
                draining.send_replace(true);
                tracing::info!("shutting down: refusing new calls, finishing those in flight");
                let _ = stopping_tx.send(());
            }
        };

        let (stop_schedule, schedule_stopped) = tokio::sync::watch::channel(false);
        let mut background = vec![
            tokio::spawn(escalations(
                self.hub.store.clone(),
                metrics.clone(),
                self.escalate_every,
                schedule_stopped.clone(),
            )),
            tokio::spawn(probe_database(
                Probe {
                    store: self.hub.store.clone(),
                    metrics: metrics.clone(),
                    health: health.clone(),
                    ready: ready.clone(),
                    draining: hub.draining.subscribe(),
                    every: self.probe_every,
                },
                schedule_stopped.clone(),
            )),
            tokio::spawn(trim_feed(
                self.hub.store.clone(),
                self.feed_retention,
                schedule_stopped.clone(),
            )),
            tokio::spawn(freshness_checks(
                self.hub.store.clone(),
                self.freshness_every,
                schedule_stopped.clone(),
            )),
        ];
        if let Some(listener) = self.hub.store.spawn_feed_listener(schedule_stopped.clone()) {
            background.push(listener);
        }
        let schedule_stopped_tls = schedule_stopped.clone();
        let schedule = Some(tokio::spawn(rechecks(
            self.hub.store.clone(),
            self.reconcile_every,
            schedule_stopped.clone(),
        )));

        let (configs, serving_config) = tokio::sync::watch::channel(self.tls);
        // The console's configuration is reloaded from the same files, so that a new CRL or
        // server certificate applies to both ports.
        let console = self.console.map(|(listener, config)| {
            let (configs, serving) = tokio::sync::watch::channel(config);
            (listener, configs, serving)
        });
        if let Some((files, every)) = self.tls_reload {
            if let Some((_, console_configs, _)) = &console {
                background.push(crate::tls_reload::spawn_reloader_of(
                    files.clone(),
                    every,
                    console_configs.clone(),
                    schedule_stopped_tls.clone(),
                    crate::tls_reload::TlsFiles::load_console,
                ));
            }
            background.push(crate::tls_reload::spawn_reloader(
                files,
                every,
                configs,
                schedule_stopped_tls,
            ));
        }
        if let Some(listener) = self.admin {
            let state = AdminState {
                metrics: metrics.clone(),
                store: self.hub.store.clone(),
                ready: ready.clone(),
            };
            let admin_address = listener.local_addr()?;
            let mut stopped = schedule_stopped.clone();
            background.push(tokio::spawn(async move {
                let stopped = async move {
                    let _ = stopped.changed().await;
                };
                let health = tonic::service::Routes::new(health_service).into_axum_router();
                if let Err(error) = admin::serve(listener, state, health, stopped).await {
                    tracing::error!(%error, "the admin port failed");
                }
            }));
            tracing::info!(address = %admin_address, "admin port serving /metrics, /healthz, /readyz and grpc.health.v1 over plain HTTP");
        }
        if let Some((listener, _, serving)) = console {
            let console_address = listener.local_addr()?;
            let console = crate::console::Console::new(hub.clone(), self.guard.clone());
            // Refused handshakes (a revoked certificate, one of another CA) are audited as on
            // the gRPC port.
            let incoming = TlsIncoming::serving(
                listener,
                serving,
                self.guard.audit.clone(),
                self.connection_limits,
            );
            let mut stopped = schedule_stopped.clone();
            background.push(tokio::spawn(async move {
                let stopped = async move {
                    let _ = stopped.changed().await;
                };
                if let Err(error) = crate::console::serve(incoming, console, stopped).await {
                    tracing::error!(%error, "the console failed");
                }
            }));
            tracing::info!(address = %console_address, "supervision console serving over HTTPS (agency certificate as login)");
        }
        tracing::info!(%address, "quotahub serving over mutual TLS");
        let incoming = TlsIncoming::serving(
            self.listener,
            serving_config,
            self.guard.audit.clone(),
            self.connection_limits,
        );
        let serve = router.serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(serve);
        let grace = self.shutdown_grace;
        tokio::select! {
            result = &mut serve => result?,
            () = async {
                let _ = stopping_rx.await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(?grace, "calls still in flight after the grace period; stopping anyway"),
        }
        // What is left (background passes, closing the pools) gets the rest of the grace period,
        // so that the process ends within it however the time was spent.
        let deadline = stopping_at
            .get()
            .copied()
            .unwrap_or_else(tokio::time::Instant::now)
            + grace;
        let _ = stop_schedule.send(true);
        let store = self.hub.store.clone();
        let audit_writer = self.audit_writer;
        let wind_down = async move {
            if let Some(schedule) = schedule {
                let _ = schedule.await;
            }
            for task in background {
                let _ = task.await;
            }
            // The audit trail of the last calls is written before the pools close.
            audit_writer.finish().await;
            store.close().await;
        };
        if tokio::time::timeout_at(deadline, wind_down).await.is_err() {
            tracing::warn!(
                "background tasks still running at the end of the grace period; stopping anyway"
            );
        }
        metrics.shutdown();
        tracing::info!("quotahub stopped");
        Ok(())
    }
}

/// Runs the re-check jobs (started by Reconcile calls, or by the schedule every `every`) in
/// whichever replica holds the re-check lease, renewed at every chunk. A job left running by a
/// stopped hub goes on from its last finished chunk at the next pass, here or in another replica.
async fn rechecks(
    store: Store,
    every: Option<Duration>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    // Unique per replica: process ids are 1 in every container.
    let lease = crate::store::recheck::Lease {
        name: "reconcile",
        holder: uuid::Uuid::now_v7().to_string(),
        seconds: RECHECK_LEASE_SECS,
    };
    // The schedule's first job comes one period after the start, as it always has.
    let mut due = every.map(|every| tokio::time::Instant::now() + every);
    loop {
        let due_now = due.is_some_and(|due| due <= tokio::time::Instant::now());
        match store
            .take_lease(lease.name, &lease.holder, lease.seconds)
            .await
        {
            Ok(true) => {
                if let (true, Some(every)) = (due_now, every) {
                    match store.schedule_recheck(every).await {
                        Ok(Some(job)) => tracing::info!(id = %job.id, "scheduled re-check started"),
                        Ok(None) => {
                            tracing::debug!("another replica started the scheduled re-check");
                        }
                        Err(error) => tracing::warn!(%error, "cannot start the scheduled re-check"),
                    }
                }
                let pass = tracing::info_span!("rechecks");
                if let Err(error) = store.run_rechecks(&lease, &stopped).instrument(pass).await {
                    tracing::warn!(%error, "re-check pass failed");
                }
            }
            Ok(false) => tracing::debug!("another replica holds the re-check lease"),
            Err(error) => tracing::warn!(%error, "cannot take the re-check lease"),
        }
        if due_now {
            due = every.map(|every| tokio::time::Instant::now() + every);
        }
        // Woken by a job started here; otherwise a look now and then for jobs another replica
        // left, and for the schedule.
        let mut wait = tokio::time::Instant::now() + RECHECK_POLL;
        if let Some(due) = due {
            wait = wait.min(due);
        }
        tokio::select! {
            () = tokio::time::sleep_until(wait) => {}
            () = store.recheck_started() => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
    }
}

/// How long the re-check lease holds without a renewal (the runner renews it at every chunk).
const RECHECK_LEASE_SECS: i64 = 120;
/// How often a replica looks for re-check jobs it was not woken for.
const RECHECK_POLL: Duration = Duration::from_secs(10);

/// Escalates overdue alerts, ledger items and cases, and missing campaign declarations, every `every`. Any number of replicas may run it: each step is claimed.
async fn escalations(
    store: Store,
    metrics: Metrics,
    every: Option<Duration>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let Some(every) = every else { return };
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
        let now = store.checks().clock.now().timestamp_micros();
        let pass = tracing::info_span!("escalation", steps = tracing::field::Empty);
        match store.escalate_due(now).instrument(pass.clone()).await {
            Ok(events) if !events.is_empty() => {
                pass.record("steps", events.len());
                metrics.escalated(events.len());
                tracing::info!(steps = events.len(), "escalated overdue alerts");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "escalation pass failed"),
        }
        // Overdue ledger items and cases climb the same ladder, by date.
        match store
            .escalate_follow_ups(store.checks().clock.today())
            .await
        {
            Ok(events) if !events.is_empty() => {
                tracing::info!(
                    steps = events.len(),
                    "escalated overdue ledger items and cases"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "follow-up escalation pass failed"),
        }
        // Declarations missing past a campaign's deadline climb it too.
        match store
            .escalate_declarations(store.checks().clock.today())
            .await
        {
            Ok(events) if !events.is_empty() => {
                tracing::info!(steps = events.len(), "escalated missing declarations");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "declaration escalation pass failed"),
        }
    }
}

/// Checks every finance and HR agency's data against its cadence every `every` (LATE_PAYROLL
/// raised on the due day, BACKDATED_EVENT aged out of its window). Any number of replicas may run
/// it: each agency's check takes that agency's push lock.
async fn freshness_checks(
    store: Store,
    every: Option<Duration>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let Some(every) = every else { return };
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
        let pass = tracing::info_span!("freshness", changes = tracing::field::Empty);
        match store.check_freshness().instrument(pass.clone()).await {
            Ok(changes) if !changes.is_empty() => {
                pass.record("changes", changes.len());
                tracing::info!(changes = changes.len(), "agencies' data freshness changed");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "freshness pass failed"),
        }
    }
}

/// Trims feed events older than `retention`, hourly.
async fn trim_feed(
    store: Store,
    retention: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(3_600)) => {}
            _ = stopped.changed() => return,
        }
        let retention = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        let before = store
            .checks()
            .clock
            .now()
            .timestamp_micros()
            .saturating_sub(retention);
        if let Err(error) = store.trim_feed(before).await {
            tracing::warn!(%error, "cannot trim the feed");
        }
    }
}

/// What the database probe reports to.
struct Probe {
    store: Store,
    metrics: Metrics,
    health: HealthReporter,
    ready: Readiness,
    draining: tokio::sync::watch::Receiver<bool>,
    every: Duration,
}

/// Pings the database every `every`: while it does not answer, the hub reports NOT_SERVING and is
/// not ready, so that load balancers send calls to replicas that can take them. Every few probes
/// it also reads the gauges of the metrics.
async fn probe_database(probe: Probe, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut up = true;
    let mut probes: u64 = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(probe.every) => {}
            _ = stopped.changed() => return,
        }
        let reached = matches!(
            tokio::time::timeout(probe.every.max(Duration::from_secs(1)), probe.store.ping()).await,
            Ok(Ok(()))
        );
        probe.metrics.database_up(reached);
        if reached != up {
            up = reached;
            if up {
                tracing::info!("the database answers again; serving");
            } else {
                tracing::error!(
                    "the database does not answer; reporting NOT_SERVING until it does"
                );
            }
            if !*probe.draining.borrow() {
                probe.ready.set(up);
                let status = if up {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                set_serving(&probe.health, status).await;
            }
        }
        probes += 1;
        if reached && probes.is_multiple_of(6) {
            match probe.store.stats().await {
                Ok(stats) => probe.metrics.store_stats(stats),
                Err(error) => tracing::debug!(%error, "cannot read the store's gauges"),
            }
        }
    }
}

async fn set_serving(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for service in [
        "quotahub.v1.StaffingService",
        "quotahub.v1.PersonnelService",
        "quotahub.v1.OrganizationService",
        "quotahub.v1.FinanceService",
        "quotahub.v1.QueryService",
        "quotahub.v1.ReconciliationService",
        "quotahub.v1.FeedService",
        "quotahub.v1.LedgerService",
        "quotahub.v1.ApplicationService",
        "quotahub.v1.CaseService",
        "quotahub.v1.CampaignService",
        "quotahub.v1.AdminService",
        "quotahub.v1.AuditService",
    ] {
        health.set_service_status(service, status).await;
    }
}

/// Opens a store for tools that work on the database directly.
pub async fn open_store(url: &str) -> anyhow::Result<Store> {
    Store::connect(url, &StoreOptions::default())
        .await
        .map_err(|error| anyhow::anyhow!("cannot open {url}: {error}"))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Registers the development agencies whose certificates `pki::init` wrote in `pki_dir`, so that
/// `quotahub serve` with development certificates serves them from the first call.
pub async fn register_dev_agencies(
    store: &crate::store::Store,
    pki_dir: &std::path::Path,
) -> anyhow::Result<()> {
    for agency in crate::pki::sample_agencies() {
        let (cert, _) = crate::pki::agency_files(pki_dir, &agency);
        if cert.exists() {
            let fingerprint = fingerprint_of(&agency, &cert)?;
            store.add_agency(&agency, Some(&fingerprint)).await?;
        }
    }
    Ok(())
}

/// The fingerprint of the certificate in `path`, which must name `agency`.
pub(crate) fn fingerprint_of(
    agency: &crate::domain::Agency,
    path: &std::path::Path,
) -> anyhow::Result<String> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (named, fingerprint) = crate::tls::certificate_identity(&pem)
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
    anyhow::ensure!(
        named == *agency,
        "{} names {named}, not {agency}",
        path.display()
    );
    Ok(fingerprint)
}
