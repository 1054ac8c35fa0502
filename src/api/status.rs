//! The one place where domain errors become gRPC statuses: a unary call's status, and the
//! per-record error of a bulk push, carry the same code and field violations. Also the code of a
//! message over the size limit, which tonic refuses before any handler sees it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::error::Error;
use crate::proto;

/// The gRPC code of an error.
pub fn code(error: &Error) -> Code {
    match error {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::NotFound(_) => Code::NotFound,
        Error::RecordConflict { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) | Error::CursorExpired { .. } | Error::OverdueItems(_) => {
            Code::FailedPrecondition
        }
        Error::ResourceExhausted(_) | Error::RateLimited { .. } => Code::ResourceExhausted,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Aborted(_) => Code::Aborted,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Internal(_) => Code::Internal,
    }
}

/// What a client is told. Internal errors say no more than that: the details are in the log.
fn message(error: &Error) -> String {
    match error {
        Error::Internal(_) => "internal error; the hub's log has the details".to_owned(),
        other => other.to_string(),
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        if let Error::Internal(detail) = &error {
            tracing::error!(%detail, "internal error");
        }
        match &error {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for violation in violations {
                    details.add_bad_request_violation(
                        violation.field.clone(),
                        violation.description.clone(),
                    );
                }
                Status::with_error_details(Code::InvalidArgument, message(&error), details)
            }
            Error::CursorExpired { earliest, .. } => {
                let mut details = ErrorDetails::new();
                details.add_precondition_failure_violation(
                    "CURSOR_EXPIRED",
                    format!("earliest_seq={earliest}"),
                    message(&error),
                );
                Status::with_error_details(Code::FailedPrecondition, message(&error), details)
            }
            Error::OverdueItems(items) => {
                let mut details = ErrorDetails::new();
                for item in items {
                    details.add_precondition_failure_violation(
                        "LEDGER_ITEM_OVERDUE",
                        item.id.clone(),
                        format!("due {}: {}", item.due_on, item.title),
                    );
                }
                Status::with_error_details(Code::FailedPrecondition, message(&error), details)
            }
            Error::RateLimited { retry_after } => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(*retry_after));
                Status::with_error_details(Code::ResourceExhausted, message(&error), details)
            }
            _ => Status::new(code(&error), message(&error)),
        }
    }
}

/// The per-record error of a bulk push.
pub fn record_error(error: &Error) -> proto::RecordError {
    let field_violations = match error {
        Error::InvalidArgument(violations) => violations
            .iter()
            .map(|v| proto::FieldViolation {
                field: v.field.clone(),
                description: v.description.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    proto::RecordError {
        code: grpc_code_name(code(error)).to_owned(),
        message: message(error),
        field_violations,
    }
}

/// The canonical upper-case name of a code, as in the gRPC specification.
pub fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// How tonic's message starts when a received message is over the size limit.
const OVER_SIZE_MESSAGE: &str = "Error, decoded message length too large";

/// Tower layer that answers a received message over the size limit with `RESOURCE_EXHAUSTED`, the
/// gRPC convention (what grpc-java, grpc-go and grpcio answer), where tonic says `OUT_OF_RANGE`.
///
/// Tonic refuses such a message while decoding it: for a unary call before the handler runs, for a
/// client stream in the handler, which ends the call with that status. Either way no response
/// message has been sent, so the status is in the response's headers (trailers-only), where this
/// layer rewrites it; no RPC of the contract reads a client stream after it has begun to answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct OverSizeLayer;

impl<S> Layer<S> for OverSizeLayer {
    type Service = OverSize<S>;

    fn layer(&self, inner: S) -> OverSize<S> {
        OverSize { inner }
    }
}

/// The service behind [`OverSizeLayer`].
#[derive(Debug, Clone)]
pub struct OverSize<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for OverSize<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            over_size_is_resource_exhausted(response.headers_mut());
            Ok(response)
        })
    }
}

/// Rewrites tonic's `OUT_OF_RANGE` for a message over the size limit to `RESOURCE_EXHAUSTED`.
fn over_size_is_resource_exhausted(headers: &mut http::HeaderMap) {
    let over_size = Status::from_header_map(headers).is_some_and(|status| {
        status.code() == Code::OutOfRange && status.message().starts_with(OVER_SIZE_MESSAGE)
    });
    if over_size {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(Code::ResourceExhausted as i32),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldViolation;

    #[test]
    fn invalid_argument_carries_bad_request_field_violations() {
        let status = Status::from(Error::InvalidArgument(vec![FieldViolation::new(
            "resident_id",
            "check character should be `X`",
        )]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations[0].field, "resident_id");
    }

    #[test]
    fn overdue_items_carry_a_precondition_failure_per_item() {
        let status = Status::from(Error::OverdueItems(vec![
            crate::domain::ledger::OverdueItem {
                id: "LI-1".into(),
                due_on: "2024-06-10".parse().unwrap(),
                title: "超编".into(),
            },
        ]));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let failure = status.get_error_details().precondition_failure().cloned();
        let violation = &failure.expect("precondition failure").violations[0];
        assert_eq!(violation.r#type, "LEDGER_ITEM_OVERDUE");
        assert_eq!(violation.subject, "LI-1");
        assert!(violation.description.contains("2024-06-10"));
    }

    #[test]
    fn only_tonic_over_size_refusals_become_resource_exhausted() {
        let rewritten = |status: Status| {
            let mut headers = http::HeaderMap::new();
            status.add_header(&mut headers).unwrap();
            over_size_is_resource_exhausted(&mut headers);
            Status::from_header_map(&headers).unwrap()
        };
        let over_size = rewritten(Status::out_of_range(format!(
            "{OVER_SIZE_MESSAGE}: found 67108929 bytes, the limit is: 67108864 bytes"
        )));
        assert_eq!(over_size.code(), Code::ResourceExhausted);
        assert!(over_size.message().starts_with(OVER_SIZE_MESSAGE));
        let other = rewritten(Status::out_of_range("page beyond the end"));
        assert_eq!(other.code(), Code::OutOfRange);
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let status = Status::from(Error::Internal(
            "UNIQUE constraint failed: secret_table".into(),
        ));
        assert!(!status.message().contains("secret_table"));
        let record = record_error(&Error::Internal("disk I/O error at /var/lib".into()));
        assert_eq!(record.code, "INTERNAL");
        assert!(!record.message.contains("/var/lib"));
    }
}
