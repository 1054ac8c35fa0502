//! Measure 6: the alert feed. Latency from a push to every subscriber receiving the alert it
//! raised (p50, p99), with 1 and with 1,000 subscribers on the same hub and feed; and the memory
//! an idle subscriber costs. Subscribers are real `Subscribe` streams over mutual TLS; each push is
//! a ghost payroll line (PAID_NOT_ON_ROLL) at a registered institution, and the subscriptions
//! filter on that rule, so every push brings every subscriber exactly one event.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::hub::BenchHub;
use super::report::{Figure, Row};
use crate::domain::ids::resident_id_with_check;
use crate::domain::{Agency, AgencyKind, Jurisdiction};
use crate::proto;
use crate::proto::feed_message::Message;
use crate::proto::streaming_subscribe_request::Request as Inbound;
use crate::subscriber::{self, AckBatch};

/// Streams per connection (HTTP/2 multiplexes them).
const STREAMS_PER_CONNECTION: usize = 100;
/// Longest wait for one alert to reach every subscriber.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the alert feed's rows need to know about the run.
pub struct FeedBench<'a> {
    /// The hub, loaded with the generated data.
    pub hub: &'a BenchHub,
    /// A registered institution of the root jurisdiction to pay ghosts at.
    pub institution: String,
    /// The root jurisdiction.
    pub root: Jurisdiction,
    /// Pushes timed per subscriber count.
    pub samples: usize,
    /// How many subscribers the "many" case has (1,000 in a real run).
    pub many: usize,
}

async fn channels(
    bench: &FeedBench<'_>,
    kind: AgencyKind,
    count: usize,
) -> anyhow::Result<Vec<Channel>> {
    let agency = Agency::new(bench.root.clone(), kind);
    let mut channels = Vec::new();
    for _ in 0..count.div_ceil(STREAMS_PER_CONNECTION).max(1) {
        channels.push(bench.hub.channel(&agency).await?);
    }
    Ok(channels)
}

/// Opens `count` subscriptions to PAID_NOT_ON_ROLL starting at the feed's head; each receipt is
/// reported on the returned channel.
async fn subscribers(
    bench: &FeedBench<'_>,
    label: &str,
    count: usize,
) -> anyhow::Result<mpsc::UnboundedReceiver<u64>> {
    let head = u64::try_from(
        bench
            .hub
            .store
            .feed_head()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    )
    .unwrap_or_default();
    let channels = channels(bench, AgencyKind::Discipline, count).await?;
    let (received, receipts) = mpsc::unbounded_channel();
    for i in 0..count {
        let mut feed = proto::feed_service_client::FeedServiceClient::new(
            channels[i / STREAMS_PER_CONNECTION].clone(),
        );
        let name = format!("bench-{label}-{i}");
        feed.put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: name.clone(),
                filter: Some(proto::SubscriptionFilter {
                    codes: vec![proto::RuleCode::PaidNotOnRoll as i32],
                    ..Default::default()
                }),
                content_mode: proto::ContentMode::Ids as i32,
                ..Default::default()
            }),
        })
        .await?;
        // Acknowledgements ride on the stream in batches, as `quotahub subscribe` sends them,
        // each subscriber at its own phase.
        let (acks_out, inbound) = mpsc::channel(64);
        acks_out
            .send(proto::StreamingSubscribeRequest {
                request: Some(Inbound::Subscribe(proto::SubscribeRequest {
                    name: name.clone(),
                    start: Some(proto::subscribe_request::Start::AfterSeq(head)),
                    heartbeat_ms: 60_000,
                    max_in_flight: subscriber::WINDOW,
                    ..Default::default()
                })),
            })
            .await?;
        let mut stream = feed
            .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(inbound))
            .await?
            .into_inner();
        let received = received.clone();
        let mut acks = AckBatch::spread(i, count);
        tokio::spawn(async move {
            loop {
                let ack = tokio::select! {
                    message = stream.message() => match message {
                        Ok(Some(proto::FeedMessage { message: Some(Message::Event(event)) })) => {
                            let _ = received.send(event.seq);
                            acks.handled(event.seq)
                        }
                        Ok(Some(_)) => None,
                        Ok(None) | Err(_) => return,
                    },
                    () = subscriber::until(acks.due()) => acks.take(),
                };
                if let Some(seq) = ack {
                    let _ = acks_out
                        .send(proto::StreamingSubscribeRequest {
                            request: Some(Inbound::AckSeq(seq)),
                        })
                        .await;
                }
            }
        });
    }
    Ok(receipts)
}

/// p50 and p99 of push-to-every-subscriber latency with `count` subscribers.
async fn latency(
    bench: &FeedBench<'_>,
    label: &str,
    count: usize,
    first_ghost: u32,
) -> anyhow::Result<(Duration, Duration)> {
    let mut receipts = subscribers(bench, label, count).await?;
    let finance = channels(bench, AgencyKind::Finance, 1).await?.remove(0);
    let mut pushes = proto::finance_service_client::FinanceServiceClient::new(finance);
    let mut latencies = Vec::new();
    for sample in 0..bench.samples {
        let n = first_ghost + u32::try_from(sample).unwrap_or_default();
        // Someone on no roll: born 1990-01-01 in division 999999, numbered n.
        let resident = resident_id_with_check(&format!("99999919900101{:03}", n % 1000))
            .map_err(anyhow::Error::msg)?;
        let line = proto::PayrollLine {
            record_id: format!("bench-ghost-{label}-{n}"),
            period: "2024-06".into(),
            institution_uscc: bench.institution.clone(),
            resident_id: resident.to_string(),
            name: "幽灵".into(),
            gross_fen: 500_000,
            reverses_record_id: String::new(),
            person_token: String::new(),
        };
        let pushed_at = Instant::now();
        pushes
            .push_payroll_line(line)
            .await
            .context("the ghost push")?;
        for _ in 0..count {
            tokio::time::timeout(DELIVERY_TIMEOUT, receipts.recv())
                .await
                .context("an alert did not reach a subscriber in time")?
                .context("a subscriber's stream ended")?;
            latencies.push(pushed_at.elapsed());
        }
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

/// KiB of this process's resident memory per idle subscriber (client streams included: the
/// subscribers run in this process too).
async fn idle_memory(bench: &FeedBench<'_>, count: usize) -> anyhow::Result<u64> {
    let before = super::memory::read().rss_kib.unwrap_or_default();
    let receipts = subscribers(bench, "idle", count).await?;
    // Let every stream reach its idle wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = super::memory::read().rss_kib.unwrap_or_default();
    drop(receipts);
    Ok(after.saturating_sub(before) / u64::try_from(count.max(1)).unwrap_or(1))
}

/// The alert feed's rows.
pub async fn rows(bench: &FeedBench<'_>) -> anyhow::Result<Vec<Row>> {
    super::progress("alert feed: latency with 1 subscriber");
    let (p50_one, p99_one) = latency(bench, "one", 1, 0).await?;
    super::progress(&format!(
        "alert feed: latency with {} subscribers",
        bench.many
    ));
    let (p50_many, p99_many) = latency(bench, "many", bench.many, 500).await?;
    super::progress(&format!(
        "alert feed: memory of {} idle subscribers",
        bench.many
    ));
    let per_idle = idle_memory(bench, bench.many).await?;
    Ok(vec![
        Row::reported(
            "alert_feed.latency.subscribers_1",
            "6",
            "Alert feed: push-to-subscriber latency p50 / p99, 1 subscriber",
            Figure::latencies(p50_one, p99_one),
        ),
        Row::reported(
            "alert_feed.latency.subscribers_1000",
            "6",
            format!(
                "Alert feed: push-to-subscriber latency p50 / p99, {} subscribers (target p99 < 50 ms on SQLite)",
                bench.many
            ),
            Figure::latencies(p50_many, p99_many),
        ),
        Row::reported(
            "alert_feed.memory_per_idle_subscriber",
            "6",
            "Alert feed: memory per idle subscriber (server and client side, one process)",
            Figure::count(per_idle, "KiB"),
        ),
    ])
}
