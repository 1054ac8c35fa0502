//! `quotahub subscribe`: follows a named subscription, prints each alert as it arrives (a table
//! line, or a JSON line with `--json`), and acknowledges it once printed. The cursor lives in the
//! hub, so a restart resumes after the last alert printed; a dropped stream is resumed likewise.

use std::io::Write;
use std::time::Duration;

use crate::domain::AgencyKind;
use crate::proto;
use crate::proto::feed_message::Message;
use crate::proto::streaming_subscribe_request::Request as Inbound;

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
    let channel = args.client.connect(kind).await?;
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
    loop {
        // Acknowledgements ride on the stream: they are not calls against the agency's rate.
        let (acks, inbound) = tokio::sync::mpsc::channel(64);
        acks.send(proto::StreamingSubscribeRequest {
            request: Some(Inbound::Subscribe(proto::SubscribeRequest {
                name: args.name.clone(),
                ..Default::default()
            })),
        })
        .await?;
        let mut stream = feed
            .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(inbound))
            .await?
            .into_inner();
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                () = &mut stop => return Ok(()),
            };
            match message {
                Ok(Some(proto::FeedMessage {
                    message: Some(Message::Event(event)),
                })) => {
                    print_event(&mut out, &event, args.json)?;
                    acks.send(proto::StreamingSubscribeRequest {
                        request: Some(Inbound::AckSeq(event.seq)),
                    })
                    .await?;
                    printed += 1;
                    if args.limit.is_some_and(|limit| printed >= limit) {
                        // The last acknowledgement is written before the command ends, so a
                        // later run resumes after it.
                        wait_for_ack(&mut stream, event.seq).await;
                        return Ok(());
                    }
                }
                Ok(Some(_)) => {}
                // Ended, drained or cut off: resume from the cursor the hub keeps.
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
