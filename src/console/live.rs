//! 实时预警: the live alert page, fed by the alert feed. The page's own script opens an
//! `EventSource` on `/live/events`; the console answers it with server-sent events taken from
//! FeedService's `Subscribe` stream, called in process as the viewer (through [`Visit::call`], so
//! the feed's reach, jurisdiction and masking are the handler's own).
//!
//! Where a stream starts: after the `Last-Event-ID` the browser sends when it reconnects (the
//! feed's sequence number is the event id), otherwise after the cursor of the viewer's
//! `console-live` subscription, which the console acknowledges as it hands events to a browser;
//! a subscription made just now starts a day back, so a first visit is not empty and not the
//! whole history either.

use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt as _};
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::Status;

use super::views::{self, Chrome, FindingQuery, Nav};
use super::{Lang, Visit};
use crate::proto;
use crate::proto::feed_service_server::FeedService as _;

/// See [`super::pages::LIST_FINDINGS`].
pub const PUT_SUBSCRIPTION: &str = "/quotahub.v1.FeedService/PutSubscription";
/// See [`super::pages::LIST_FINDINGS`].
pub const SUBSCRIBE: &str = "/quotahub.v1.FeedService/Subscribe";
/// See [`super::pages::LIST_FINDINGS`].
pub const ACK: &str = "/quotahub.v1.FeedService/Ack";

/// The viewer's subscription that the live page reads (one per agency: its tabs share it).
pub const SUBSCRIPTION: &str = "console-live";
/// How far back a new subscription starts.
const FIRST_LOOK_BACK: Duration = Duration::from_secs(24 * 3_600);
/// The cursor is acknowledged at most this often (each acknowledgement is a call of the viewer's).
const ACK_EVERY: Duration = Duration::from_secs(1);
/// Events sent to the browser and not yet acknowledged, beyond which the console acknowledges at
/// once (the feed stream's window is larger).
const ACK_BATCH: u64 = 200;
/// The feed stream's window.
const MAX_IN_FLIGHT: u32 = 1_000;
/// Idle time after which the feed stream sends a heartbeat, which the console answers with an
/// acknowledgement of what it sent meanwhile.
const HEARTBEAT_MS: u32 = 2_000;
/// What the browser waits before reconnecting.
const RETRY: Duration = Duration::from_secs(2);

/// The live page.
#[derive(askama::Template)]
#[template(path = "console/live.html")]
pub struct LivePage {
    pub c: Chrome,
    /// The event stream's address, in the page's language.
    pub events: String,
}

/// The live page: its frame and the list the script fills.
pub async fn page(visit: &mut Visit) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let chrome = Chrome::new(visit, &agency, Nav::Live, "/live", "");
    let page = LivePage {
        events: chrome.href("/live/events"),
        c: chrome,
    };
    views::html_with_script(&page)
}

/// What the browser receives of one feed event (already masked for the viewer by the handler).
#[derive(Debug, Serialize)]
struct LiveEvent {
    seq: u64,
    kind: &'static str,
    kind_label: &'static str,
    at: String,
    rule: String,
    severity: &'static str,
    severity_class: &'static str,
    institution: String,
    subject: String,
    period: String,
    alert_state: &'static str,
    escalation_level: u32,
    text: String,
    href: String,
}

fn live_event(lang: Lang, event: &proto::FeedEvent) -> LiveEvent {
    let kind = proto::FeedEventType::try_from(event.event_type)
        .map(|kind| kind.as_str_name())
        .unwrap_or("")
        .trim_start_matches("FEED_EVENT_TYPE_");
    let mut live = LiveEvent {
        seq: event.seq,
        kind,
        kind_label: views::event_type_label(lang, event.event_type),
        at: views::timestamp(event.created_at.as_ref()),
        rule: String::new(),
        severity: "",
        severity_class: "info",
        institution: String::new(),
        subject: String::new(),
        period: String::new(),
        alert_state: views::alert_state_label(lang, event.alert_state),
        escalation_level: event.escalation_level,
        text: String::new(),
        href: String::new(),
    };
    if let Some(finding) = &event.finding {
        live.rule = views::rule_label(lang, finding.code);
        live.severity = views::severity_label(lang, finding.severity);
        live.severity_class = views::severity_class(finding.severity);
        live.institution.clone_from(&finding.institution_uscc);
        live.subject.clone_from(&finding.subject);
        live.period.clone_from(&finding.period);
        live.text = if lang == Lang::En {
            finding.explanation_en.clone()
        } else {
            finding.explanation_zh.clone()
        };
        let mut key = FindingQuery::of(finding);
        key.lang = None;
        live.href =
            super::views::with_lang(&format!("/finding?{}", key.query_string(Lang::Zh)), lang);
    } else if let Some(follow_up) = &event.follow_up {
        live.rule = views::matter_label(lang, follow_up.matter).to_owned();
        live.institution.clone_from(&follow_up.institution_uscc);
        live.subject.clone_from(&follow_up.id);
        live.text = if follow_up.text.is_empty() {
            follow_up.state.clone()
        } else {
            follow_up.text.clone()
        };
        if follow_up.matter == proto::MatterKind::LedgerItem as i32 {
            live.href = super::views::with_lang(
                &format!(
                    "/ledger/item?{}",
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair("id", &follow_up.id)
                        .finish()
                ),
                lang,
            );
        }
    }
    live
}

/// The event stream: opens the viewer's subscription from where the browser left off and hands
/// its events on as they come. The request's audit entry names the calls that opened it; a
/// second entry, when the stream ends, says how far it went and what it acknowledged.
pub async fn events(visit: &mut Visit, last_event_id: Option<u64>) -> Result<Response, Status> {
    visit.viewer().await?;
    let subscription = visit
        .call(
            PUT_SUBSCRIPTION,
            proto::PutSubscriptionRequest {
                subscription: Some(proto::Subscription {
                    name: SUBSCRIPTION.to_owned(),
                    filter: Some(proto::SubscriptionFilter::default()),
                    content_mode: proto::ContentMode::Full as i32,
                    acked_seq: 0,
                    checkpoints: false,
                }),
            },
            |hub, request| async move { hub.put_subscription(request).await },
        )
        .await?;
    let start = match last_event_id {
        Some(seq) => Some(proto::subscribe_request::Start::AfterSeq(seq)),
        None if subscription.acked_seq == 0 => {
            let since = SystemTime::now()
                .checked_sub(FIRST_LOOK_BACK)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Some(proto::subscribe_request::Start::Since(since.into()))
        }
        None => None,
    };
    let feed = visit
        .call(
            SUBSCRIBE,
            proto::SubscribeRequest {
                name: SUBSCRIPTION.to_owned(),
                start,
                max_in_flight: MAX_IN_FLIGHT,
                ack_wait_ms: 0,
                heartbeat_ms: HEARTBEAT_MS,
            },
            |hub, request| async move { hub.subscribe(request).await },
        )
        .await?;
    let (out, body) = mpsc::channel(64);
    let follower = visit.fork("GET /live/events (ended)");
    tokio::spawn(forward(follower, feed, out));
    let stream = tokio_stream::wrappers::ReceiverStream::new(body).map(Ok::<_, Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Hands the feed's events to the browser until either side ends, acknowledging the
/// subscription's cursor as it goes; then records the stream's end in the audit trail.
async fn forward(
    mut visit: Visit,
    mut feed: impl Stream<Item = Result<proto::FeedMessage, Status>> + Unpin,
    out: mpsc::Sender<Event>,
) {
    use proto::feed_message::Message;
    let lang = visit.lang;
    let mut sent_through = 0u64;
    let mut acked = 0u64;
    let mut sent = 0u64;
    let mut last_ack = Instant::now();
    let mut first = true;
    let ending = loop {
        let message = tokio::select! {
            message = feed.next() => message,
            () = out.closed() => break "the browser left".to_owned(),
        };
        let mut event = match message {
            Some(Ok(proto::FeedMessage {
                message: Some(Message::Event(event)),
            })) => {
                // A redelivery of what the browser already has (an acknowledgement was late).
                if event.seq <= sent_through {
                    continue;
                }
                let live = live_event(lang, &event);
                let data = serde_json::to_string(&live).unwrap_or_default();
                sent_through = event.seq;
                sent += 1;
                Event::default()
                    .id(event.seq.to_string())
                    .event("alert")
                    .data(data)
            }
            Some(Ok(proto::FeedMessage {
                message: Some(Message::Heartbeat(heartbeat)),
            })) => Event::default()
                .event("heartbeat")
                .data(heartbeat.head_seq.to_string()),
            Some(Ok(proto::FeedMessage {
                message: Some(Message::Drain(drain)),
            })) => {
                // The browser reconnects by itself, with the last id it saw.
                let _ = out
                    .send(Event::default().event("drain").data(drain.reason.clone()))
                    .await;
                break format!("drain: {}", drain.reason);
            }
            Some(Ok(_)) => continue,
            Some(Err(status)) => {
                let _ = out
                    .send(Event::default().event("failure").data(status.message()))
                    .await;
                break format!(
                    "{}: {}",
                    crate::api::status::grpc_code_name(status.code()),
                    status.message()
                );
            }
            None => break "the feed stream ended".to_owned(),
        };
        if first {
            event = event.retry(RETRY);
            first = false;
        }
        if out.send(event).await.is_err() {
            break "the browser left".to_owned();
        }
        if sent_through > acked
            && (sent_through - acked >= ACK_BATCH || last_ack.elapsed() >= ACK_EVERY)
        {
            acked = ack(&mut visit, sent_through).await.unwrap_or(acked);
            last_ack = Instant::now();
        }
    };
    if sent_through > acked {
        acked = ack(&mut visit, sent_through).await.unwrap_or(acked);
    }
    visit.touched.push(format!(
        "{ending}; {sent} events sent, through {sent_through}; cursor {acked}"
    ));
    let _ = visit.answer(Ok(().into_response())).await;
}

/// Acknowledges the viewer's subscription through `seq` (a call of the viewer's, admitted as any).
async fn ack(visit: &mut Visit, seq: u64) -> Option<u64> {
    let request = proto::AckRequest {
        name: SUBSCRIPTION.to_owned(),
        seq,
    };
    let touched = visit.touched.len();
    let answer = visit
        .call(ACK, request, |hub, request| async move {
            hub.ack(request).await
        })
        .await;
    // The stream's closing entry says how far the cursor went, not every acknowledgement.
    visit.touched.truncate(touched);
    match answer {
        Ok(answer) => Some(answer.acked_seq),
        Err(status) => {
            tracing::debug!(%status, "the live page's acknowledgement failed; it is retried");
            None
        }
    }
}
