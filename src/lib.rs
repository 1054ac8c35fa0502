//! quotahub: the gRPC hub between the staffing office, the organization department, HR, finance and
//! the discipline and audit agencies.
//!
//! The map of the crate, from the inside out:
//!
//! - [`domain`]: the staffing domain in plain Rust, without I/O: identifiers and their validation,
//!   agencies and jurisdictions, the records each agency pushes, and how personnel events become an
//!   effective-dated roll.
//! - [`store`]: persistence behind one [`store::Store`]; SQLite (embedded default) or PostgreSQL
//!   (several hub replicas), picked by the database URL.
//! - [`api`]: the gRPC surface, a thin translation between the contract in `proto/` and the domain and
//!   store, with one place that maps [`error::Error`] to gRPC status codes.
//! - [`pki`] and [`tls`]: development certificates, and mutual TLS that turns each client
//!   certificate into an [`domain::Agency`].
//! - [`server`]: assembles the hub on an already-bound listener; used by `main` and the tests alike.
//! - [`config`] and [`cli`]: layered settings and the `quotahub` command.
//! - [`subscriber`]: a feed subscriber's acknowledgements, as `quotahub subscribe` and the bench
//!   send them.
//! - [`telemetry`]: logs, traces and metrics, and the plain-HTTP admin port.

pub mod api;
pub mod audit;
pub mod bench;
pub mod chart;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod domain;
pub mod error;
pub mod generator;
pub mod lang;
pub mod pki;
pub mod report;
pub mod server;
pub mod store;
pub mod subscriber;
pub mod telemetry;
pub mod tls;
pub mod tls_reload;

/// Generated code of the `quotahub.v1` contract.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("quotahub.v1");

    /// Encoded file descriptor set of the contract, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("quotahub_descriptor");
}
