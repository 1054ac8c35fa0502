//! Compiles the gRPC contract in `proto/` with protox (no `protoc` needed) and writes the descriptor
//! set that server reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/quotahub/v1/common.proto",
        "proto/quotahub/v1/findings.proto",
        "proto/quotahub/v1/freshness.proto",
        "proto/quotahub/v1/campaign.proto",
        "proto/quotahub/v1/reconciliation.proto",
        "proto/quotahub/v1/ledger.proto",
        "proto/quotahub/v1/feed.proto",
        "proto/quotahub/v1/staffing.proto",
        "proto/quotahub/v1/personnel.proto",
        "proto/quotahub/v1/finance.proto",
        "proto/quotahub/v1/query.proto",
        "proto/quotahub/v1/admin.proto",
        "proto/quotahub/v1/audit.proto",
        "proto/quotahub/v1/report.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    // `sqlx::migrate!` embeds the migrations: a new one alone must rebuild the crate too.
    println!("cargo:rerun-if-changed=migrations");
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("quotahub_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
