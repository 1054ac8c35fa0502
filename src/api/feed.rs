//! The feed service: subscriptions, their streams, acknowledgements and alert transitions.
//!
//! A stream is a task that reads the feed after its cursor, filters, and sends at most
//! `max_in_flight` unacknowledged events; it sends an event again when its acknowledgement is late,
//! a heartbeat when idle, and a drain message when the hub stops. Acknowledgements go through the
//! store (they may arrive at another replica), and the task re-reads the cursor at every turn. A
//! subscriber that does not read is cut off with UNAVAILABLE rather than buffered without bound;
//! it resumes from its cursor and loses nothing.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::Hub;
use super::convert::{Wire, finding_message, request_jurisdiction, timestamp};
use super::personal::Reader;
use super::policy::caller;
use crate::domain::alerts::AlertState;
use crate::domain::findings::{FindingKey, RuleCode, Severity};
use crate::domain::{Agency, AgencyKind, Coded, Jurisdiction};
use crate::error::Error;
use crate::proto;
use crate::store::feed::{FeedEvent, FeedEventType, Subscription, Transition};

/// How long a stream waits for a subscriber to take a message before cutting it off.
const SLOW_SUBSCRIBER: Duration = Duration::from_secs(10);
/// How often an idle stream re-reads its subscription (its cursor, and whether it still exists).
const SUBSCRIPTION_REREAD: Duration = Duration::from_secs(5);
/// Events read from the store at a time.
const READ_BATCH: usize = 256;

/// A subscription's filter as kept in the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Filter {
    codes: Vec<String>,
    min_severity: Option<String>,
    jurisdiction: String,
    institution: Option<String>,
    event_types: Vec<String>,
    /// Whether the stream also carries the audit log's signed checkpoints (kept with the filter:
    /// it is part of what the subscription asks for).
    #[serde(default)]
    checkpoints: bool,
}

impl Filter {
    fn from_message(
        agency: &Agency,
        filter: Option<&proto::SubscriptionFilter>,
    ) -> Result<Filter, Error> {
        let Some(filter) = filter else {
            return Ok(Filter {
                jurisdiction: agency.jurisdiction.to_string(),
                ..Filter::default()
            });
        };
        let codes = filter
            .codes
            .iter()
            .map(|&raw| {
                RuleCode::from_wire(raw)
                    .map(|c| c.code().to_owned())
                    .ok_or_else(|| Error::invalid("filter.codes", "unknown rule code"))
            })
            .collect::<Result<_, _>>()?;
        let min_severity = match filter.min_severity {
            0 => None,
            raw => Some(
                Severity::from_wire(raw)
                    .ok_or_else(|| Error::invalid("filter.min_severity", "unknown severity"))?
                    .code()
                    .to_owned(),
            ),
        };
        let jurisdiction =
            request_jurisdiction(agency, "filter.jurisdiction", &filter.jurisdiction)?;
        let event_types = filter
            .event_types
            .iter()
            .map(|&raw| {
                FeedEventType::from_wire(raw)
                    .map(|t| t.code().to_owned())
                    .ok_or_else(|| Error::invalid("filter.event_types", "unknown event type"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            codes,
            min_severity,
            jurisdiction: jurisdiction.to_string(),
            institution: (!filter.institution_uscc.is_empty())
                .then(|| filter.institution_uscc.clone()),
            event_types,
            checkpoints: false,
        })
    }

    fn to_message(&self) -> proto::SubscriptionFilter {
        proto::SubscriptionFilter {
            codes: self
                .codes
                .iter()
                .filter_map(|c| RuleCode::from_code(c))
                .map(Wire::to_wire)
                .collect(),
            min_severity: self
                .min_severity
                .as_deref()
                .and_then(Severity::from_code)
                .map(Wire::to_wire)
                .unwrap_or_default(),
            jurisdiction: self.jurisdiction.clone(),
            institution_uscc: self.institution.clone().unwrap_or_default(),
            event_types: self
                .event_types
                .iter()
                .filter_map(|t| FeedEventType::from_code(t))
                .map(Wire::to_wire)
                .collect(),
        }
    }

    fn matches(&self, event: &FeedEvent) -> bool {
        let type_matches = self.event_types.is_empty()
            || self
                .event_types
                .iter()
                .any(|t| t == event.event_type.code());
        let Some(stored) = &event.finding else {
            // Follow-up (ledger items, cases, transfers) has no rule code or severity: a filter on
            // those is a filter for alerts only.
            let institution = event.follow_up.as_ref().map(|f| f.institution.as_str());
            return type_matches
                && self.codes.is_empty()
                && self.min_severity.is_none()
                && self
                    .institution
                    .as_deref()
                    .is_none_or(|i| institution == Some(i));
        };
        let finding = &stored.finding;
        (self.codes.is_empty() || self.codes.iter().any(|c| c == finding.key.code.code()))
            && self
                .min_severity
                .as_deref()
                .and_then(Severity::from_code)
                .is_none_or(|min| finding.severity >= min)
            && self
                .institution
                .as_ref()
                .is_none_or(|i| *i == finding.key.institution)
            && type_matches
    }
}

fn subscription_message(subscription: &Subscription) -> Result<proto::Subscription, Error> {
    let filter: Filter = serde_json::from_str(&subscription.filter)
        .map_err(|e| Error::Internal(format!("a stored filter no longer parses: {e}")))?;
    let content_mode = if subscription.content_mode == "IDS" {
        proto::ContentMode::Ids
    } else {
        proto::ContentMode::Full
    };
    Ok(proto::Subscription {
        name: subscription.name.clone(),
        filter: Some(filter.to_message()),
        content_mode: content_mode as i32,
        acked_seq: u64::try_from(subscription.acked_seq).unwrap_or_default(),
        checkpoints: filter.checkpoints,
    })
}

/// An event as one stream's reader sees it; the shared event is not changed.
fn event_message(
    event: &FeedEvent,
    reader: &Reader,
    ids_only: bool,
    redelivered: bool,
) -> proto::FeedEvent {
    let finding = event.finding.as_ref().map(|stored| {
        let mut finding = finding_message(stored);
        reader.finding(&mut finding);
        if ids_only {
            // Personal data (a resident ID as subject, names in explanations and evidence) is
            // left for the reader to fetch under its own rights.
            finding.subject.clear();
            finding.explanation_zh.clear();
            finding.explanation_en.clear();
            finding.evidence.clear();
        }
        finding
    });
    let follow_up = event.follow_up.as_ref().map(|f| {
        let mut message = super::ledger::follow_up_message(f, ids_only);
        // Reports and ledger texts may name a person.
        message.text = reader.text(&message.text);
        for step in &mut message.history {
            step.text = reader.text(&step.text);
        }
        message
    });
    let escalation_level = match (&event.finding, &event.follow_up) {
        (Some(stored), _) => stored.alert.escalation_level,
        (None, Some(f)) => f.escalation_level,
        (None, None) => 0,
    };
    proto::FeedEvent {
        seq: u64::try_from(event.seq).unwrap_or_default(),
        event_id: event.event_id.clone(),
        event_type: event.event_type.to_wire(),
        created_at: Some(timestamp(event.created_at)),
        alert_state: event
            .finding
            .as_ref()
            .map(|stored| stored.alert.state.to_wire())
            .unwrap_or_default(),
        escalation_level: u32::try_from(escalation_level).unwrap_or_default(),
        finding,
        redelivered,
        follow_up,
    }
}

fn name_of(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        Err(Error::invalid(
            "name",
            "must be 1 to 100 printable characters",
        ))
    } else {
        Ok(name.to_owned())
    }
}

/// Settings of one stream.
struct StreamPlan {
    agency_id: String,
    /// The subscriber's kind: events about follow-up may reach only some kinds.
    kind: AgencyKind,
    name: String,
    filter: Filter,
    /// What the subscriber sees of people.
    reader: Reader,
    ids_only: bool,
    after: i64,
    max_in_flight: usize,
    ack_wait: Duration,
    heartbeat: Duration,
    /// Whether the audit log's checkpoints are sent too.
    checkpoints: bool,
    /// On a `StreamingSubscribe` stream, the cursor as the acknowledgements sent on it have
    /// written it: the window is freed as soon as one is durable, without reading the store.
    stream_acks: Option<tokio::sync::watch::Receiver<i64>>,
}

type FeedStream = Pin<Box<dyn Stream<Item = Result<proto::FeedMessage, Status>> + Send>>;

/// Why a stream task stopped sending.
enum Stop {
    /// The subscriber went away.
    Gone,
    /// The subscriber did not keep up.
    TooSlow,
}

async fn send(
    out: &mpsc::Sender<Result<proto::FeedMessage, Status>>,
    message: proto::feed_message::Message,
) -> Result<(), Stop> {
    match tokio::time::timeout(
        SLOW_SUBSCRIBER,
        out.send(Ok(proto::FeedMessage {
            message: Some(message),
        })),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => Err(Stop::TooSlow),
    }
}

/// The subscription's cursor as stored, the events it acknowledges taken out of the window; the
/// stream ends when the subscription was deleted.
async fn reread(
    store: &crate::store::Store,
    plan: &StreamPlan,
    in_flight: &mut BTreeMap<i64, (Instant, Arc<FeedEvent>)>,
) -> Result<i64, Error> {
    let Some(subscription) = store.subscription(&plan.agency_id, &plan.name).await? else {
        return Err(Error::NotFound(format!(
            "subscription `{}` was deleted",
            plan.name
        )));
    };
    in_flight.retain(|seq, _| *seq > subscription.acked_seq);
    Ok(subscription.acked_seq)
}

/// The audit log's checkpoint, when the stream carries them and it is newer than the last sent
/// (`sent`, its size, moved on). Looked for in the rounds the subscription is read: checkpoints
/// are issued every minute or so, and only witnesses' streams ask for them.
async fn newer_checkpoint(
    store: &crate::store::Store,
    plan: &StreamPlan,
    sent: &mut u64,
) -> Result<Option<proto::feed_message::Message>, Error> {
    if !plan.checkpoints {
        return Ok(None);
    }
    Ok(match store.audit_checkpoint(None).await? {
        Some(checkpoint) if checkpoint.size > *sent => {
            *sent = checkpoint.size;
            Some(proto::feed_message::Message::Checkpoint(
                super::admin::checkpoint_message(checkpoint),
            ))
        }
        _ => None,
    })
}

/// A stream's offset to [`SUBSCRIPTION_REREAD`], less than one period, from its subscription's
/// name: spread evenly over streams with different names, the same for a stream every time.
fn reread_offset(name: &str) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    let period = u64::try_from(SUBSCRIPTION_REREAD.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(hasher.finish() % period)
}

/// Delivers a subscription until the subscriber leaves, falls behind, or the hub drains.
async fn deliver(
    hub: Hub,
    plan: StreamPlan,
    out: mpsc::Sender<Result<proto::FeedMessage, Status>>,
) -> Result<(), Error> {
    let store = &hub.store;
    let jurisdiction = Jurisdiction::parse(&plan.filter.jurisdiction).map_err(Error::Internal)?;
    let mut wakeups = store.feed_wakeups();
    let mut draining = hub.draining.subscribe();
    let mut stream_acks = plan.stream_acks.clone();
    let mut scanned = plan.after;
    let mut in_flight: BTreeMap<i64, (Instant, Arc<FeedEvent>)> = BTreeMap::new();
    // The subscription is read again when its cursor matters: before sending an event again,
    // when the window is full, before a heartbeat (it carries the cursor), and every few seconds
    // (acks may reach another replica; a deleted subscription ends the stream). Not at every
    // event or tick: a thousand streams would each read it. The periodic read comes after new
    // events are sent, never before: a push wakes every stream at once, and a thousand streams
    // reading first delayed that push's alert to all of them (the bench's p99 with 1,000
    // subscribers doubled whenever a push fell on the read). Each stream's period is offset by
    // its name, so that streams opened together do not read together ever after.
    let reread_every = SUBSCRIPTION_REREAD + reread_offset(&plan.name);
    let mut acked_seq = 0;
    let mut subscription_read: Option<Instant> = None;
    let mut last_message = Instant::now();
    // The size of the last checkpoint sent: only newer ones follow.
    let mut checkpoint_sent = 0;
    let tick = plan
        .ack_wait
        .min(plan.heartbeat)
        .min(Duration::from_secs(1));
    let stopped = |stop: Stop| {
        match stop {
        Stop::Gone => Ok(()),
        Stop::TooSlow => Err(Error::Unavailable("the subscriber did not keep up; resume from the subscription's cursor (events are kept)".to_owned())),
    }
    };
    loop {
        if *draining.borrow() {
            let drain = proto::Drain {
                reason: "the hub is shutting down; reconnect and resume".into(),
            };
            let _ = send(&out, proto::feed_message::Message::Drain(drain)).await;
            return Ok(());
        }
        // Whether the subscription was read this round: checkpoints are looked for then.
        let mut read_now = false;
        let now = Instant::now();
        let redelivery_due = in_flight
            .values()
            .any(|(sent_at, _)| now.duration_since(*sent_at) >= plan.ack_wait);
        if redelivery_due
            || in_flight.len() >= plan.max_in_flight
            || last_message.elapsed() >= plan.heartbeat
            || subscription_read.is_none()
        {
            acked_seq = acked_seq.max(reread(store, &plan, &mut in_flight).await?);
            subscription_read = Some(now);
            read_now = true;
        }
        if let Some(acks) = &mut stream_acks {
            acked_seq = acked_seq.max(*acks.borrow_and_update());
            in_flight.retain(|seq, _| *seq > acked_seq);
        }

        let now = Instant::now();
        for (sent_at, event) in in_flight.values_mut() {
            if now.duration_since(*sent_at) >= plan.ack_wait {
                let message = event_message(event, &plan.reader, plan.ids_only, true);
                if let Err(stop) = send(&out, proto::feed_message::Message::Event(message)).await {
                    return stopped(stop);
                }
                *sent_at = Instant::now();
                last_message = Instant::now();
            }
        }

        'read: while in_flight.len() < plan.max_in_flight {
            let events = store
                .feed_after_shared(scanned, &jurisdiction, plan.kind, READ_BATCH)
                .await?;
            if events.is_empty() {
                break;
            }
            for event in events {
                if in_flight.len() >= plan.max_in_flight {
                    break 'read;
                }
                scanned = event.seq;
                if plan.filter.matches(&event) {
                    let message = event_message(&event, &plan.reader, plan.ids_only, false);
                    if let Err(stop) =
                        send(&out, proto::feed_message::Message::Event(message)).await
                    {
                        return stopped(stop);
                    }
                    in_flight.insert(event.seq, (Instant::now(), event));
                    last_message = Instant::now();
                }
            }
        }

        if subscription_read.is_none_or(|at| at.elapsed() >= reread_every) {
            acked_seq = acked_seq.max(reread(store, &plan, &mut in_flight).await?);
            subscription_read = Some(Instant::now());
            read_now = true;
        }
        if read_now
            && let Some(checkpoint) = newer_checkpoint(store, &plan, &mut checkpoint_sent).await?
        {
            if let Err(stop) = send(&out, checkpoint).await {
                return stopped(stop);
            }
            last_message = Instant::now();
        }

        if last_message.elapsed() >= plan.heartbeat {
            let heartbeat = proto::Heartbeat {
                head_seq: u64::try_from(store.feed_head().await?).unwrap_or_default(),
                acked_seq: u64::try_from(acked_seq).unwrap_or_default(),
            };
            if let Err(stop) = send(&out, proto::feed_message::Message::Heartbeat(heartbeat)).await
            {
                return stopped(stop);
            }
            last_message = Instant::now();
        }

        tokio::select! {
            _ = wakeups.changed() => {}
            _ = draining.changed() => {}
            () = acked_on_stream(&mut stream_acks) => {}
            () = tokio::time::sleep(tick) => {}
            () = out.closed() => return Ok(()),
        }
    }
}

/// Resolves when an acknowledgement sent on the stream has been written; never on a stream
/// without them (or once the reader of the subscriber's messages has stopped).
async fn acked_on_stream(acks: &mut Option<tokio::sync::watch::Receiver<i64>>) {
    match acks {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                *acks = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// Reads a `StreamingSubscribe` subscriber's acknowledgements and writes them, the highest of
/// those waiting at once (they are cumulative), through the same grouped writes as `Ack`. Each
/// durable one is told to the delivery task (to free its window) and to the subscriber. An
/// invalid one ends the stream with its status. It stops with the delivery task (whose end drops
/// the last receiver of `acked`), and holds the stream only weakly so as not to keep it open.
async fn write_stream_acks(
    hub: Hub,
    agency_id: String,
    name: String,
    mut inbound: tonic::Streaming<proto::StreamingSubscribeRequest>,
    acked: tokio::sync::watch::Sender<i64>,
    out: mpsc::WeakSender<Result<proto::FeedMessage, Status>>,
) {
    use proto::streaming_subscribe_request::Request as Inbound;
    let send = |message: Result<proto::FeedMessage, Status>| {
        let out = out.upgrade();
        async move {
            match out {
                Some(out) => out.send(message).await.is_ok(),
                None => false,
            }
        }
    };
    loop {
        let next = tokio::select! {
            next = inbound.message() => next,
            () = acked.closed() => return,
        };
        let mut seq = match next {
            Ok(Some(proto::StreamingSubscribeRequest {
                request: Some(Inbound::AckSeq(seq)),
            })) => seq,
            Ok(Some(_)) => {
                let error = Error::invalid("request", "after the first message, only ack_seq");
                send(Err(error.into())).await;
                return;
            }
            // The subscriber closed its side or went away: delivery goes on until it stops
            // reading, as with `Subscribe`.
            Ok(None) | Err(_) => return,
        };
        // Take the acknowledgements already waiting too: only the highest needs writing.
        while let Some(Some(Ok(proto::StreamingSubscribeRequest {
            request: Some(Inbound::AckSeq(later)),
        }))) = futures::FutureExt::now_or_never(inbound.next())
        {
            seq = seq.max(later);
        }
        let Ok(seq) = i64::try_from(seq) else {
            send(Err(Error::invalid("ack_seq", "is too large").into())).await;
            return;
        };
        match hub.store.ack(&agency_id, &name, seq).await {
            Ok(cursor) => {
                acked.send_if_modified(|current| {
                    let moved = cursor > *current;
                    *current = (*current).max(cursor);
                    moved
                });
                let message = proto::FeedMessage {
                    message: Some(proto::feed_message::Message::Acked(proto::AckResponse {
                        acked_seq: u64::try_from(cursor).unwrap_or_default(),
                    })),
                };
                if !send(Ok(message)).await {
                    return;
                }
            }
            Err(error) => {
                send(Err(error.into())).await;
                return;
            }
        }
    }
}

impl Hub {
    /// A subscription's stream, from where `message` says; with the subscriber's messages, its
    /// acknowledgements ride on the stream.
    async fn open_stream(
        &self,
        caller: &super::policy::Caller,
        message: proto::SubscribeRequest,
        inbound: Option<tonic::Streaming<proto::StreamingSubscribeRequest>>,
    ) -> Result<FeedStream, Error> {
        let name = name_of(&message.name)?;
        let agency_id = caller.agency.id();
        let subscription = self
            .store
            .subscription(&agency_id, &name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no subscription `{name}`")))?;
        let filter: Filter = serde_json::from_str(&subscription.filter)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let after = match &message.start {
            Some(proto::subscribe_request::Start::AfterSeq(seq)) => {
                i64::try_from(*seq).map_err(|_| Error::invalid("after_seq", "is too large"))?
            }
            Some(proto::subscribe_request::Start::Since(since)) => {
                self.store
                    .feed_seq_before(
                        since.seconds.saturating_mul(1_000_000) + i64::from(since.nanos / 1_000),
                    )
                    .await?
            }
            None => subscription.acked_seq,
        };
        let trimmed = self.store.feed_trimmed_through().await?;
        if after < trimmed {
            return Err(Error::CursorExpired {
                requested: after,
                earliest: trimmed + 1,
            });
        }
        let checkpoints = filter.checkpoints;
        let (acked, stream_acks) = tokio::sync::watch::channel(subscription.acked_seq);
        let plan = StreamPlan {
            agency_id,
            kind: caller.agency.kind,
            name,
            filter,
            reader: self.reader(&caller.agency).await?,
            ids_only: subscription.content_mode == "IDS",
            checkpoints,
            after,
            max_in_flight: match message.max_in_flight {
                0 => 100,
                n => n.min(10_000) as usize,
            },
            ack_wait: Duration::from_millis(match message.ack_wait_ms {
                0 => 30_000,
                ms => u64::from(ms.max(10)),
            }),
            heartbeat: Duration::from_millis(match message.heartbeat_ms {
                0 => 5_000,
                ms => u64::from(ms.max(10)),
            }),
            stream_acks: inbound.is_some().then_some(stream_acks),
        };
        let (out, events) = mpsc::channel(plan.max_in_flight + 4);
        if let Some(inbound) = inbound {
            tokio::spawn(write_stream_acks(
                self.clone(),
                plan.agency_id.clone(),
                plan.name.clone(),
                inbound,
                acked,
                out.downgrade(),
            ));
        }
        let ending: Arc<Mutex<Option<Status>>> = Arc::new(Mutex::new(None));
        let task_ending = ending.clone();
        let hub = self.clone();
        tokio::spawn(async move {
            let _connected = hub.metrics.subscriber_connected();
            let span = tracing::info_span!(
                "feed_delivery",
                agency = %plan.agency_id,
                subscription = %plan.name
            );
            if let Err(error) = deliver(hub, plan, out).instrument(span).await {
                tracing::info!(%error, "feed stream ended");
                *task_ending.lock().expect("not poisoned") = Some(error.into());
            }
        });
        // What the task could not send through a full channel comes after what it did send.
        let end = futures::stream::once(async move { ending.lock().expect("not poisoned").take() })
            .filter_map(|status| async move { status.map(Err) });
        let stream = tokio_stream::wrappers::ReceiverStream::new(events).chain(end);
        Ok(Box::pin(stream))
    }

    /// The caller, and the subscription of it that a request names.
    async fn named_subscription(
        &self,
        request: &Request<proto::SubscriptionName>,
    ) -> Result<(super::policy::Caller, String, Subscription), Error> {
        let caller = caller(request)?;
        let name = name_of(&request.get_ref().name)?;
        let stored = self
            .store
            .subscription(&caller.agency.id(), &name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no subscription `{name}`")))?;
        Ok((caller, name, stored))
    }
}

#[tonic::async_trait]
impl proto::feed_service_server::FeedService for Hub {
    async fn put_subscription(
        &self,
        request: Request<proto::PutSubscriptionRequest>,
    ) -> Result<Response<proto::Subscription>, Status> {
        let caller = caller(&request)?;
        let subscription = request
            .get_ref()
            .subscription
            .as_ref()
            .ok_or_else(|| Error::invalid("subscription", "is required"))?;
        let name = name_of(&subscription.name)?;
        let mut filter = Filter::from_message(&caller.agency, subscription.filter.as_ref())?;
        filter.checkpoints = subscription.checkpoints;
        let content_mode = match proto::ContentMode::try_from(subscription.content_mode) {
            Ok(proto::ContentMode::Ids) => "IDS",
            Ok(_) => "FULL",
            Err(_) => return Err(Error::invalid("content_mode", "unknown content mode").into()),
        };
        let filter = serde_json::to_string(&filter).map_err(|e| Error::Internal(e.to_string()))?;
        let stored = self
            .store
            .put_subscription(&caller.agency.id(), &name, &filter, content_mode)
            .await?;
        Ok(Response::new(subscription_message(&stored)?))
    }

    async fn get_subscription(
        &self,
        request: Request<proto::SubscriptionName>,
    ) -> Result<Response<proto::Subscription>, Status> {
        let (_, _, stored) = self.named_subscription(&request).await?;
        Ok(Response::new(subscription_message(&stored)?))
    }

    async fn list_subscriptions(
        &self,
        request: Request<proto::SubscriptionName>,
    ) -> Result<Response<proto::ListSubscriptionsResponse>, Status> {
        let caller = caller(&request)?;
        let subscriptions = self.store.subscriptions(&caller.agency.id()).await?;
        Ok(Response::new(proto::ListSubscriptionsResponse {
            subscriptions: subscriptions
                .iter()
                .map(subscription_message)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn delete_subscription(
        &self,
        request: Request<proto::SubscriptionName>,
    ) -> Result<Response<proto::Subscription>, Status> {
        let (caller, name, stored) = self.named_subscription(&request).await?;
        self.store
            .delete_subscription(&caller.agency.id(), &name)
            .await?;
        Ok(Response::new(subscription_message(&stored)?))
    }

    type SubscribeStream = FeedStream;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<FeedStream>, Status> {
        let caller = caller(&request)?;
        let stream = self
            .open_stream(&caller, request.into_inner(), None)
            .await?;
        Ok(Response::new(stream))
    }

    type StreamingSubscribeStream = FeedStream;

    async fn streaming_subscribe(
        &self,
        request: Request<tonic::Streaming<proto::StreamingSubscribeRequest>>,
    ) -> Result<Response<FeedStream>, Status> {
        let caller = caller(&request)?;
        let mut inbound = request.into_inner();
        let first = match inbound.message().await? {
            Some(proto::StreamingSubscribeRequest {
                request: Some(proto::streaming_subscribe_request::Request::Subscribe(first)),
            }) => first,
            _ => {
                return Err(Error::invalid(
                    "subscribe",
                    "the first message must say which subscription to stream",
                )
                .into());
            }
        };
        let stream = self.open_stream(&caller, first, Some(inbound)).await?;
        Ok(Response::new(stream))
    }

    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckResponse>, Status> {
        let caller = caller(&request)?;
        let name = name_of(&request.get_ref().name)?;
        let seq = i64::try_from(request.get_ref().seq)
            .map_err(|_| Error::invalid("seq", "is too large"))?;
        let acked = self.store.ack(&caller.agency.id(), &name, seq).await?;
        Ok(Response::new(proto::AckResponse {
            acked_seq: u64::try_from(acked).unwrap_or_default(),
        }))
    }

    async fn transition_alert(
        &self,
        request: Request<proto::TransitionAlertRequest>,
    ) -> Result<Response<proto::Finding>, Status> {
        let caller = caller(&request)?;
        let reader = self.reader(&caller.agency).await?;
        let message = request.get_ref();
        // A reader that sees a person's findings with a token names the person by it.
        let subject = reader
            .tokens()
            .person_of(&message.subject)
            .map_or_else(|| message.subject.clone(), |id| id.to_string());
        let key = FindingKey {
            code: RuleCode::from_wire(message.code)
                .ok_or_else(|| Error::invalid("code", "is required"))?,
            institution: message.institution_uscc.clone(),
            subject,
            period: message.period.clone(),
        };
        let to =
            AlertState::from_wire(message.to).ok_or_else(|| Error::invalid("to", "is required"))?;
        if message.idempotency_key.trim().is_empty() {
            return Err(Error::invalid("idempotency_key", "is required").into());
        }
        let current = self
            .store
            .finding(&key)
            .await?
            .ok_or_else(|| Error::NotFound("no such finding".into()))?;
        let within =
            Jurisdiction::parse(&current.jurisdiction).is_ok_and(|j| caller.agency.oversees(&j));
        if !within {
            return Err(Error::PermissionDenied(format!(
                "the finding lies outside the jurisdiction of {}",
                caller.agency
            ))
            .into());
        }
        let transition = Transition {
            key,
            expected_version: i64::try_from(message.expected_version)
                .map_err(|_| Error::invalid("expected_version", "is too large"))?,
            to,
            idempotency_key: message.idempotency_key.clone(),
            note: message.note.chars().take(2_000).collect(),
        };
        let after = self
            .store
            .transition(&caller.agency.id(), &transition)
            .await?;
        let mut finding = finding_message(&after);
        reader.finding(&mut finding);
        Ok(Response::new(finding))
    }
}
