//! `quotahub subscribe`: follows a named subscription, prints each alert as it arrives (a table
//! line, or a JSON line with `--json`), and acknowledges what it printed in batches
//! ([`crate::subscriber`]), and all of it before it stops. The cursor lives in the hub, so a
//! restart resumes after the last alert acknowledged; a dropped stream resumes after the last
//! printed.
//!
//! With `--checkpoint-file`, it is also a witness of the audit log: the subscription asks for the
//! log's signed checkpoints, and each one received is kept in the file only once its signature
//! checks with the hub's public log key and a consistency proof shows the checkpoint held before
//! to be a prefix of it. A checkpoint that fails is refused: the file keeps the one held, the
//! hub's is written beside it (`FILE.rejected`, the evidence of what the hub showed), and the
//! command stops with an error that names what failed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::domain::AgencyKind;
use crate::domain::audit::{Checkpoint, Hash, open_checkpoint, verify_consistency};
use crate::proto;
use crate::proto::feed_message::Message;
use crate::proto::streaming_subscribe_request::Request as Inbound;
use crate::subscriber::{self, AckBatch};

/// Flags of `quotahub subscribe`.
#[derive(Debug, clap::Args)]
pub struct SubscribeArgs {
    /// How to reach the hub (as the discipline agency of `--jurisdiction` by default).
    #[command(flatten)]
    pub client: super::ClientArgs,
    /// The subscription's name; it is created (or its filter replaced) with the flags below.
    #[arg(long, default_value = "cli")]
    pub name: String,
    /// Only these rule codes (e.g. PAID_NOT_ON_ROLL); repeatable.
    #[arg(long = "code")]
    pub codes: Vec<String>,
    /// Only this severity and above (LOW, MEDIUM, HIGH, CRITICAL).
    #[arg(long)]
    pub min_severity: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many alerts (for scripts and tests).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Agency kind of the certificate (discipline, audit, staffing-office, ...).
    #[arg(long, default_value = "discipline")]
    pub agency: String,
    /// Keep the audit log's latest checkpoint in this file, each new one checked against the one
    /// held before (needs `--log-key`).
    #[arg(long, requires = "log_key")]
    pub checkpoint_file: Option<PathBuf>,
    /// The hub's public log key (`origin+id+key`, as `quotahub serve` prints it), or a file
    /// holding it: the only thing a witness takes on trust.
    #[arg(long)]
    pub log_key: Option<String>,
}

/// A witness of the audit log: the checkpoint it holds, in its file.
struct Witness {
    file: PathBuf,
    vkey: String,
    held: Option<Checkpoint>,
}

impl Witness {
    /// Opens the file (none yet is fine); a held checkpoint that does not check is an error.
    fn open(file: &Path, key: &str) -> anyhow::Result<Witness> {
        let vkey = if Path::new(key).exists() {
            std::fs::read_to_string(key).with_context(|| format!("cannot read {key}"))?
        } else {
            key.to_owned()
        };
        let vkey = vkey.trim().to_owned();
        let held = match std::fs::read_to_string(file) {
            Ok(note) => Some(open_checkpoint(&note, &vkey).map_err(|reason| {
                anyhow::anyhow!("the checkpoint held in {}: {reason}", file.display())
            })?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", file.display()));
            }
        };
        Ok(Witness {
            file: file.to_owned(),
            vkey,
            held,
        })
    }

    /// Takes a checkpoint the hub sent: keeps it when it checks, refuses it otherwise. Answers
    /// what it did, for the operator.
    async fn receive(
        &mut self,
        sent: &proto::SignedCheckpoint,
        audit: &mut proto::audit_service_client::AuditServiceClient<tonic::transport::Channel>,
    ) -> anyhow::Result<String> {
        let new = match open_checkpoint(&sent.note, &self.vkey) {
            Ok(new) => new,
            Err(reason) => return Err(self.refuse(&sent.note, &format!("its {reason}"))),
        };
        let Some(old) = self.held.clone() else {
            self.keep(new.clone())?;
            return Ok(format!(
                "checkpoint of {} entries kept (the first)",
                new.size
            ));
        };
        if new.size == old.size {
            return if new.root == old.root {
                Ok(format!("checkpoint of {} entries already held", new.size))
            } else {
                Err(self.refuse(
                    &sent.note,
                    &format!(
                        "FORKED: it has another root than the checkpoint of {} entries held",
                        old.size
                    ),
                ))
            };
        }
        // The older of the two must be a prefix of the newer, whichever the hub sent.
        let (older, newer) = if new.size > old.size {
            (&old, &new)
        } else {
            (&new, &old)
        };
        let proof = audit
            .get_consistency_proof(proto::ConsistencyProofRequest {
                old_size: older.size,
                new_size: newer.size,
            })
            .await;
        let consistent = match proof {
            Ok(proof) => {
                let proof = proof.into_inner();
                let hashes: Option<Vec<Hash>> = proof
                    .hashes
                    .iter()
                    .map(|hash| hash.as_slice().try_into().ok().map(Hash))
                    .collect();
                hashes.is_some_and(|hashes| {
                    verify_consistency(&hashes, older.size, older.root, newer.size, newer.root)
                })
            }
            Err(status) => {
                return Err(self.refuse(
                    &sent.note,
                    &format!(
                        "the hub gave no consistency proof from {} to {} entries ({}: {})",
                        older.size,
                        newer.size,
                        status.code(),
                        status.message()
                    ),
                ));
            }
        };
        if !consistent {
            return Err(self.refuse(
                &sent.note,
                &format!(
                    "REWRITTEN or FORKED: the checkpoint of {} entries is not a prefix of the one \
                     of {} entries (the consistency proof fails)",
                    older.size, newer.size
                ),
            ));
        }
        if new.size < old.size {
            return Ok(format!(
                "older checkpoint of {} entries consistent with the one held of {}",
                new.size, old.size
            ));
        }
        self.keep(new.clone())?;
        Ok(format!(
            "checkpoint of {} entries kept, consistent with the one of {} held before",
            new.size, old.size
        ))
    }

    /// Replaces the file's checkpoint (written aside, then renamed over it).
    fn keep(&mut self, checkpoint: Checkpoint) -> anyhow::Result<()> {
        let aside = self.file.with_extension("partial");
        std::fs::write(&aside, &checkpoint.note)
            .with_context(|| format!("cannot write {}", aside.display()))?;
        std::fs::rename(&aside, &self.file)
            .with_context(|| format!("cannot write {}", self.file.display()))?;
        self.held = Some(checkpoint);
        Ok(())
    }

    /// Refuses a checkpoint: the one held stays, the hub's is kept beside it, loudly.
    fn refuse(&self, note: &str, why: &str) -> anyhow::Error {
        let mut rejected = self.file.clone().into_os_string();
        rejected.push(".rejected");
        let rejected = PathBuf::from(rejected);
        let written = std::fs::write(&rejected, note).is_ok();
        let message = format!(
            "REFUSED the hub's audit log checkpoint: {why}. {} still holds the checkpoint kept \
             before{}",
            self.file.display(),
            if written {
                format!("; the hub's is in {}", rejected.display())
            } else {
                String::new()
            }
        );
        eprintln!("WARNING: {message}");
        anyhow::anyhow!(message)
    }
}

fn enum_value<E>(from_name: fn(&str) -> Option<E>, prefix: &str, value: &str) -> anyhow::Result<E> {
    let upper = value.trim().to_ascii_uppercase();
    from_name(&upper)
        .or_else(|| from_name(&format!("{prefix}{upper}")))
        .ok_or_else(|| {
            let what = prefix.trim_end_matches('_').to_lowercase();
            anyhow::anyhow!(
                "`{value}` is not {} {what}",
                crate::domain::agency::indefinite_article(&what)
            )
        })
}

/// Runs the subscription until `stop` completes or `--limit` alerts were printed.
pub async fn run(
    args: SubscribeArgs,
    mut out: impl Write,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let kind = AgencyKind::from_slug(&args.agency)
        .ok_or_else(|| anyhow::anyhow!("`{}` is not an agency kind", args.agency))?;
    let mut witness = match (&args.checkpoint_file, &args.log_key) {
        (Some(file), Some(key)) => Some(Witness::open(file, key)?),
        (Some(_), None) => {
            anyhow::bail!("--checkpoint-file needs the hub's public log key (--log-key)")
        }
        _ => None,
    };
    let channel = args.client.connect(kind).await?;
    let mut audit = proto::audit_service_client::AuditServiceClient::new(channel.clone());
    let mut feed = proto::feed_service_client::FeedServiceClient::new(channel);
    let codes = args
        .codes
        .iter()
        .map(|c| enum_value(proto::RuleCode::from_str_name, "RULE_CODE_", c).map(|c| c as i32))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let min_severity = match &args.min_severity {
        Some(s) => enum_value(proto::Severity::from_str_name, "SEVERITY_", s)? as i32,
        None => 0,
    };
    feed.put_subscription(proto::PutSubscriptionRequest {
        subscription: Some(proto::Subscription {
            name: args.name.clone(),
            filter: Some(proto::SubscriptionFilter {
                codes,
                min_severity,
                ..Default::default()
            }),
            checkpoints: witness.is_some(),
            ..Default::default()
        }),
    })
    .await?;
    if !args.json {
        writeln!(
            out,
            "{:>6}  {:<12} {:<26} {:<9} {:<18} {:<8} explanation",
            "seq", "event", "rule", "severity", "institution", "level"
        )?;
    }
    tokio::pin!(stop);
    let mut printed = 0u64;
    let mut acks = AckBatch::at_any_phase();
    loop {
        // Acknowledgements ride on the stream: they are not calls against the agency's rate. A
        // stream resumed after a drop starts after the last alert printed, whose acknowledgement
        // may have been lost with the stream.
        let (acks_out, inbound) = tokio::sync::mpsc::channel(64);
        acks_out
            .send(proto::StreamingSubscribeRequest {
                request: Some(Inbound::Subscribe(proto::SubscribeRequest {
                    name: args.name.clone(),
                    start: (acks.last_handled() > 0)
                        .then(|| proto::subscribe_request::Start::AfterSeq(acks.last_handled())),
                    max_in_flight: subscriber::WINDOW,
                    ..Default::default()
                })),
            })
            .await?;
        let mut stream = feed
            .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(inbound))
            .await?
            .into_inner();
        let ack = |seq: u64| {
            acks_out.send(proto::StreamingSubscribeRequest {
                request: Some(Inbound::AckSeq(seq)),
            })
        };
        if acks.last_handled() > 0 {
            acks.take();
            ack(acks.last_handled()).await?;
        }
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                () = subscriber::until(acks.due()) => {
                    if let Some(seq) = acks.take() {
                        ack(seq).await?;
                    }
                    continue;
                }
                () = &mut stop => {
                    // What was printed is acknowledged before the command ends, so that a later
                    // run resumes after it.
                    if let Some(seq) = acks.take() {
                        ack(seq).await?;
                        wait_for_ack(&mut stream, seq).await;
                    }
                    return Ok(());
                }
            };
            match message {
                Ok(Some(proto::FeedMessage {
                    message: Some(Message::Event(event)),
                })) => {
                    print_event(&mut out, &event, args.json)?;
                    if let Some(seq) = acks.handled(event.seq) {
                        ack(seq).await?;
                    }
                    printed += 1;
                    if args.limit.is_some_and(|limit| printed >= limit) {
                        if let Some(seq) = acks.take() {
                            ack(seq).await?;
                        }
                        wait_for_ack(&mut stream, acks.last_handled()).await;
                        return Ok(());
                    }
                }
                Ok(Some(proto::FeedMessage {
                    message: Some(Message::Checkpoint(checkpoint)),
                })) => {
                    if let Some(witness) = &mut witness {
                        let said = witness.receive(&checkpoint, &mut audit).await?;
                        if args.json {
                            let line = serde_json::json!({
                                "audit_log": said, "tree_size": checkpoint.tree_size,
                            });
                            writeln!(out, "{line}")?;
                        } else {
                            writeln!(out, "audit log: {said}")?;
                        }
                        out.flush()?;
                    }
                }
                Ok(Some(_)) => {}
                // Ended, drained or cut off: resume after the last alert printed.
                Ok(None) | Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (briefly) until the hub confirms that the acknowledgements up to `seq` are durable.
async fn wait_for_ack(stream: &mut tonic::Streaming<proto::FeedMessage>, seq: u64) {
    let confirmed = async {
        while let Ok(Some(message)) = stream.message().await {
            if let Some(Message::Acked(acked)) = message.message
                && acked.acked_seq >= seq
            {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), confirmed).await;
}

fn print_event(out: &mut impl Write, event: &proto::FeedEvent, json: bool) -> anyhow::Result<()> {
    let finding = event.finding.clone().unwrap_or_default();
    let name = |value: i32, of: fn(i32) -> Option<&'static str>, prefix: &str| {
        of(value).map_or_else(
            || value.to_string(),
            |n| n.trim_start_matches(prefix).to_owned(),
        )
    };
    let event_type = name(
        event.event_type,
        |v| {
            proto::FeedEventType::try_from(v)
                .ok()
                .map(|e| e.as_str_name())
        },
        "FEED_EVENT_TYPE_",
    );
    let code = name(
        finding.code,
        |v| proto::RuleCode::try_from(v).ok().map(|e| e.as_str_name()),
        "RULE_CODE_",
    );
    let severity = name(
        finding.severity,
        |v| proto::Severity::try_from(v).ok().map(|e| e.as_str_name()),
        "SEVERITY_",
    );
    if let Some(follow_up) = &event.follow_up {
        // A ledger item, case or transfer: no rule code or severity, the matter instead.
        let matter = name(
            follow_up.matter,
            |v| proto::MatterKind::try_from(v).ok().map(|e| e.as_str_name()),
            "MATTER_KIND_",
        );
        if json {
            let line = serde_json::json!({
                "seq": event.seq, "event_id": event.event_id, "event": event_type, "matter": matter,
                "id": follow_up.id, "state": follow_up.state, "institution": follow_up.institution_uscc,
                "escalation_level": event.escalation_level, "transfer_id": follow_up.transfer_id,
                "text": follow_up.text, "steps": follow_up.history.len(),
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{:>6}  {:<12} {:<26} {:<9} {:<18} {:<8} {}",
                event.seq,
                event_type,
                format!("{matter} {}", follow_up.id),
                follow_up.state,
                follow_up.institution_uscc,
                event.escalation_level,
                follow_up.text
            )?;
        }
        out.flush()?;
        return Ok(());
    }
    if json {
        let line = serde_json::json!({
            "seq": event.seq, "event_id": event.event_id, "event": event_type, "code": code, "severity": severity,
            "institution": finding.institution_uscc, "subject": finding.subject, "period": finding.period,
            "jurisdiction": finding.jurisdiction, "escalation_level": event.escalation_level,
            "version": finding.version, "explanation_zh": finding.explanation_zh, "explanation_en": finding.explanation_en,
        });
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "{:>6}  {:<12} {:<26} {:<9} {:<18} {:<8} {}",
            event.seq,
            event_type,
            code,
            severity,
            finding.institution_uscc,
            event.escalation_level,
            finding.explanation_zh
        )?;
    }
    out.flush()?;
    Ok(())
}
