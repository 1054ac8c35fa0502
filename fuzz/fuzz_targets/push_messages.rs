//! Arbitrary bytes as each pushed message kind, through what the hub does with a push before it
//! touches the database: prost decoding, validation into the domain record (`Pushed::
//! to_submission`, as `api::push` runs it) and, for a refused message, the status with its field
//! violations. The first byte picks the kind, so each kind gets inputs of its own.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use quotahub::api::convert::Pushed;
use quotahub::proto;

/// Decodes and validates `bytes` as a `P`, as the push handlers do.
fn push<P: Pushed>(bytes: &[u8]) {
    let Ok(message) = P::decode(bytes) else {
        return;
    };
    if let Err(error) = message.to_submission() {
        drop(tonic::Status::from(error));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 9 {
        0 => push::<proto::Institution>(bytes),
        1 => push::<proto::Quota>(bytes),
        2 => push::<proto::LeaderPost>(bytes),
        3 => push::<proto::StaffingPlan>(bytes),
        4 => push::<proto::HiringApproval>(bytes),
        5 => push::<proto::PersonnelEvent>(bytes),
        6 => push::<proto::Appointment>(bytes),
        7 => push::<proto::PayrollLine>(bytes),
        _ => push::<proto::Funding>(bytes),
    }
});
