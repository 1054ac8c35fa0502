//! Starts the real hub for a test: port 0 on loopback, real certificates, a fresh database (an
//! SQLite file in a temporary directory, or a new PostgreSQL database), mutual TLS clients per
//! agency. Logs are shown only when `TEST_LOG` is set.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use quotahub::api::Limits;
use quotahub::domain::ids::resident_id_with_check;
use quotahub::domain::{Agency, AgencyKind, Jurisdiction, Uscc};
use quotahub::pki::{CertifiedKey, DevCa, Validity};
use quotahub::proto;
use quotahub::server::{Application, ServerTls};
use quotahub::store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the PostgreSQL half of the suite uses.
pub const POSTGRES_URL_VAR: &str = "QUOTAHUB_TEST_POSTGRES_URL";

/// Certificates shared by every test of the process.
pub struct TestPki {
    pub ca: DevCa,
    pub server: CertifiedKey,
    agencies: Mutex<HashMap<String, CertifiedKey>>,
}

pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        quotahub::tls::install_crypto_provider();
        init_logging();
        let ca = DevCa::generate("quotahub test CA").expect("test CA");
        let server = ca
            .issue_server(&["localhost", "127.0.0.1"])
            .expect("server certificate");
        let pki = TestPki {
            ca,
            server,
            agencies: Mutex::new(HashMap::new()),
        };
        // Issued up front so that every hub a test starts registers them (see `register_all`),
        // whichever way the test then reaches the hub.
        for jurisdiction in ["140000", "140100", "140105", "140200"] {
            for kind in AgencyKind::ALL {
                pki.agency(&agency(jurisdiction, kind));
            }
        }
        pki
    })
}

impl TestPki {
    /// The certificate of an agency, made on first use.
    pub fn agency(&self, agency: &Agency) -> CertifiedKey {
        let mut certificates = self.agencies.lock().expect("not poisoned");
        certificates
            .entry(agency.id())
            .or_insert_with(|| {
                self.ca
                    .issue_agency(agency, Validity::default_leaf())
                    .expect("agency certificate")
            })
            .clone()
    }

    /// Registers, in the hub's database, every agency certificate issued so far: the hub serves
    /// only registered agencies.
    pub async fn register_all(&self, store: &Store) {
        let issued: Vec<(String, CertifiedKey)> = self
            .agencies
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(id, key)| (id.clone(), key.clone()))
            .collect();
        for (_, certificate) in issued {
            register(store, &certificate).await;
        }
    }

    pub fn server_tls(&self) -> ServerTls {
        ServerTls {
            ca_pem: self.ca.cert_pem().as_bytes().to_vec(),
            cert_pem: self.server.cert_pem.as_bytes().to_vec(),
            key_pem: self.server.key_pem.as_bytes().to_vec(),
        }
    }
}

/// Registers the agency a certificate names, with that certificate.
pub async fn register(store: &Store, certificate: &CertifiedKey) {
    let (agency, fingerprint) =
        quotahub::tls::certificate_identity(certificate.cert_pem.as_bytes()).expect("an agency");
    store
        .add_agency(&agency, Some(&fingerprint))
        .await
        .expect("register the agency");
}

/// Registers every test agency certificate in the database at `url` (for hubs run as processes).
pub async fn register_agencies_in(url: &str) {
    let store = Store::connect(url, &StoreOptions::default())
        .await
        .expect("open the store");
    pki().register_all(&store).await;
    store.close().await;
}

fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,quotahub=debug")
            .with_test_writer()
            .try_init();
    }
}

/// A database made for one test and dropped after it.
pub enum TestDb {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("quotahub.db").display());
                TestDb::Sqlite { _dir: dir, url }
            }
            Backend::Postgres => {
                let admin_url = std::env::var(POSTGRES_URL_VAR)
                    .unwrap_or_else(|_| panic!("{POSTGRES_URL_VAR} must name a PostgreSQL server"));
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let name = format!(
                    "quotahub_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    chrono::Utc::now().timestamp_micros() % 1_000_000
                );
                admin_execute(&admin_url, &format!("CREATE DATABASE {name}")).await;
                step(format_args!("created the database {name}"));
                let url = database_url(&admin_url, &name);
                TestDb::Postgres {
                    admin_url,
                    name,
                    url,
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }

    /// A store on this database whose checks take today from `clock`.
    pub async fn store_on(&self, clock: &quotahub::clock::Clock) -> Store {
        Store::connect(self.url(), &StoreOptions::default())
            .await
            .unwrap()
            .with_checks(quotahub::store::Checks {
                clock: clock.clone(),
                ..quotahub::store::Checks::default()
            })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres {
            admin_url, name, ..
        } = self
        {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            step(format_args!("dropping the database {name}"));
            // Drop runs inside the test's runtime; a plain thread with its own runtime may block.
            // Waited for at most a minute: a database left behind is better than a hung suite.
            let (dropped, done) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(admin_execute(
                    &admin_url,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ));
                let _ = dropped.send(());
            });
            if done.recv_timeout(std::time::Duration::from_secs(60))
                == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                to_terminal(&format!(
                    "dropping the test database {} took over a minute; left behind",
                    self.url()
                ));
            }
        }
    }
}

/// The URL of database `name` on the server of `admin_url`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let without_db = match base.rfind('/') {
        Some(slash) if slash > base.find("://").map_or(0, |i| i + 2) => &base[..slash],
        _ => base,
    };
    format!("{without_db}/{name}{query}")
}

async fn admin_execute(admin_url: &str, sql: &str) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to the PostgreSQL server");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut connection)
        .await
        .expect(sql);
    let _ = connection.close().await;
}

/// A running hub.
pub struct TestApp {
    pub address: SocketAddr,
    pub db: TestDb,
    pub store: Store,
    /// Where the hub's audit entries go; `flush` before reading the trail.
    pub audit: quotahub::audit::AuditSink,
    /// The supervision console's address, for hubs started with one.
    pub console: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    limits: Limits,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, Limits::default()).await
    }

    pub async fn spawn_with(backend: Backend, limits: Limits) -> TestApp {
        let db = TestDb::new(backend).await;
        TestApp::start(db, limits).await
    }

    /// A hub whose clock stands on `date` (for generated data, which is as of its own date).
    pub async fn spawn_on(backend: Backend, date: chrono::NaiveDate) -> TestApp {
        let db = TestDb::new(backend).await;
        TestApp::start_full(db, Limits::default(), None, Some(date)).await
    }

    /// A hub whose clock stands on `date` and that checks the agencies' data freshness every
    /// `interval` (LATE_PAYROLL on the schedule).
    pub async fn spawn_checking_freshness(
        backend: Backend,
        date: chrono::NaiveDate,
        interval: std::time::Duration,
    ) -> TestApp {
        let db = TestDb::new(backend).await;
        TestApp::start_with(
            db,
            Limits::default(),
            None,
            Some(date),
            false,
            None,
            Some(interval),
        )
        .await
    }

    /// A hub that re-checks everything every `interval`.
    pub async fn spawn_scheduled(backend: Backend, interval: std::time::Duration) -> TestApp {
        let db = TestDb::new(backend).await;
        TestApp::start_full(db, Limits::default(), Some(interval), None).await
    }

    /// A hub with the supervision console on a port of its own, that signs audit-log checkpoints thus.
    pub async fn spawn_with_console_logged(
        backend: Backend,
        log: quotahub::store::trust::CheckpointPolicy,
    ) -> TestApp {
        let db = TestDb::new(backend).await;
        TestApp::start_with(db, Limits::default(), None, None, true, Some(log), None).await
    }

    async fn start(db: TestDb, limits: Limits) -> TestApp {
        TestApp::start_full(db, limits, None, None).await
    }

    /// A hub with the console on, whose clock stands on `date`.
    pub async fn spawn_on_with_console(backend: Backend, date: chrono::NaiveDate) -> TestApp {
        let db = TestDb::new(backend).await;
        TestApp::start_with(db, Limits::default(), None, Some(date), true, None, None).await
    }

    /// A console page as `agency` sees it (one HTTP/1.0 request over mutual TLS: the answer
    /// comes whole, not chunked); the status line and the body.
    pub async fn console_page(&self, agency: &Agency, target: &str) -> (String, String) {
        let console = self.console.expect("the console is on");
        let request =
            format!("GET {target} HTTP/1.0\r\nHost: {console}\r\nAccept: text/html\r\n\r\n");
        self.console_request(agency, &request).await
    }

    /// A form posted to the console as `agency` from one of its pages (the browser's `Origin`
    /// the console's own), `form` already URL-encoded; the status line and the `Location` it
    /// answers with (empty if none).
    pub async fn console_post(
        &self,
        agency: &Agency,
        target: &str,
        form: &str,
    ) -> (String, String) {
        let console = self.console.expect("the console is on");
        let request = format!(
            "POST {target} HTTP/1.0\r\nHost: {console}\r\nOrigin: https://{console}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        let (status, _, head) = self.console_exchange(agency, &request).await;
        let location = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        (status, location)
    }

    async fn console_request(&self, agency: &Agency, request: &str) -> (String, String) {
        let (status, body, _) = self.console_exchange(agency, request).await;
        (status, body)
    }

    /// One HTTP/1.0 exchange with the console as `agency`: the status line, the body, the head.
    async fn console_exchange(&self, agency: &Agency, request: &str) -> (String, String, String) {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let console = self.console.expect("the console is on");
        let pki = pki();
        let certificate = pki.agency(agency);
        register(&self.store, &certificate).await;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(pki.ca.cert_pem().as_bytes()) {
            roots.add(ca.unwrap()).unwrap();
        }
        let chain = CertificateDer::pem_slice_iter(certificate.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        let tcp = tokio::net::TcpStream::connect(console).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS to the console");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        // The server closes the connection after an HTTP/1.0 answer; a TLS close without
        // close_notify still leaves the answer read.
        let _ = tls.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        (
            head.lines().next().unwrap_or_default().to_owned(),
            body.to_owned(),
            head.to_owned(),
        )
    }

    /// A hub that signs audit-log checkpoints thus.
    pub async fn spawn_logged(
        backend: Backend,
        log: quotahub::store::trust::CheckpointPolicy,
    ) -> TestApp {
        let db = TestDb::new(backend).await;
        TestApp::start_with(db, Limits::default(), None, None, false, Some(log), None).await
    }

    async fn start_full(
        db: TestDb,
        limits: Limits,
        reconcile_every: Option<std::time::Duration>,
        today: Option<chrono::NaiveDate>,
    ) -> TestApp {
        TestApp::start_with(db, limits, reconcile_every, today, false, None, None).await
    }

    async fn start_with(
        db: TestDb,
        limits: Limits,
        reconcile_every: Option<std::time::Duration>,
        today: Option<chrono::NaiveDate>,
        console: bool,
        log: Option<quotahub::store::trust::CheckpointPolicy>,
        freshness_every: Option<std::time::Duration>,
    ) -> TestApp {
        let pki = pki();
        let mut store = Store::connect(db.url(), &StoreOptions::default())
            .await
            .expect("open the store");
        if let Some(log) = log {
            store = store.with_log(log);
        }
        if let Some(today) = today {
            store = store.with_checks(quotahub::store::Checks {
                clock: quotahub::clock::Clock::on(today),
                ..quotahub::store::Checks::default()
            });
        }
        pki.register_all(&store).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let mut application =
            Application::with_listener(listener, store.clone(), &pki.server_tls(), limits.clone())
                .expect("build the hub")
                .reconcile_every(reconcile_every)
                .freshness_every(freshness_every);
        if console {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
            application = application
                .with_console(listener, &pki.server_tls())
                .expect("the console's TLS");
        }
        let console = application.console_addr();
        let address = application.local_addr();
        let audit = application.audit();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        step(format_args!("the hub serves on {address}"));
        TestApp {
            address,
            db,
            store,
            audit,
            console,
            shutdown: Some(shutdown),
            server: Some(server),
            limits,
        }
    }

    /// Stops the hub and starts a new one on the same database, as after a crash or an upgrade.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let limits = self.limits.clone();
        let db = std::mem::replace(
            &mut self.db,
            TestDb::Sqlite {
                _dir: tempfile::tempdir().unwrap(),
                url: String::new(),
            },
        );
        TestApp::start(db, limits).await
    }

    pub async fn stop(&mut self) {
        step("stopping the hub");
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    pub fn endpoint(&self) -> String {
        format!("https://{}", self.address)
    }

    /// Registers `agency` and its test certificate with this hub.
    pub async fn register(&self, agency: &Agency) {
        register(&self.store, &pki().agency(agency)).await;
    }

    /// A channel authenticated as `agency` (registered first).
    pub async fn channel(&self, agency: &Agency) -> Channel {
        let pki = pki();
        let certificate = pki.agency(agency);
        register(&self.store, &certificate).await;
        step(format_args!("connecting as {}", agency.id()));
        let channel = quotahub::tls::client_channel(
            &self.endpoint(),
            pki.ca.cert_pem().as_bytes(),
            certificate.cert_pem.as_bytes(),
            certificate.key_pem.as_bytes(),
        )
        .await
        .expect("connect over mutual TLS");
        step(format_args!("connected as {}", agency.id()));
        channel
    }

    pub async fn staffing(
        &self,
        jurisdiction: &str,
    ) -> proto::staffing_service_client::StaffingServiceClient<Channel> {
        proto::staffing_service_client::StaffingServiceClient::new(
            self.channel(&agency(jurisdiction, AgencyKind::StaffingOffice))
                .await,
        )
    }

    pub async fn hr(
        &self,
        jurisdiction: &str,
    ) -> proto::personnel_service_client::PersonnelServiceClient<Channel> {
        proto::personnel_service_client::PersonnelServiceClient::new(
            self.channel(&agency(jurisdiction, AgencyKind::Hr)).await,
        )
    }

    pub async fn organization(
        &self,
        jurisdiction: &str,
    ) -> proto::organization_service_client::OrganizationServiceClient<Channel> {
        proto::organization_service_client::OrganizationServiceClient::new(
            self.channel(&agency(jurisdiction, AgencyKind::Organization))
                .await,
        )
    }

    pub async fn finance(
        &self,
        jurisdiction: &str,
    ) -> proto::finance_service_client::FinanceServiceClient<Channel> {
        proto::finance_service_client::FinanceServiceClient::new(
            self.channel(&agency(jurisdiction, AgencyKind::Finance))
                .await,
        )
    }

    pub async fn query(
        &self,
        jurisdiction: &str,
        kind: AgencyKind,
    ) -> proto::query_service_client::QueryServiceClient<Channel> {
        proto::query_service_client::QueryServiceClient::new(
            self.channel(&agency(jurisdiction, kind)).await,
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// PEM files of the test CA and an agency's certificate and key, for the command line's flags.
pub struct ClientFiles {
    _dir: tempfile::TempDir,
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl ClientFiles {
    pub fn new(agency: &Agency) -> ClientFiles {
        let dir = tempfile::tempdir().unwrap();
        let certificate = pki().agency(agency);
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let ca = write("ca.pem", pki().ca.cert_pem());
        let cert = write("agency.pem", &certificate.cert_pem);
        let key = write("agency-key.pem", &certificate.key_pem);
        ClientFiles {
            _dir: dir,
            ca,
            cert,
            key,
        }
    }
}

pub fn agency(jurisdiction: &str, kind: AgencyKind) -> Agency {
    Agency::new(
        Jurisdiction::parse(jurisdiction).expect("jurisdiction"),
        kind,
    )
}

/// A valid USCC of an organ (`11`) registered in `division`, numbered `n`.
pub fn uscc(division: &str, n: u32) -> String {
    Uscc::with_check_character(&format!("11{division}MB{n:07}"))
        .expect("valid code")
        .to_string()
}

/// A valid resident ID born in 1980, numbered `n`.
pub fn resident(n: u32) -> String {
    let birth = chrono::NaiveDate::from_ymd_opt(1980, 1, 1).unwrap()
        + chrono::Days::new(u64::from(n % 3000));
    resident_id_with_check(&format!("140105{}{:03}", birth.format("%Y%m%d"), n % 1000))
        .expect("valid id")
        .to_string()
}

pub fn organ(record_id: &str, uscc: &str, jurisdiction: &str) -> proto::Institution {
    proto::Institution {
        record_id: record_id.into(),
        uscc: uscc.into(),
        name: format!("机关 {uscc}"),
        jurisdiction: jurisdiction.into(),
        kind: proto::InstitutionKind::Organ as i32,
        grade: proto::Grade::DivisionPrincipal as i32,
        status: proto::InstitutionStatus::Active as i32,
        approval_document: "并编发[2020]1号".into(),
        established_on: "2020-01-01".into(),
        ..Default::default()
    }
}

pub fn quota(record_id: &str, institution: &str, count: u32) -> proto::Quota {
    proto::Quota {
        record_id: record_id.into(),
        institution_uscc: institution.into(),
        category: proto::QuotaCategory::Administrative as i32,
        approved_count: count,
        effective_from: "2020-01-01".into(),
        approval_document: "并编发〔2020〕2号".into(),
        ..Default::default()
    }
}

pub fn hire(record_id: &str, person: &str, institution: &str, on: &str) -> proto::PersonnelEvent {
    proto::PersonnelEvent {
        record_id: record_id.into(),
        event_type: proto::PersonnelEventType::Hire as i32,
        resident_id: person.into(),
        name: "王五".into(),
        institution_uscc: institution.into(),
        category: proto::QuotaCategory::Administrative as i32,
        rank: proto::Rank::Clerk as i32,
        effective_on: on.into(),
        approval_number: "并编审〔2020〕7号".into(),
        channel: proto::HiringChannel::OpenRecruitment as i32,
        ..Default::default()
    }
}

pub fn payroll(
    record_id: &str,
    person: &str,
    institution: &str,
    period: &str,
) -> proto::PayrollLine {
    proto::PayrollLine {
        record_id: record_id.into(),
        period: period.into(),
        institution_uscc: institution.into(),
        resident_id: person.into(),
        name: "王五".into(),
        gross_fen: 650_000,
        reverses_record_id: String::new(),
        person_token: String::new(),
    }
}

/// Whether the PostgreSQL half of the suite runs: `QUOTAHUB_TEST_POSTGRES_URL` names a server. It
/// is read when the tests run, not when they are built, so that setting it rebuilds nothing.
/// Without it the PostgreSQL tests return at once, after one note on the terminal per run; in CI
/// (`CI=true`) they fail instead.
pub fn postgres_given() -> bool {
    let given = std::env::var_os(POSTGRES_URL_VAR).is_some_and(|url| !url.is_empty());
    if !given {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the PostgreSQL half: set {POSTGRES_URL_VAR}"
        );
        static NOTED: std::sync::Once = std::sync::Once::new();
        NOTED.call_once(|| {
            to_terminal(&format!(
                "PostgreSQL half not run (its tests pass without running): set {POSTGRES_URL_VAR}"
            ));
        });
    }
    given
}

/// Longest a test defined by [`on_both_backends`] may run. The slowest take a few minutes in the
/// whole suite on two cores; one that hangs fails here, named, with the last steps it reached
/// ([`step`]), instead of holding CI until its own limit (the PostgreSQL half of
/// `trust::every_refusal_is_answered_audited_and_leaves_the_hub_serving` hung once in `.ci/run`,
/// every thread parked, and passed on its own again).
pub const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Steps kept for the report of a test that hangs.
const STEPS_KEPT: usize = 12;

type Steps = std::sync::Arc<Mutex<std::collections::VecDeque<(std::time::Instant, String)>>>;

tokio::task_local! {
    /// The last steps the running test reached (see [`step`]).
    static STEPS: Steps;
}

/// Notes that the running test reached `what`: a test that hangs is reported with the last
/// steps it reached. Outside a test run by [`within_limit`] it does nothing.
pub fn step(what: impl std::fmt::Display) {
    let _ = STEPS.try_with(|steps| {
        let mut steps = steps.lock().expect("not poisoned");
        if steps.len() == STEPS_KEPT {
            steps.pop_front();
        }
        steps.push_back((std::time::Instant::now(), what.to_string()));
    });
}

/// Runs the test `name`, failing it if it takes longer than `limit`, with a report of its last
/// steps; the report also goes straight to the terminal, as the harness shows a test's output only
/// once it ends. A test stuck in a synchronous call, which no timer of its runtime can end, ends
/// the process a minute later with the same report: its runtime could never stop, and CI would
/// hang on it.
pub async fn within_limit(
    name: &str,
    limit: std::time::Duration,
    test: impl std::future::Future<Output = ()>,
) {
    let steps = Steps::default();
    let (finished, watched) = std::sync::mpsc::channel::<()>();
    {
        let (name, steps) = (name.to_owned(), steps.clone());
        let grace = limit + std::time::Duration::from_secs(60);
        std::thread::spawn(move || {
            if watched.recv_timeout(grace) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                to_terminal(&hang_report(&name, limit, &steps));
                to_terminal("the test is stuck in a synchronous call; ending the process");
                std::process::abort();
            }
        });
    }
    let outcome = tokio::time::timeout(limit, STEPS.scope(steps.clone(), test)).await;
    drop(finished);
    if outcome.is_err() {
        let report = hang_report(name, limit, &steps);
        to_terminal(&report);
        panic!("{report}");
    }
}

/// The report of a test that hangs: its last steps, timed from the oldest of them kept.
fn hang_report(name: &str, limit: std::time::Duration, steps: &Steps) -> String {
    let steps = steps.lock().expect("not poisoned");
    let first = steps.front().map(|step| step.0);
    let mut report = format!("{name} did not finish within {limit:?}: it hangs. Its last steps:\n");
    for (at, what) in steps.iter() {
        let since = first.map_or(0.0, |first| at.duration_since(first).as_secs_f64());
        report.push_str(&format!("  +{since:.3}s {what}\n"));
    }
    report
}

/// Straight to the terminal: the test harness captures only print! and eprint!.
fn to_terminal(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Defines each listed test twice: on SQLite, and on PostgreSQL where a server is given; each
/// fails rather than hangs ([`within_limit`]).
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    $crate::helpers::within_limit(
                        concat!(module_path!(), "::", stringify!($test)),
                        $crate::helpers::TEST_LIMIT,
                        super::$test($crate::helpers::Backend::Sqlite),
                    )
                    .await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if $crate::helpers::postgres_given() {
                        $crate::helpers::within_limit(
                            concat!(module_path!(), "::", stringify!($test)),
                            $crate::helpers::TEST_LIMIT,
                            super::$test($crate::helpers::Backend::Postgres),
                        )
                        .await;
                    }
                }
            )+
        }
    };
}

/// The panic message of a test run by [`within_limit`] with `limit`; `None` when it passed.
async fn failure_of(
    limit: std::time::Duration,
    test: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<String> {
    let outcome = tokio::spawn(within_limit("a test made to hang on purpose", limit, test)).await;
    let payload = outcome.err()?.into_panic();
    Some(match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast::<&str>()
            .map_or_else(|_| String::new(), |m| m.to_string()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_that_hangs_fails_with_the_last_steps_it_reached() {
    let limit = std::time::Duration::from_millis(200);
    let hung = failure_of(limit, async {
        step("started");
        step("waiting for what never comes");
        std::future::pending::<()>().await;
    })
    .await
    .expect("a test that hangs fails");
    assert!(
        hung.starts_with(
            "a test made to hang on purpose did not finish within 200ms: it hangs. Its last steps:\n  +0.000s started\n"
        ),
        "{hung}"
    );
    assert!(hung.ends_with("s waiting for what never comes\n"), "{hung}");
    assert_eq!(failure_of(limit, async { step("quick") }).await, None);
    assert_eq!(
        failure_of(limit, async { panic!("its own failure") })
            .await
            .as_deref(),
        Some("its own failure")
    );
}

/// What a command run in this process printed so far, shared with the test while it runs.
#[derive(Clone, Default)]
pub struct Printed(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Printed {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Printed {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A TCP relay in front of the test's PostgreSQL that counts the round trips its clients make
/// for statements: the messages the server answers with ReadyForQuery (the extended protocol's
/// Sync after a statement's messages, a simple Query). A ping (a Sync alone, which a connection
/// idle for a second gets before use) is not counted, so that the count does not depend on how
/// fast a loaded machine runs the test. What a statement costs on PostgreSQL is mostly its
/// exchange (BENCHMARKS), so this is the work a test of PostgreSQL's round trips counts. Its URL
/// turns TLS off, so that the relay reads the messages.
pub struct PgRelay {
    pub url: String,
    exchanges: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PgRelay {
    pub async fn start(url: &str) -> PgRelay {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(c, r)| (c, r));
        let (server, path) = rest.split_once('/').expect("a database in the URL");
        let server = server.to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let exchanges = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = exchanges.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = tokio::net::TcpStream::connect(&server).await.unwrap();
                let (mut from_client, to_client) = client.into_split();
                let (from_server, mut to_server) = upstream.into_split();
                tokio::spawn(relay_answers(from_server, to_client));
                let counted = counted.clone();
                tokio::spawn(async move {
                    let _ = relay_counting(&mut from_client, &mut to_server, &counted).await;
                });
            }
        });
        let at_credentials = if credentials.is_empty() {
            String::new()
        } else {
            format!("{credentials}@")
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        PgRelay {
            url: format!("{scheme}://{at_credentials}{at}/{path}{separator}sslmode=disable"),
            exchanges,
            task,
        }
    }

    /// Round trips so far, over every connection through the relay.
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::SeqCst)
    }
}

impl Drop for PgRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay_answers(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
}

/// Relays a client's messages, counting those that end an exchange. The first messages have no
/// type byte: an SSL or GSS encryption request (refused, as TLS is off), then the startup.
async fn relay_counting(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    exchanges: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];
    let mut started = false;
    let mut since_sync = false;
    loop {
        let kind = if started {
            Some(from.read_u8().await?)
        } else {
            None
        };
        let length = from.read_u32().await?;
        let mut body = vec![0; (length as usize).saturating_sub(4)];
        from.read_exact(&mut body).await?;
        if let Some(kind) = kind {
            let counted = match kind {
                b'Q' => true,
                b'S' => std::mem::take(&mut since_sync),
                _ => {
                    since_sync = true;
                    false
                }
            };
            if counted {
                exchanges.fetch_add(1, Ordering::SeqCst);
            }
            to.write_u8(kind).await?;
        } else {
            let code = body
                .get(..4)
                .map(|code| u32::from_be_bytes(code.try_into().unwrap()));
            started = !code.is_some_and(|code| ENCRYPTION_REQUESTS.contains(&code));
        }
        to.write_u32(length).await?;
        to.write_all(&body).await?;
    }
}

/// The audit entry of an agency's call `n`, as the hub appends one for each call it answers.
pub fn call_entry(n: i64) -> quotahub::domain::audit::AuditEntry {
    quotahub::domain::audit::AuditEntry {
        at: 1_700_000_000_000_000 + n,
        agency_id: "140100/hr".into(),
        jurisdiction: "140100".into(),
        fingerprint: "ab".repeat(32),
        peer: "127.0.0.1:50000".into(),
        method: "/quotahub.v1.PersonnelService/CheckHire".into(),
        touched: format!("call {n}"),
        outcome: "OK".into(),
    }
}

/// The log's root over `entries` in order, rebuilt from their leaves.
pub fn root_of(entries: &[quotahub::domain::audit::AuditEntry]) -> quotahub::domain::audit::Hash {
    let mut tree = quotahub::domain::audit::TreeWalk::default();
    for entry in entries {
        tree.push(entry.leaf_hash());
    }
    tree.root()
}
