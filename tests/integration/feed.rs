//! The alert feed over real mTLS: durable subscriptions, resuming after a disconnect without loss
//! or duplicates, acknowledgements and redelivery, heartbeats, drain, expired cursors, and the
//! escalation ladder under a controllable clock.

use std::time::Duration;

use quotahub::api::Limits;
use quotahub::clock::Clock;
use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::proto::feed_message::Message;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_subscriber_that_reconnects_gets_every_event_once_in_order,
    acks_are_cumulative_and_late_ones_bring_redelivery,
    subscriptions_are_scoped_filtered_and_can_carry_ids_only,
    an_expired_cursor_names_the_earliest_event_kept,
    alerts_move_by_hand_with_versions_and_idempotency_keys,
    acks_ride_on_a_streaming_subscription_outside_the_call_rate,
    a_tail_left_unread_starts_again_at_the_head,
);

pub type Feed = proto::feed_service_client::FeedServiceClient<Channel>;

pub async fn feed(app: &TestApp, jurisdiction: &str, kind: AgencyKind) -> Feed {
    proto::feed_service_client::FeedServiceClient::new(
        app.channel(&agency(jurisdiction, kind)).await,
    )
}

pub async fn subscribe(
    feed: &mut Feed,
    name: &str,
    after: Option<u64>,
) -> Streaming<proto::FeedMessage> {
    feed.subscribe(proto::SubscribeRequest {
        name: name.into(),
        start: after.map(proto::subscribe_request::Start::AfterSeq),
        heartbeat_ms: 200,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

/// The next event of a stream (skipping heartbeats), within a few seconds.
pub async fn next_event(stream: &mut Streaming<proto::FeedMessage>) -> proto::FeedEvent {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event within 10 s")
            .expect("the stream is healthy")
            .expect("the stream is open");
        if let Some(Message::Event(event)) = message.message {
            return event;
        }
    }
}

/// Raises one ghost-pay finding (PAID_NOT_ON_ROLL and UNREGISTERED_INSTITUTION) per call.
async fn ghost_pay(app: &TestApp, n: u32) {
    let unit = uscc("140100", 1);
    app.finance("140100")
        .await
        .push_payroll_line(payroll(
            &format!("ghost-{n}"),
            &resident(n),
            &unit,
            "2024-01",
        ))
        .await
        .unwrap();
}

async fn a_subscriber_that_reconnects_gets_every_event_once_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut inspector = feed(&app, "140100", AgencyKind::Discipline).await;
    inspector
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "ghosts".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    ghost_pay(&app, 1).await;
    let mut stream = subscribe(&mut inspector, "ghosts", None).await;
    let mut received = Vec::new();
    for _ in 0..2 {
        received.push(next_event(&mut stream).await);
    }
    // Acknowledge the first only, then drop the connection mid-stream.
    inspector
        .ack(proto::AckRequest {
            name: "ghosts".into(),
            seq: received[0].seq,
        })
        .await
        .unwrap();
    drop(stream);

    for n in 2..=4 {
        ghost_pay(&app, n).await;
    }
    // Resume from the subscription's cursor: the unacknowledged second event comes again.
    let mut stream = subscribe(&mut inspector, "ghosts", None).await;
    for _ in 0..7 {
        let event = next_event(&mut stream).await;
        inspector
            .ack(proto::AckRequest {
                name: "ghosts".into(),
                seq: event.seq,
            })
            .await
            .unwrap();
        received.push(event);
    }
    let mut seqs: Vec<u64> = received.iter().map(|e| e.seq).collect();
    seqs.dedup();
    assert_eq!(
        seqs,
        (1..=8).collect::<Vec<_>>(),
        "gap-free, in order, each once after de-duplication"
    );
    assert_eq!(
        received.len(),
        9,
        "eight events, the unacknowledged one delivered twice"
    );
    assert_eq!((received[1].seq, received[2].seq), (2, 2));
    assert_eq!(received[1].event_id, received[2].event_id);
    assert!(
        received
            .iter()
            .all(|e| e.finding.as_ref().unwrap().jurisdiction == "140100")
    );

    // Heartbeats carry the head and the cursor when idle. One composed while the last ack was
    // committing may carry the cursor before it; the next ones carry it.
    let mut heartbeats = Vec::new();
    while heartbeats.len() < 3 {
        let message = stream.message().await.unwrap().unwrap();
        if let Some(Message::Heartbeat(heartbeat)) = message.message {
            let caught_up = heartbeat.acked_seq == 8;
            heartbeats.push((heartbeat.head_seq, heartbeat.acked_seq));
            if caught_up {
                break;
            }
        }
    }
    assert_eq!(heartbeats.last(), Some(&(8, 8)), "{heartbeats:?}");
}

async fn acks_are_cumulative_and_late_ones_bring_redelivery(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut auditor = feed(&app, "140100", AgencyKind::Audit).await;
    auditor
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "all".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    for n in 1..=3 {
        ghost_pay(&app, n).await;
    }
    // At most two outstanding, redelivered after 300 ms without an ack.
    let mut stream = auditor
        .subscribe(proto::SubscribeRequest {
            name: "all".into(),
            max_in_flight: 2,
            ack_wait_ms: 300,
            heartbeat_ms: 5_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = next_event(&mut stream).await;
    let second = next_event(&mut stream).await;
    assert_eq!((first.seq, second.seq), (1, 2));
    let again = next_event(&mut stream).await;
    assert_eq!(
        again.seq, 1,
        "nothing beyond the in-flight limit; the first comes again"
    );
    assert!(again.redelivered);
    // One cumulative ack covers both; acking again, or an older number, changes nothing.
    let acked = auditor
        .ack(proto::AckRequest {
            name: "all".into(),
            seq: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.acked_seq, 2);
    assert_eq!(
        auditor
            .ack(proto::AckRequest {
                name: "all".into(),
                seq: 1
            })
            .await
            .unwrap()
            .into_inner()
            .acked_seq,
        2
    );
    loop {
        let event = next_event(&mut stream).await;
        if event.seq > 2 {
            assert_eq!(event.seq, 3);
            break;
        }
    }
    // An ack beyond the head is refused.
    let status = auditor
        .ack(proto::AckRequest {
            name: "all".into(),
            seq: 99,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // An ack of a subscription that does not exist names it.
    let status = auditor
        .ack(proto::AckRequest {
            name: "nobody".into(),
            seq: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(status.message().contains("nobody"), "{}", status.message());
    // Acks of many subscriptions at once are written together; each gets its own cursor, and an
    // unknown one among them its own refusal.
    let mut acks = Vec::new();
    for i in 0..40 {
        let mut client = auditor.clone();
        let name = format!("many-{i}");
        client
            .put_subscription(proto::PutSubscriptionRequest {
                subscription: Some(proto::Subscription {
                    name: name.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        acks.push((client, name, 1 + i % 3));
    }
    let answers =
        futures::future::join_all(acks.into_iter().map(|(mut client, name, seq)| async move {
            let unknown = client
                .ack(proto::AckRequest {
                    name: format!("{name}-unknown"),
                    seq,
                })
                .await;
            let known = client.ack(proto::AckRequest { name, seq }).await;
            (seq, known, unknown)
        }))
        .await;
    for (seq, known, unknown) in answers {
        assert_eq!(known.unwrap().into_inner().acked_seq, seq);
        assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    }
}

async fn subscriptions_are_scoped_filtered_and_can_carry_ids_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A district may not subscribe to the city.
    let mut district = feed(&app, "140105", AgencyKind::Discipline).await;
    let status = district
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "city".into(),
                filter: Some(proto::SubscriptionFilter {
                    jurisdiction: "140100".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    district
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "mine".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    let mut city = feed(&app, "140100", AgencyKind::Discipline).await;
    city.put_subscription(proto::PutSubscriptionRequest {
        subscription: Some(proto::Subscription {
            name: "ghost-ids".into(),
            filter: Some(proto::SubscriptionFilter {
                codes: vec![proto::RuleCode::PaidNotOnRoll as i32],
                ..Default::default()
            }),
            content_mode: proto::ContentMode::Ids as i32,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    // A city finding, then a district one.
    ghost_pay(&app, 1).await;
    let district_unit = uscc("140105", 1);
    app.finance("140105")
        .await
        .push_payroll_line(payroll("d1", &resident(2), &district_unit, "2024-01"))
        .await
        .unwrap();

    let mut ids = subscribe(&mut city, "ghost-ids", None).await;
    let first = next_event(&mut ids).await;
    let second = next_event(&mut ids).await;
    for event in [&first, &second] {
        let finding = event.finding.as_ref().unwrap();
        assert_eq!(finding.code, proto::RuleCode::PaidNotOnRoll as i32);
        assert!(
            finding.subject.is_empty()
                && finding.evidence.is_empty()
                && finding.explanation_zh.is_empty(),
            "ids only"
        );
    }
    let mut mine = subscribe(&mut district, "mine", None).await;
    let event = next_event(&mut mine).await;
    assert_eq!(
        event.finding.as_ref().unwrap().jurisdiction,
        "140105",
        "the district sees its own only"
    );
    assert!(
        !event.finding.as_ref().unwrap().subject.is_empty(),
        "full content by default"
    );
}

/// The in-process tail of the feed reads what its readers need, not the run of events committed
/// while nobody read it: the first subscriber after a re-check's thousands of findings (or the
/// first ever) waits for no read of them. Readers behind the head still get every event, from the
/// database. Counted in events read, not timed.
async fn a_tail_left_unread_starts_again_at_the_head(backend: Backend) {
    use quotahub::api::convert::Pushed;
    let app = TestApp::spawn(backend).await;
    let finance = agency("140100", AgencyKind::Finance);
    let district = quotahub::domain::Jurisdiction::parse("140100").unwrap();
    let unit = uscc("140100", 1);
    // Ghost pay for 1,500 people at once: a finding and an event each.
    let ghosts = |round: u32| {
        (0..1_500)
            .map(|n| {
                payroll(
                    &format!("ghost-{round}-{n}"),
                    &resident(round * 10_000 + n),
                    &unit,
                    "2024-01",
                )
                .to_submission()
                .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let last_events = |after: i64| {
        let (store, district) = (app.store.clone(), district.clone());
        async move {
            let read = store.feed_tail_reads();
            let events = store
                .feed_after_shared(after, &district, AgencyKind::Audit, 100)
                .await
                .unwrap();
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            (seqs, store.feed_tail_reads() - read)
        }
    };

    for round in 1..=2 {
        app.store.push(&finance, &ghosts(round)).await.unwrap();
        let head = app.store.feed_head().await.unwrap();
        assert!(
            head > 1_500 * i64::from(round),
            "every ghost raised an event"
        );
        // The tail was never read (round 1), or not for longer than it stays fresh (round 2).
        let (seqs, read) = last_events(head - 1).await;
        assert_eq!(
            seqs,
            vec![head],
            "the reader behind the head gets the last event"
        );
        assert_eq!(
            read, 0,
            "round {round}: the tail read none of the {head} events committed while unread"
        );
        // Read again at once, it follows the feed: the next push's events come through it.
        app.store
            .push(&finance, &ghosts(round + 10)[..1])
            .await
            .unwrap();
        let next = app.store.feed_head().await.unwrap();
        let (seqs, read) = last_events(head).await;
        assert_eq!(
            seqs,
            (head + 1..=next).collect::<Vec<_>>(),
            "the next events, once"
        );
        assert_eq!(read, (next - head) as u64, "each read once by the tail");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
}

async fn an_expired_cursor_names_the_earliest_event_kept(backend: Backend) {
    use tonic_types::StatusExt;
    let app = TestApp::spawn(backend).await;
    let mut auditor = feed(&app, "140100", AgencyKind::Audit).await;
    auditor
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "s".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    ghost_pay(&app, 1).await;
    app.store
        .trim_feed(quotahub::store::now_micros() + 1)
        .await
        .unwrap();
    ghost_pay(&app, 2).await;
    let status = auditor
        .subscribe(proto::SubscribeRequest {
            name: "s".into(),
            start: Some(proto::subscribe_request::Start::AfterSeq(0)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("earliest event still kept is 3"),
        "{}",
        status.message()
    );
    let details = status.get_error_details();
    assert_eq!(
        details.precondition_failure().unwrap().violations[0].subject,
        "earliest_seq=3"
    );
    let mut stream = subscribe(&mut auditor, "s", Some(2)).await;
    assert_eq!(next_event(&mut stream).await.seq, 3);
}

async fn alerts_move_by_hand_with_versions_and_idempotency_keys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    ghost_pay(&app, 1).await;
    let finding = app
        .query_findings("140100")
        .await
        .into_iter()
        .find(|f| f.code == proto::RuleCode::PaidNotOnRoll as i32)
        .unwrap();
    let mut office = feed(&app, "140100", AgencyKind::StaffingOffice).await;
    let request = |to: proto::AlertState, version: u64, key: &str| proto::TransitionAlertRequest {
        code: finding.code,
        institution_uscc: finding.institution_uscc.clone(),
        subject: finding.subject.clone(),
        period: finding.period.clone(),
        expected_version: version,
        to: to as i32,
        idempotency_key: key.into(),
        note: "核实中".into(),
    };
    let acknowledged = office
        .transition_alert(request(
            proto::AlertState::Acknowledged,
            finding.version,
            "k1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acknowledged.alert_state,
        proto::AlertState::Acknowledged as i32
    );
    assert_eq!(acknowledged.version, finding.version + 1);
    // The same request again: the same answer, nothing applied twice.
    let again = office
        .transition_alert(request(
            proto::AlertState::Acknowledged,
            finding.version,
            "k1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.version, acknowledged.version);
    // A stale version is refused; so is going backwards; so is reusing a key for another move.
    let stale = office
        .transition_alert(request(
            proto::AlertState::Rectifying,
            finding.version,
            "k2",
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted);
    let back = office
        .transition_alert(request(proto::AlertState::Open, acknowledged.version, "k3"))
        .await
        .unwrap_err();
    assert_eq!(back.code(), tonic::Code::FailedPrecondition);
    let reused = office
        .transition_alert(request(
            proto::AlertState::Closed,
            acknowledged.version,
            "k1",
        ))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), tonic::Code::AlreadyExists);
    // Auditors read but do not move alerts.
    let mut auditor = feed(&app, "140100", AgencyKind::Audit).await;
    let status = auditor
        .transition_alert(request(
            proto::AlertState::Closed,
            acknowledged.version,
            "k9",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    // Each transition is an event on the feed.
    auditor
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "moves".into(),
                filter: Some(proto::SubscriptionFilter {
                    event_types: vec![proto::FeedEventType::Transitioned as i32],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut stream = subscribe(&mut auditor, "moves", Some(0)).await;
    let event = next_event(&mut stream).await;
    assert_eq!(event.alert_state, proto::AlertState::Acknowledged as i32);
}

#[tokio::test]
async fn escalation_climbs_the_ladder_once_per_deadline_and_stops_when_rectified() {
    let db = TestDb::new(Backend::Sqlite).await;
    let clock = Clock::on(chrono::NaiveDate::from_ymd_opt(2024, 6, 1).unwrap());
    let store = db.store_on(&clock).await;
    let finance = agency("140100", AgencyKind::Finance);
    let submission = |n: u32| {
        use quotahub::api::convert::Pushed;
        payroll(
            &format!("p{n}"),
            &resident(n),
            &uscc("140100", 1),
            "2024-05",
        )
        .to_submission()
        .unwrap()
    };
    store.push(&finance, &[submission(1)]).await.unwrap();
    // The raise was stamped with the real time; escalation reads the clock it is given.
    let raised = store.feed_after(0, None, 10).await.unwrap();
    let critical = raised
        .iter()
        .find(|e| e.finding.as_ref().unwrap().finding.key.code.to_string() == "PAID_NOT_ON_ROLL")
        .unwrap();
    let start = critical.finding.as_ref().unwrap().raised_at;
    let hours = |h: i64| start + h * 3_600_000_000;

    let steps = |events: Vec<quotahub::store::feed::FeedEvent>| -> Vec<(String, i64)> {
        events
            .into_iter()
            .filter(|e| e.event_type.to_string() == "ESCALATED")
            .map(|e| {
                let stored = e.finding.unwrap();
                (
                    stored.finding.key.code.to_string(),
                    stored.alert.escalation_level,
                )
            })
            .collect()
    };
    assert!(
        store.escalate_due(hours(23)).await.unwrap().is_empty(),
        "before the acknowledgement deadline"
    );
    assert_eq!(
        store.escalate_due(hours(24)).await.unwrap().len(),
        1,
        "PAID_NOT_ON_ROLL (critical): 24 h to acknowledge"
    );
    assert!(
        store.escalate_due(hours(25)).await.unwrap().is_empty(),
        "each deadline fires once"
    );
    // The unregistered-institution finding (high) has 72 h; the critical one 7 days to rectify.
    assert_eq!(store.escalate_due(hours(72)).await.unwrap().len(), 1);
    let at_week = store.escalate_due(hours(7 * 24)).await.unwrap();
    assert_eq!(at_week.len(), 1);
    let events = store.feed_after(0, None, 100).await.unwrap();
    assert_eq!(
        steps(events),
        vec![
            ("PAID_NOT_ON_ROLL".into(), 1),
            ("UNREGISTERED_INSTITUTION".into(), 1),
            ("PAID_NOT_ON_ROLL".into(), 2)
        ]
    );
    // Rectified: finance reverses the line; the data no longer shows the findings; no more steps.
    let mut reversal = payroll("p1-rev", &resident(1), &uscc("140100", 1), "2024-05");
    reversal.reverses_record_id = "p1".into();
    {
        use quotahub::api::convert::Pushed;
        store
            .push(&finance, &[reversal.to_submission().unwrap()])
            .await
            .unwrap();
    }
    assert!(
        store
            .escalate_due(hours(1000 * 24))
            .await
            .unwrap()
            .is_empty(),
        "resolved alerts stop escalating"
    );
    clock.advance(chrono::Duration::days(1));
}

#[tokio::test]
async fn a_draining_hub_tells_its_subscribers() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let mut auditor = feed(&app, "140100", AgencyKind::Audit).await;
    auditor
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "s".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut stream = subscribe(&mut auditor, "s", None).await;
    let stopping = tokio::spawn(async move {
        app.stop().await;
    });
    let drain = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a message")
            .expect("healthy")
        {
            Some(proto::FeedMessage {
                message: Some(Message::Drain(drain)),
            }) => break drain,
            Some(_) => continue,
            None => panic!("the stream ended without a drain message"),
        }
    };
    assert!(drain.reason.contains("shutting down"));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the hub stopped promptly")
        .unwrap();
}

mod cli {
    use clap::Parser;

    use super::*;

    on_both_backends!(
        quotahub_subscribe_prints_acknowledges_and_resumes,
        quotahub_subscribe_stopped_acknowledges_what_it_printed,
    );

    /// `quotahub subscribe --json --code PAID_NOT_ON_ROLL` with `files` (the discipline agency of
    /// 140100), stopping after `limit` alerts if given.
    fn subscribe_args(
        app: &TestApp,
        files: &ClientFiles,
        limit: Option<&str>,
    ) -> quotahub::cli::subscribe::SubscribeArgs {
        let endpoint = app.endpoint();
        let mut argv = vec![
            "quotahub",
            "subscribe",
            "--server",
            &endpoint,
            "--ca",
            &files.ca,
            "--cert",
            &files.cert,
            "--key",
            &files.key,
            "--json",
            "--code",
            "PAID_NOT_ON_ROLL",
        ];
        if let Some(limit) = limit {
            argv.extend(["--limit", limit]);
        }
        let quotahub::cli::Command::Subscribe(args) = quotahub::cli::Cli::parse_from(argv).command
        else {
            panic!("subscribe")
        };
        args
    }

    fn seq(line: &str) -> u64 {
        serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
            .as_u64()
            .unwrap()
    }

    async fn quotahub_subscribe_prints_acknowledges_and_resumes(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let files = ClientFiles::new(&agency("140100", AgencyKind::Discipline));
        for n in 1..=3 {
            ghost_pay(&app, n).await;
        }
        let mut first = Vec::new();
        quotahub::cli::subscribe::run(
            subscribe_args(&app, &files, Some("2")),
            &mut first,
            std::future::pending(),
        )
        .await
        .unwrap();
        let first = String::from_utf8(first).unwrap();
        assert_eq!(first.lines().count(), 2);
        assert!(
            first
                .lines()
                .all(|line| line.contains("\"code\":\"PAID_NOT_ON_ROLL\""))
        );
        // A restart resumes after the last alert printed.
        let mut second = Vec::new();
        quotahub::cli::subscribe::run(
            subscribe_args(&app, &files, Some("1")),
            &mut second,
            std::future::pending(),
        )
        .await
        .unwrap();
        let second = String::from_utf8(second).unwrap();
        let last_first = first.lines().map(seq).max().unwrap();
        assert!(seq(second.lines().next().unwrap()) > last_first);
        assert!(second.contains(&resident(3)));
    }

    /// Acknowledgements go in batches, at most every quarter second: one stopped between two
    /// batches still acknowledges every alert it printed before it ends.
    async fn quotahub_subscribe_stopped_acknowledges_what_it_printed(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let files = ClientFiles::new(&agency("140100", AgencyKind::Discipline));
        for n in 1..=3 {
            ghost_pay(&app, n).await;
        }
        let printed = Printed::default();
        let stop = {
            let printed = printed.clone();
            async move {
                // Stops as soon as two alerts are printed: well inside one batch's interval.
                while printed.text().lines().count() < 2 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        tokio::time::timeout(
            Duration::from_secs(30),
            quotahub::cli::subscribe::run(
                subscribe_args(&app, &files, None),
                printed.clone(),
                stop,
            ),
        )
        .await
        .expect("stopped")
        .unwrap();
        let first = printed.text();
        let count = first.lines().count();
        // It may have printed the third before it saw the stop; a fourth is there either way.
        ghost_pay(&app, 4).await;
        let mut second = Vec::new();
        quotahub::cli::subscribe::run(
            subscribe_args(&app, &files, Some("1")),
            &mut second,
            std::future::pending(),
        )
        .await
        .unwrap();
        let second = String::from_utf8(second).unwrap();
        assert!(
            seq(&second) > first.lines().map(seq).max().unwrap()
                && second.contains(&resident(u32::try_from(count).unwrap() + 1)),
            "resumes right after what was printed: {first} then {second}"
        );
    }
}

/// Acknowledgements sent on a `StreamingSubscribe` stream are written, confirmed on the stream,
/// free its window at once, and are not calls: an agency whose call budget is spent still
/// acknowledges every event, where the same acknowledgements as `Ack` calls are refused.
async fn acks_ride_on_a_streaming_subscription_outside_the_call_rate(backend: Backend) {
    use proto::streaming_subscribe_request::Request as Inbound;
    let app = TestApp::spawn_with(
        backend,
        Limits {
            calls_per_second: 1,
            burst: 8,
            ..Limits::default()
        },
    )
    .await;
    let mut inspector = feed(&app, "140100", AgencyKind::Discipline).await;
    inspector
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "ghosts".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    for n in 1..=6 {
        ghost_pay(&app, n).await;
    }
    let (acks, inbound) = tokio::sync::mpsc::channel(16);
    acks.send(proto::StreamingSubscribeRequest {
        request: Some(Inbound::Subscribe(proto::SubscribeRequest {
            name: "ghosts".into(),
            // One event at a time: the next comes only once the last is acknowledged, and
            // the ack wait is far beyond the test, so only a stream ack can move it on.
            max_in_flight: 1,
            ack_wait_ms: 600_000,
            heartbeat_ms: 600_000,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut stream = inspector
        .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(inbound))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    // Six ghost payments raise two findings each.
    while seen.len() < 12 {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a message within 10 s")
            .expect("the stream is healthy")
            .expect("the stream is open");
        match message.message {
            Some(Message::Event(event)) => {
                assert!(!event.redelivered, "{event:?}");
                seen.push(event.seq);
                acks.send(proto::StreamingSubscribeRequest {
                    request: Some(Inbound::AckSeq(event.seq)),
                })
                .await
                .unwrap();
            }
            Some(Message::Acked(acked)) => {
                assert!(seen.contains(&acked.acked_seq), "{acked:?} {seen:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted, seen, "each event once, in order");
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
    // The last acknowledgement is confirmed on the stream once it is durable.
    let last = *seen.last().unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the last confirmation within 10 s")
            .unwrap()
            .unwrap();
        if let Some(Message::Acked(acked)) = message.message
            && acked.acked_seq == last
        {
            break;
        }
    }

    // Twelve acknowledgements went through although the agency may make eight calls in a burst;
    // the same as calls are throttled.
    let mut refused = 0;
    for seq in seen.iter().copied() {
        if let Err(status) = inspector
            .ack(proto::AckRequest {
                name: "ghosts".into(),
                seq,
            })
            .await
        {
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            refused += 1;
        }
    }
    assert!(refused > 0, "acks as calls count against the call rate");
    // The stream's acknowledgements were written: the subscription's cursor is the last (read
    // once the call budget has a token again).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let subscription = inspector
        .get_subscription(proto::SubscriptionName {
            name: "ghosts".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(subscription.acked_seq, last);

    // An acknowledgement beyond the feed's head ends the stream with the reason.
    acks.send(proto::StreamingSubscribeRequest {
        request: Some(Inbound::AckSeq(last + 1_000)),
    })
    .await
    .unwrap();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an answer within 10 s")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}
