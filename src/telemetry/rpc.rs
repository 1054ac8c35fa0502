//! One span and one set of metrics per gRPC call, from a tower layer outside the authorization
//! layer, so that refused calls are seen too. The span carries the agency (from the client
//! certificate), the method, the gRPC code and, for pushes, the number of records (the push
//! handlers fill in `records`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};
use tracing::Instrument;

use super::Metrics;
use crate::tls::PeerIdentity;

/// Tower layer that wraps every call in an `rpc` span and counts it.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: Metrics,
}

impl RpcLayer {
    /// Counts calls in `metrics`.
    pub fn new(metrics: Metrics) -> RpcLayer {
        RpcLayer { metrics }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service behind [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, R> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().trim_start_matches('/').to_owned();
        let agency = request
            .extensions()
            .get::<PeerIdentity>()
            .and_then(|peer| peer.agency.as_ref().ok())
            .map_or_else(|| "unknown".to_owned(), crate::domain::Agency::id);
        let span = tracing::info_span!(
            "rpc",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
            agency = %agency,
            records = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(request));
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                let result = future.await;
                // A failed call answers with its status in the headers (trailers-only); a call
                // that succeeds, or a stream that fails later, puts it in the trailers, which this
                // layer does not wait for.
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                    Err(_) => tonic::Code::Unknown,
                };
                tracing::Span::current().record("rpc.grpc.status_code", code as i32);
                metrics.call(&method, &agency, code, started.elapsed());
                result
            }
            .instrument(span),
        )
    }
}
