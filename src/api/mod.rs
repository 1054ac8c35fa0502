//! The gRPC surface: a thin translation between the contract (`proto/`) and the domain and store.
//!
//! - [`policy`]: who may call what, enforced by one tower layer in front of every service;
//! - [`convert`]: validation of pushed messages into domain records, and records back to messages;
//! - [`push`]: the unary and bulk push drivers every push method uses;
//! - [`services`] and [`query`]: the service implementations;
//! - [`status`]: the one mapping from [`crate::error::Error`] to gRPC status codes.

pub mod admin;
pub mod campaign;
pub mod convert;
pub mod feed;
pub mod guard;
pub mod ledger;
pub mod personal;
pub mod policy;
pub mod push;
pub mod query;
pub mod reconciliation;
pub mod report;
pub mod services;
pub mod status;

use crate::store::Store;

/// Limits that protect the hub from one caller's excess.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Records stored per transaction of a bulk push. 5,000, a whole stream of the size agencies
    /// send: each commit writes every page it dirtied to the WAL, and each batch re-checks the
    /// keys it touched, so a stream in five batches wrote and re-decided the same index pages and
    /// institutions up to five times (city, four runs each: people ~10,200 → ~12,500 rows/s,
    /// appointments +35%, payroll and fundings +12–15%). The price: another push waits for the
    /// batch in progress (about 0.4 s at that rate), and a batch's check holds the rows of the
    /// keys it touched (the city's hub 115–135 MiB more at its peak, until the native writer
    /// kept one thread: 362 MiB then, against 395–415 with batches of 1,000).
    pub batch_size: usize,
    /// Records accepted in one bulk stream; the rest are refused with RESOURCE_EXHAUSTED.
    pub max_records_per_stream: u64,
    /// Calls a second each agency may make on average (0: no limit).
    pub calls_per_second: u32,
    /// Calls an agency may make at once after a quiet spell.
    pub burst: u32,
    /// Deadline of every unary call.
    pub call_timeout: Option<std::time::Duration>,
    /// The most a bulk push's answer may weigh, in bytes: the finding changes that would make it
    /// heavier are left out (and counted), so that a client with gRPC's default 4 MiB receive
    /// limit can always read the results of its records.
    pub answer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            batch_size: 5_000,
            max_records_per_stream: 100_000,
            calls_per_second: 500,
            burst: 1_000,
            call_timeout: Some(std::time::Duration::from_secs(30)),
            answer_bytes: 3 * 1024 * 1024,
        }
    }
}

/// The state every handler shares.
#[derive(Debug, Clone)]
pub struct Hub {
    /// Where records live.
    pub store: Store,
    /// Per-call limits.
    pub limits: Limits,
    /// Set when the hub is about to stop: feed streams send their drain message and end.
    pub draining: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    /// The key of the person tokens, read from the database at the first masked read.
    person_tokens: std::sync::Arc<tokio::sync::OnceCell<std::sync::Arc<personal::PersonTokens>>>,
    /// Calls, records, subscribers and escalations, for the operators.
    pub metrics: crate::telemetry::Metrics,
    /// The CJK font the leadership report's PDF is set in (`report.font`).
    pub report_font: std::path::PathBuf,
}

impl Hub {
    /// Builds the handlers' state.
    pub fn new(store: Store, limits: Limits) -> Hub {
        Hub {
            store,
            limits,
            draining: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
            person_tokens: std::sync::Arc::default(),
            metrics: crate::telemetry::Metrics::default(),
            report_font: crate::report::DEFAULT_REPORT_FONT.into(),
        }
    }
}
