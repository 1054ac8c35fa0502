//! Settings of the hub, in layers: built-in defaults, then a TOML file, then `QUOTAHUB_`
//! environment variables, then command-line flags (clap reads the last two together). Paths in a
//! TOML file are relative to the file, not to the working directory; the defaults live under
//! `./quotahub-data`, made absolute at start-up and logged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::Limits;
use crate::store::StoreOptions;

/// Everything `quotahub serve` needs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the gRPC server binds (`listen`).
    pub listen: SocketAddr,
    /// Directory for the embedded database and development certificates (`data_dir`).
    pub data_dir: PathBuf,
    /// Database URL; `sqlite:` or `postgres:`. Default: `sqlite://{data_dir}/quotahub.db`.
    pub database_url: Option<String>,
    /// Certificates.
    pub tls: TlsSettings,
    /// Storage pools.
    pub database: DatabaseSettings,
    /// Limits per call.
    pub limits: LimitSettings,
    /// Longest wait for calls in flight when the hub stops, in seconds (`shutdown_grace_secs`).
    pub shutdown_grace_secs: u64,
    /// Settings of the rules.
    pub rules: RuleSettings,
    /// The scheduled re-check.
    pub reconcile: ReconcileSettings,
    /// The cadence each agency's data is held to, and how often it is checked.
    pub freshness: FreshnessSettings,
    /// The alert feed and escalation.
    pub feed: FeedSettings,
    /// The plain-HTTP admin port.
    pub admin: AdminSettings,
    /// The supervision console (web pages over HTTPS).
    pub console: ConsoleSettings,
    /// The audit trail's transparency log.
    pub audit: AuditSettings,
    /// The report to the leadership.
    pub report: ReportSettings,
    /// Logs.
    pub log: LogSettings,
}

/// The audit trail's transparency log: its signing key and how often checkpoints are issued
/// (`[audit]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// The log's Ed25519 signing key, a signed-note private key whose name is the log's origin
    /// (`audit.log_key`, default `{data_dir}/pki/audit-log.key`, made when missing with the
    /// development certificates).
    pub log_key: Option<PathBuf>,
    /// A checkpoint is issued once this many entries were appended since the last
    /// (`audit.checkpoint_every_entries`, default 1000).
    pub checkpoint_every_entries: u64,
    /// ... or at the first append this many seconds after the last (`audit.checkpoint_every_secs`,
    /// default 60).
    pub checkpoint_every_secs: u64,
}

impl Default for AuditSettings {
    fn default() -> AuditSettings {
        AuditSettings {
            log_key: None,
            checkpoint_every_entries: 1_000,
            checkpoint_every_secs: 60,
        }
    }
}

/// The plain-HTTP admin port: `/metrics`, `/healthz`, `/readyz` (`[admin]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Address of the admin port (`admin.listen`, default none: no admin port). It is plain HTTP:
    /// bind it where only the platform (Prometheus, the kubelet) can reach it.
    pub listen: Option<SocketAddr>,
}

/// The supervision console: server-rendered pages over HTTPS, with the agency's client
/// certificate as the login (`[console]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Address of the console's HTTPS port (`console.listen`, default none: no console; with
    /// development certificates, [`DEV_CONSOLE_LISTEN`]).
    pub listen: Option<SocketAddr>,
}

/// Where the console listens when the hub runs on development certificates and `console.listen`
/// is not set.
pub const DEV_CONSOLE_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50052,
));

pub use crate::report::DEFAULT_REPORT_FONT;

/// The report to the leadership (`[report]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportSettings {
    /// The CJK font its PDF is set in, a TrueType/OpenType file or collection (`report.font`,
    /// default [`DEFAULT_REPORT_FONT`]); read when a PDF is asked for, never fetched.
    pub font: PathBuf,
}

impl Default for ReportSettings {
    fn default() -> ReportSettings {
        ReportSettings {
            font: PathBuf::from(DEFAULT_REPORT_FONT),
        }
    }
}

/// Logs (`[log]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `human` (default) or `json` (`log.format`).
    pub format: crate::telemetry::LogFormat,
}

/// The alert feed and escalation (`[feed]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedSettings {
    /// Days events are kept (`feed.retention_days`, default 90); a cursor older than that gets
    /// FAILED_PRECONDITION.
    pub retention_days: u64,
    /// Seconds between escalation passes (`feed.escalation_interval_secs`, default 60; 0 turns
    /// escalation off).
    pub escalation_interval_secs: u64,
    /// Per severity code, hours to acknowledge and to rectify (`feed.deadlines.HIGH = [72, 720]`);
    /// 0 means that clock does not run. Severities left out keep their defaults.
    pub deadlines: std::collections::BTreeMap<String, [u64; 2]>,
}

impl Default for FeedSettings {
    fn default() -> FeedSettings {
        FeedSettings {
            retention_days: 90,
            escalation_interval_secs: 60,
            deadlines: std::collections::BTreeMap::new(),
        }
    }
}

/// Settings of the rules (`[rules]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSettings {
    /// QUOTA_FULL fires at this share of the quota (`rules.quota_full_threshold`, default 1.0).
    pub quota_full_threshold: f64,
    /// Highest leader rank per institution grade, by code (`rules.rank_ceilings`), e.g.
    /// `DIVISION_PRINCIPAL = "DIVISION_PRINCIPAL"`; grades left out keep their default.
    pub rank_ceilings: std::collections::BTreeMap<String, String>,
}

impl Default for RuleSettings {
    fn default() -> RuleSettings {
        RuleSettings {
            quota_full_threshold: 1.0,
            rank_ceilings: std::collections::BTreeMap::new(),
        }
    }
}

/// The scheduled re-check of everything (`[reconcile]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileSettings {
    /// Seconds between re-checks; 0 turns the schedule off (`reconcile.interval_secs`, default a day).
    pub interval_secs: u64,
    /// Whether every push checks the findings it can change (`reconcile.check_on_push`, default
    /// true). Turn it off only for an initial load of history, then run `quotahub reconcile`.
    pub check_on_push: bool,
}

impl Default for ReconcileSettings {
    fn default() -> ReconcileSettings {
        ReconcileSettings {
            interval_secs: 86_400,
            check_on_push: true,
        }
    }
}

/// Data freshness (`[freshness]`, 同步录入、实时更新): the cadence each agency kind is held to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreshnessSettings {
    /// A month's payroll is late from this day of the next month on (`freshness.payroll_due_day`,
    /// default 10; 1–28).
    pub payroll_due_day: u32,
    /// A personnel event pushed more than this many days after it took effect is backdated
    /// (`freshness.event_due_days`, default 30).
    pub event_due_days: u32,
    /// Days of pushes BACKDATED_EVENT and the report's backdated share look at
    /// (`freshness.window_days`, default 90).
    pub window_days: u32,
    /// Seconds between checks of every agency's data on the schedule; 0 turns them off
    /// (`freshness.interval_secs`, default an hour).
    pub interval_secs: u64,
    /// Freshness is judged from this day, `YYYY-MM-DD` (`freshness.watch_from`; default the hub's
    /// first start): a month whose payroll was due before it is not owed.
    pub watch_from: Option<String>,
}

impl Default for FreshnessSettings {
    fn default() -> FreshnessSettings {
        let cadence = crate::domain::freshness::Cadence::default();
        FreshnessSettings {
            payroll_due_day: cadence.payroll_due_day,
            event_due_days: cadence.event_due_days,
            window_days: cadence.window_days,
            interval_secs: 3_600,
            watch_from: None,
        }
    }
}

impl FreshnessSettings {
    /// The cadence, once the day is one every month has.
    pub fn cadence(&self) -> anyhow::Result<crate::domain::freshness::Cadence> {
        if !(1..=28).contains(&self.payroll_due_day) {
            anyhow::bail!("freshness.payroll_due_day must lie between 1 and 28");
        }
        if self.window_days == 0 {
            anyhow::bail!("freshness.window_days must be at least 1");
        }
        let watch_from = match &self.watch_from {
            Some(day) => Some(day.parse().map_err(|_| {
                anyhow::anyhow!("freshness.watch_from must be a date, YYYY-MM-DD, not `{day}`")
            })?),
            None => None,
        };
        Ok(crate::domain::freshness::Cadence {
            payroll_due_day: self.payroll_due_day,
            event_due_days: self.event_due_days,
            window_days: self.window_days,
            watch_from,
        })
    }
}

/// Where the certificates are. Unset paths default to `{data_dir}/pki/`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// CA bundle that client certificates must chain to (`tls.ca`).
    pub ca: Option<PathBuf>,
    /// Server certificate chain (`tls.cert`).
    pub cert: Option<PathBuf>,
    /// Server private key (`tls.key`).
    pub key: Option<PathBuf>,
    /// Make a development CA and certificates when they are missing (`tls.dev_pki`, default true).
    pub dev_pki: Option<bool>,
    /// Certificate revocation list for client certificates, PEM or DER (`tls.crl`).
    pub crl: Option<PathBuf>,
    /// Seconds between checks of the TLS files for changes (`tls.reload_secs`, default 10; 0: never).
    pub reload_secs: Option<u64>,
    /// Seconds a client has from connecting to the end of its handshake
    /// (`tls.handshake_timeout_secs`, default 10).
    pub handshake_timeout_secs: Option<u64>,
    /// Seconds a new connection may stay silent before it is closed (`tls.silent_timeout_secs`,
    /// default 3).
    pub silent_timeout_secs: Option<u64>,
    /// Handshakes in progress at once (`tls.max_handshakes`, default 1024).
    pub max_handshakes: Option<usize>,
    /// Handshakes in progress at once from one address (`tls.max_handshakes_per_address`,
    /// default 64).
    pub max_handshakes_per_address: Option<usize>,
    /// Connections at once from one address (`tls.max_connections_per_address`, default 4096).
    pub max_connections_per_address: Option<usize>,
}

/// Storage pool settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Largest number of connections (`database.max_connections`).
    pub max_connections: u32,
    /// Seconds to wait for a connection before answering UNAVAILABLE (`database.acquire_timeout_secs`).
    pub acquire_timeout_secs: u64,
    /// Seconds between health probes of the database (`database.probe_interval_secs`, default 5);
    /// while a probe fails the hub reports NOT_SERVING.
    pub probe_interval_secs: u64,
    /// MiB of an SQLite file the pre-checks' readers map (`database.sqlite_mapped_mib`, default
    /// 1024; 0 maps none).
    pub sqlite_mapped_mib: u64,
}

impl Default for DatabaseSettings {
    fn default() -> DatabaseSettings {
        let defaults = StoreOptions::default();
        DatabaseSettings {
            max_connections: defaults.max_connections,
            acquire_timeout_secs: defaults.acquire_timeout.as_secs(),
            probe_interval_secs: 5,
            sqlite_mapped_mib: defaults.sqlite_mapped_bytes >> 20,
        }
    }
}

/// Limits per call.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Records per transaction in a bulk push (`limits.batch_size`).
    pub batch_size: usize,
    /// Records accepted in one bulk stream (`limits.max_records_per_stream`).
    pub max_records_per_stream: u64,
    /// Calls a second per agency (`limits.calls_per_second`, default 500; 0 turns limiting off).
    pub calls_per_second: u32,
    /// Calls an agency may make at once (`limits.burst`, default 1000).
    pub burst: u32,
    /// Deadline of every unary call in seconds (`limits.call_timeout_secs`, default 30; 0: none).
    pub call_timeout_secs: u64,
    /// The most a bulk push's answer weighs, in bytes (`limits.answer_bytes`, default 3 MiB).
    pub answer_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> LimitSettings {
        let defaults = Limits::default();
        LimitSettings {
            batch_size: defaults.batch_size,
            max_records_per_stream: defaults.max_records_per_stream,
            calls_per_second: defaults.calls_per_second,
            burst: defaults.burst,
            call_timeout_secs: defaults.call_timeout.map_or(0, |t| t.as_secs()),
            answer_bytes: defaults.answer_bytes,
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("quotahub-data"),
            database_url: None,
            tls: TlsSettings::default(),
            database: DatabaseSettings::default(),
            limits: LimitSettings::default(),
            shutdown_grace_secs: 30,
            rules: RuleSettings::default(),
            reconcile: ReconcileSettings::default(),
            freshness: FreshnessSettings::default(),
            feed: FeedSettings::default(),
            admin: AdminSettings::default(),
            console: ConsoleSettings::default(),
            audit: AuditSettings::default(),
            report: ReportSettings::default(),
            log: LogSettings::default(),
        }
    }
}

/// Resolved certificate paths.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    /// Directory of the development PKI.
    pub dir: PathBuf,
    /// CA bundle.
    pub ca: PathBuf,
    /// Server certificate.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
}

impl Settings {
    /// Reads a TOML file over the defaults; relative paths in it are taken from its directory.
    pub fn from_toml_file(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        let mut settings: Settings = toml::from_str(&text)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        settings.rebase(base);
        Ok(settings)
    }

    fn rebase(&mut self, base: &Path) {
        let rebase = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        rebase(&mut self.data_dir);
        rebase(&mut self.report.font);
        for path in [
            &mut self.tls.ca,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.tls.crl,
            &mut self.audit.log_key,
        ]
        .into_iter()
        .flatten()
        {
            rebase(path);
        }
    }

    /// Makes the data directory absolute (from the working directory) so that logs say where
    /// things are.
    pub fn absolutize(&mut self) -> std::io::Result<()> {
        if self.data_dir.is_relative() {
            let cwd = std::env::current_dir()?;
            self.rebase(&cwd);
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("quotahub.db").display()))
    }

    /// The certificate paths in effect.
    pub fn pki(&self) -> PkiPaths {
        let dir = self.data_dir.join("pki");
        PkiPaths {
            ca: self.tls.ca.clone().unwrap_or_else(|| dir.join("ca.pem")),
            cert: self
                .tls
                .cert
                .clone()
                .unwrap_or_else(|| dir.join("server.pem")),
            key: self
                .tls
                .key
                .clone()
                .unwrap_or_else(|| dir.join("server-key.pem")),
            dir,
        }
    }

    /// The audit log's key file in effect.
    pub fn log_key(&self) -> PathBuf {
        self.audit
            .log_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pki").join(crate::pki::LOG_KEY))
    }

    /// How often the TLS files are checked for changes; `None` for never.
    pub fn tls_reload(&self) -> Option<Duration> {
        match self.tls.reload_secs.unwrap_or(10) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        }
    }

    /// Bounds on handshakes and connections per address, from `[tls]` over the defaults.
    pub fn connection_limits(&self) -> crate::tls::ConnectionLimits {
        let defaults = crate::tls::ConnectionLimits::default();
        let tls = &self.tls;
        crate::tls::ConnectionLimits {
            handshake_timeout: tls
                .handshake_timeout_secs
                .map_or(defaults.handshake_timeout, |secs| {
                    Duration::from_secs(secs.max(1))
                }),
            silent_timeout: tls
                .silent_timeout_secs
                .map_or(defaults.silent_timeout, |secs| {
                    Duration::from_secs(secs.max(1))
                }),
            max_handshakes: tls.max_handshakes.unwrap_or(defaults.max_handshakes).max(1),
            max_handshakes_per_address: tls
                .max_handshakes_per_address
                .unwrap_or(defaults.max_handshakes_per_address)
                .max(1),
            max_connections_per_address: tls
                .max_connections_per_address
                .unwrap_or(defaults.max_connections_per_address)
                .max(1),
        }
    }

    /// Where the console listens, if anywhere: `console.listen`, else on development
    /// certificates [`DEV_CONSOLE_LISTEN`].
    pub fn console_listen(&self) -> Option<SocketAddr> {
        self.console
            .listen
            .or_else(|| (self.dev_pki() && self.tls.ca.is_none()).then_some(DEV_CONSOLE_LISTEN))
    }

    /// Whether to make development certificates when missing.
    pub fn dev_pki(&self) -> bool {
        self.tls.dev_pki.unwrap_or(true)
    }

    /// Store options from these settings.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.database.max_connections,
            acquire_timeout: Duration::from_secs(self.database.acquire_timeout_secs),
            sqlite_mapped_bytes: self.database.sqlite_mapped_mib.saturating_mul(1 << 20),
        }
    }

    /// The rules' settings, checked.
    pub fn rules_config(&self) -> anyhow::Result<crate::domain::findings::RulesConfig> {
        use crate::domain::{Coded, Grade, Rank};
        let mut config = crate::domain::findings::RulesConfig::default();
        let threshold = self.rules.quota_full_threshold;
        if !(threshold > 0.0 && threshold <= 2.0) {
            anyhow::bail!(
                "rules.quota_full_threshold must be above 0 and at most 2, not {threshold}"
            );
        }
        config.quota_full_threshold = threshold;
        for (grade, rank) in &self.rules.rank_ceilings {
            let grade = Grade::from_code(grade)
                .ok_or_else(|| anyhow::anyhow!("rules.rank_ceilings: `{grade}` is not a grade"))?;
            let rank = Rank::from_code(rank)
                .ok_or_else(|| anyhow::anyhow!("rules.rank_ceilings: `{rank}` is not a rank"))?;
            config.rank_ceilings.retain(|(g, _)| *g != grade);
            config.rank_ceilings.push((grade, rank));
        }
        Ok(config)
    }

    /// Escalation deadlines per severity, checked.
    pub fn escalation_policy(&self) -> anyhow::Result<crate::domain::alerts::EscalationPolicy> {
        use crate::domain::Coded;
        use crate::domain::findings::Severity;
        let mut policy = crate::domain::alerts::EscalationPolicy::default();
        for (severity, [ack, rectify]) in &self.feed.deadlines {
            let severity = Severity::from_code(severity)
                .ok_or_else(|| anyhow::anyhow!("feed.deadlines: `{severity}` is not a severity"))?;
            let hours = |h: u64| {
                (h > 0).then(|| i64::try_from(h).unwrap_or(i64::MAX / 3_600_000_000) * 3_600)
            };
            policy.deadlines.retain(|(s, _, _)| *s != severity);
            policy
                .deadlines
                .push((severity, hours(*ack), hours(*rectify)));
        }
        Ok(policy)
    }

    /// Call limits from these settings.
    pub fn limits(&self) -> Limits {
        Limits {
            batch_size: self.limits.batch_size.max(1),
            max_records_per_stream: self.limits.max_records_per_stream,
            calls_per_second: self.limits.calls_per_second,
            burst: self.limits.burst,
            call_timeout: (self.limits.call_timeout_secs > 0)
                .then(|| Duration::from_secs(self.limits.call_timeout_secs)),
            answer_bytes: self.limits.answer_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_file_overrides_defaults_and_its_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quotahub.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"state\"\n[tls]\nca = \"certs/ca.pem\"\n[limits]\nbatch_size = 50\n",
        )
        .unwrap();
        let settings = Settings::from_toml_file(&path).unwrap();
        assert_eq!(settings.listen.port(), 6000);
        assert_eq!(settings.data_dir, dir.path().join("state"));
        assert_eq!(settings.pki().ca, dir.path().join("certs/ca.pem"));
        assert_eq!(settings.pki().cert, dir.path().join("state/pki/server.pem"));
        assert_eq!(settings.limits().batch_size, 50);
        assert!(settings.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn the_documented_example_configuration_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/quotahub.example.toml");
        let settings = Settings::from_toml_file(&path).unwrap();
        let defaults = Settings::default();
        assert_eq!(settings.listen, defaults.listen);
        assert_eq!(settings.limits().batch_size, defaults.limits().batch_size);
        assert_eq!(
            settings.reconcile.interval_secs,
            defaults.reconcile.interval_secs
        );
        assert_eq!(settings.feed.retention_days, defaults.feed.retention_days);
        assert_eq!(
            settings.rules_config().unwrap(),
            defaults.rules_config().unwrap()
        );
        assert_eq!(
            settings.escalation_policy().unwrap(),
            defaults.escalation_policy().unwrap()
        );
    }

    #[test]
    fn rule_and_deadline_settings_override_their_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quotahub.toml");
        std::fs::write(
            &path,
            "[rules]\nquota_full_threshold = 0.9\nrank_ceilings = { UNGRADED = \"SECTION_DEPUTY\" }\n[feed]\ndeadlines = { HIGH = [1, 0] }\n",
        )
        .unwrap();
        let settings = Settings::from_toml_file(&path).unwrap();
        let rules = settings.rules_config().unwrap();
        assert!((rules.quota_full_threshold - 0.9).abs() < 1e-9);
        assert!(rules.rank_ceilings.contains(&(
            crate::domain::Grade::Ungraded,
            crate::domain::Rank::SectionDeputy
        )));
        let policy = settings.escalation_policy().unwrap();
        assert!(policy.deadlines.contains(&(
            crate::domain::findings::Severity::High,
            Some(3_600),
            None
        )));
        std::fs::write(
            &path,
            "[rules]\nrank_ceilings = { NOT_A_GRADE = \"CLERK\" }\n",
        )
        .unwrap();
        assert!(
            Settings::from_toml_file(&path)
                .unwrap()
                .rules_config()
                .is_err()
        );
    }

    #[test]
    fn freshness_is_watched_from_a_configured_date_or_the_first_start() {
        assert_eq!(
            Settings::default().freshness.cadence().unwrap().watch_from,
            None
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quotahub.toml");
        std::fs::write(&path, "[freshness]\nwatch_from = \"2025-01-01\"\n").unwrap();
        let cadence = Settings::from_toml_file(&path)
            .unwrap()
            .freshness
            .cadence()
            .unwrap();
        assert_eq!(cadence.watch_from, "2025-01-01".parse().ok());
        std::fs::write(&path, "[freshness]\nwatch_from = \"January\"\n").unwrap();
        let refused = Settings::from_toml_file(&path)
            .unwrap()
            .freshness
            .cadence()
            .unwrap_err();
        assert!(refused.to_string().contains("watch_from"), "{refused}");
    }

    #[test]
    fn the_console_is_off_by_default_and_on_with_development_certificates() {
        let mut settings = Settings::default();
        assert_eq!(settings.console_listen(), Some(DEV_CONSOLE_LISTEN));
        settings.tls.ca = Some(PathBuf::from("/etc/quotahub/ca.pem"));
        assert_eq!(settings.console_listen(), None);
        settings.console.listen = Some(SocketAddr::from(([0, 0, 0, 0], 8443)));
        assert_eq!(
            settings.console_listen(),
            Some(SocketAddr::from(([0, 0, 0, 0], 8443)))
        );
        settings.console.listen = None;
        settings.tls.ca = None;
        settings.tls.dev_pki = Some(false);
        assert_eq!(settings.console_listen(), None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quotahub.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:6000\"\n").unwrap();
        assert!(Settings::from_toml_file(&path).is_err());
    }

    /// Every TOML key (from the defaults, serialized), every flag of `serve` and every variable
    /// appears in docs/CONFIGURATION.md.
    #[test]
    fn every_setting_is_documented() {
        fn keys(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
            if let serde_json::Value::Object(map) = value {
                for (key, value) in map {
                    let key = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    // Maps keyed by code (deadlines, rank ceilings) are settings of their own.
                    if value.is_object()
                        && !value.as_object().is_some_and(serde_json::Map::is_empty)
                    {
                        keys(&key, value, out);
                    } else {
                        out.push(key);
                    }
                }
            }
        }
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CONFIGURATION.md"),
        )
        .unwrap();
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/quotahub.example.toml"),
        )
        .unwrap();
        let mut all = Vec::new();
        keys(
            "",
            &serde_json::to_value(Settings::default()).unwrap(),
            &mut all,
        );
        assert!(all.len() > 20, "{all:?}");
        for key in &all {
            assert!(
                doc.contains(&format!("`{key}`")),
                "docs/CONFIGURATION.md lacks `{key}`"
            );
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                example.contains(&format!("{leaf} =")),
                "deploy/quotahub.example.toml lacks `{key}`"
            );
        }
        use clap::CommandFactory;
        let command = crate::cli::Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        for argument in serve.get_arguments().chain(command.get_arguments()) {
            if let Some(long) = argument.get_long() {
                if long == "help" || long == "version" {
                    continue;
                }
                assert!(
                    doc.contains(&format!("`--{long}`")),
                    "docs/CONFIGURATION.md lacks --{long}"
                );
            }
            if let Some(env) = argument.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    doc.contains(&format!("`{env}`")),
                    "docs/CONFIGURATION.md lacks {env}"
                );
            }
        }
    }

    #[test]
    fn the_kubernetes_config_map_holds_valid_settings() {
        let manifest = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/quotahub.yaml"),
        )
        .unwrap();
        // The block under `quotahub.toml: |`, indented by four spaces.
        let toml: String = manifest
            .lines()
            .skip_while(|line| !line.trim_start().starts_with("quotahub.toml: |"))
            .skip(1)
            .take_while(|line| line.is_empty() || line.starts_with("    "))
            .map(|line| format!("{}\n", line.trim_start()))
            .collect();
        let settings: Settings = toml::from_str(&toml).unwrap();
        assert!(settings.admin.listen.is_some());
        assert!(!settings.dev_pki());
        assert_eq!(settings.log.format, crate::telemetry::LogFormat::Json);
    }
}
