//! The two ways to push any kind of record: one at a time (the answer is the record's result, or
//! its error as the call's status) and as a client stream (one result per record, the bad ones
//! refused and the good ones around them stored). Streams are stored in batches; a batch's results
//! are final once it has committed.

use tonic::{Request, Response, Status, Streaming};

use super::Hub;
use super::convert::{Pushed, finding_change_message, timestamp};
use super::guard::{AuditNote, note};
use super::policy::caller;
use super::status::record_error;
use crate::error::Error;
use crate::proto;
use crate::store::push::{Receipt, Submission};

fn accepted(record_id: &str, index: u64, receipt: &Receipt) -> proto::RecordResult {
    proto::RecordResult {
        record_id: record_id.to_owned(),
        index,
        outcome: proto::RecordOutcome::Accepted as i32,
        replayed: receipt.replayed,
        accepted_at: Some(timestamp(receipt.accepted_at)),
        error: None,
        findings: receipt
            .findings
            .iter()
            .map(finding_change_message)
            .collect(),
    }
}

fn rejected(record_id: &str, index: u64, error: &Error) -> proto::RecordResult {
    proto::RecordResult {
        record_id: record_id.to_owned(),
        index,
        outcome: proto::RecordOutcome::Rejected as i32,
        replayed: false,
        accepted_at: None,
        error: Some(record_error(error)),
        findings: Vec::new(),
    }
}

/// Pushes one record.
pub async fn push_one<P: Pushed + std::fmt::Debug>(
    hub: &Hub,
    request: Request<P>,
) -> Result<Response<proto::RecordResult>, Status> {
    note(
        &request,
        &format!("record_id {}", request.get_ref().record_id()),
    );
    let caller = caller(&request)?;
    let kind = <P::Record as crate::store::push::RecordKind>::KIND;
    let submission = request.get_ref().to_submission().inspect_err(|_| {
        hub.metrics.records(kind, 0, 0, 1);
    })?;
    let mut verdicts = hub
        .store
        .push(&caller.agency, std::slice::from_ref(&submission))
        .await?;
    tracing::Span::current().record("records", 1);
    let verdict = verdicts
        .pop()
        .ok_or_else(|| Error::Internal("no verdict for the record".into()))?;
    let replayed = verdict.as_ref().is_ok_and(|receipt| receipt.replayed);
    hub.metrics.records(
        kind,
        u64::from(verdict.is_ok() && !replayed),
        u64::from(replayed),
        u64::from(verdict.is_err()),
    );
    let receipt = verdict?;
    Ok(Response::new(accepted(&submission.record_id, 0, &receipt)))
}

/// Pushes a stream of records.
pub async fn push_stream<P: Pushed>(
    hub: &Hub,
    request: Request<Streaming<P>>,
) -> Result<Response<proto::BulkPushResponse>, Status> {
    let caller = caller(&request)?;
    let audit_note = request.extensions().get::<AuditNote>().cloned();
    let mut stream = request.into_inner();
    let mut results: Vec<proto::RecordResult> = Vec::new();
    let mut pending: Vec<(u64, Submission<P::Record>)> = Vec::new();
    let mut index: u64 = 0;
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                // What arrived before the broken message is stored; its results are lost with the
                // call, but a resend of the stream is harmless.
                store_batch(hub, &caller.agency, &mut pending, &mut results).await?;
                return Err(status);
            }
        };
        if index >= hub.limits.max_records_per_stream {
            let error = Error::ResourceExhausted(format!(
                "a bulk push takes at most {} records; send the rest in another stream",
                hub.limits.max_records_per_stream
            ));
            results.push(rejected(message.record_id(), index, &error));
        } else {
            match message.to_submission() {
                Ok(submission) => pending.push((index, submission)),
                Err(error) => results.push(rejected(message.record_id(), index, &error)),
            }
        }
        index += 1;
        if pending.len() >= hub.limits.batch_size {
            store_batch(hub, &caller.agency, &mut pending, &mut results).await?;
        }
    }
    store_batch(hub, &caller.agency, &mut pending, &mut results).await?;
    results.sort_by_key(|result| result.index);
    if let Some(audit_note) = audit_note {
        let ids: Vec<&str> = results.iter().map(|r| r.record_id.as_str()).collect();
        audit_note.set(&format!("{} records: {}", ids.len(), ids.join(" ")));
    }

    let mut response = proto::BulkPushResponse::default();
    for result in &results {
        if result.outcome == proto::RecordOutcome::Rejected as i32 {
            response.rejected += 1;
        } else if result.replayed {
            response.replayed += 1;
        } else {
            response.accepted += 1;
        }
    }
    response.results = results;
    response.findings_omitted = fit_answer(&mut response.results, hub.limits.answer_bytes);
    tracing::Span::current().record("records", index);
    hub.metrics.records(
        <P::Record as crate::store::push::RecordKind>::KIND,
        response.accepted,
        response.replayed,
        response.rejected,
    );
    Ok(Response::new(response))
}

/// Keeps the answer of a bulk push within `budget` bytes: every record's result stays, and the
/// finding changes are listed in stream order while they fit; the rest are dropped and their
/// number returned. A result's size without its findings is what the answer cannot do without.
fn fit_answer(results: &mut [proto::RecordResult], budget: usize) -> u64 {
    use prost::Message;
    // A repeated field's entry costs its tag, its length's varint and its bytes.
    let entry = |len: usize| 1 + prost::length_delimiter_len(len) + len;
    let bare: usize = results
        .iter()
        .map(|result| {
            let findings = result
                .findings
                .iter()
                .map(|change| entry(change.encoded_len()))
                .sum::<usize>();
            entry(result.encoded_len() - findings)
        })
        .sum();
    // Room for the counts and the findings_omitted field itself.
    let mut room = budget.saturating_sub(bare + 64);
    let mut omitted = 0u64;
    for result in results.iter_mut() {
        let mut kept = 0;
        for change in &result.findings {
            let size = entry(change.encoded_len());
            if omitted == 0 && size <= room {
                room -= size;
                kept += 1;
            } else {
                break;
            }
        }
        omitted += (result.findings.len() - kept) as u64;
        result.findings.truncate(kept);
    }
    omitted
}

async fn store_batch<R>(
    hub: &Hub,
    agency: &crate::domain::Agency,
    pending: &mut Vec<(u64, Submission<R>)>,
    results: &mut Vec<proto::RecordResult>,
) -> Result<(), Error>
where
    R: crate::store::push::RecordKind,
{
    if pending.is_empty() {
        return Ok(());
    }
    let (indexes, submissions): (Vec<u64>, Vec<Submission<R>>) =
        std::mem::take(pending).into_iter().unzip();
    let verdicts = hub.store.push(agency, &submissions).await?;
    for ((index, submission), verdict) in indexes.into_iter().zip(&submissions).zip(verdicts) {
        results.push(match verdict {
            Ok(receipt) => accepted(&submission.record_id, index, &receipt),
            Err(error) => rejected(&submission.record_id, index, &error),
        });
    }
    Ok(())
}
