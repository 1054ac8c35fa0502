//! The one error type of the hub. Every layer returns it; `api::status` maps it to gRPC status codes
//! in one place. Database errors never reach a client as text: they become `Unavailable` or
//! `Internal` with the details in the log.

use crate::domain::FieldViolation;

/// What went wrong, in the domain's terms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed; each violation names a field and the reason.
    #[error("invalid record: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The caller presented no usable identity.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller's agency may not do this, or not in this jurisdiction.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A record the request names does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The sender reused one of its record ids for different content.
    #[error(
        "record id `{record_id}` was already accepted with different content; use a new record id for a new record"
    )]
    RecordConflict {
        /// The reused id.
        record_id: String,
    },
    /// The record is well-formed but does not fit what the hub holds (for example a departure of
    /// someone not on the roll).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A department with overdue ledger items applies for a staffing matter (暂停受理).
    #[error(
        "the department has {} overdue rectification item(s); applications are suspended until they are closed",
        .0.len()
    )]
    OverdueItems(Vec<crate::domain::ledger::OverdueItem>),
    /// The caller acted on a stale version of something another caller changed; read and retry.
    #[error("aborted: {0}")]
    Aborted(String),
    /// A limit was reached (records in one stream, calls per second); the caller may retry later.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The agency called more often than its rate limit allows; it may retry after the delay.
    #[error("rate limit reached; retry in {} ms", .retry_after.as_millis())]
    RateLimited {
        /// When a call will be taken again.
        retry_after: std::time::Duration,
    },
    /// The call did not finish within its deadline.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A feed cursor points before the oldest event still kept.
    #[error(
        "the cursor {requested} is older than what the feed keeps; the earliest event still kept is {earliest}"
    )]
    CursorExpired {
        /// The cursor asked for.
        requested: i64,
        /// The earliest sequence number that still exists.
        earliest: i64,
    },
    /// The database cannot be reached; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected state; details are in the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Error {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Error {
        match error.sqlite_error_code() {
            // The pre-checks' native reads: a file locked past the busy timeout is worth a retry.
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                tracing::warn!(%error, "database busy");
                Error::Unavailable("the database is busy; retry later".into())
            }
            _ => {
                tracing::error!(%error, "database error");
                Error::Internal("storage failure".into())
            }
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => {
                tracing::warn!(%error, "database unavailable");
                Error::Unavailable("the database cannot be reached; retry later".into())
            }
            // Connection lost, server shutting down, or a conflict PostgreSQL resolved by aborting:
            // all worth a retry by the caller.
            sqlx::Error::Database(database)
                if database.code().is_some_and(|code| {
                    code.starts_with("08")
                        || code.starts_with("57P")
                        || code == "40001"
                        || code == "40P01"
                }) =>
            {
                tracing::warn!(%error, "database unavailable or conflict");
                Error::Unavailable("the database is unavailable or busy; retry later".into())
            }
            _ => {
                tracing::error!(%error, "database error");
                Error::Internal("storage failure".into())
            }
        }
    }
}

/// The hub's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
