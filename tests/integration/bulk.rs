//! Bulk (client-streaming) pushes: a result per record, bad records refused while the good ones
//! around them are stored, resends recognised, the per-stream limit.

use quotahub::api::Limits;
use quotahub::domain::AgencyKind;
use quotahub::proto;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    bad_records_in_a_stream_do_not_sink_the_good_ones,
    a_resent_stream_is_recognised_record_by_record,
    a_stream_spanning_batches_keeps_stream_order,
    records_beyond_the_stream_limit_are_refused_alone,
    a_bulk_answer_keeps_within_its_size_and_counts_what_it_leaves_out,
    a_persons_finding_goes_to_their_first_record_in_the_stream,
);

async fn bad_records_in_a_stream_do_not_sink_the_good_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let elsewhere = uscc("140200", 1);
    let mut lines = Vec::new();
    for n in 0..10 {
        lines.push(payroll(&format!("pay-{n}"), &resident(n), &unit, "2024-03"));
    }
    lines[2].resident_id = "110105194912310021".into(); // bad check character
    lines[5].period = "2024-3".into(); // malformed period
    lines[6].gross_fen = -5; // negative amount
    lines[7].institution_uscc = elsewhere; // another city: outside the agency's jurisdiction
    lines[8].record_id = String::new(); // no record id

    let response = app
        .finance("140100")
        .await
        .push_payroll_lines(tokio_stream::iter(lines))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 10);
    assert_eq!(
        (response.accepted, response.rejected, response.replayed),
        (5, 5, 0)
    );
    let indexes: Vec<u64> = response.results.iter().map(|r| r.index).collect();
    assert_eq!(indexes, (0..10).collect::<Vec<_>>());
    let error = |i: usize| response.results[i].error.clone().expect("an error");
    assert_eq!(error(2).code, "INVALID_ARGUMENT");
    assert_eq!(error(2).field_violations[0].field, "resident_id");
    assert_eq!(error(5).field_violations[0].field, "period");
    assert_eq!(error(6).field_violations[0].field, "gross_fen");
    assert_eq!(error(7).code, "PERMISSION_DENIED");
    assert_eq!(error(8).field_violations[0].field, "record_id");
    for good in [0, 1, 3, 4, 9] {
        assert_eq!(
            response.results[good].outcome,
            proto::RecordOutcome::Accepted as i32
        );
        assert_eq!(response.results[good].record_id, format!("pay-{good}"));
    }

    let stored = app
        .query("140100", AgencyKind::Audit)
        .await
        .list_payroll(proto::ListPayrollRequest {
            institution_uscc: unit,
            period: "2024-03".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .lines;
    let mut ids: Vec<String> = stored.iter().map(|l| l.record_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["pay-0", "pay-1", "pay-3", "pay-4", "pay-9"]);
}

async fn a_resent_stream_is_recognised_record_by_record(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let events: Vec<_> = (0..20)
        .map(|n| hire(&format!("hire-{n}"), &resident(n), &unit, "2021-01-01"))
        .collect();
    let mut hr = app.hr("140100").await;
    let first = hr
        .push_personnel_events(tokio_stream::iter(events.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.accepted, 20);

    // The sender lost the answer and sends everything again, with one new record and one changed.
    let mut resend = events.clone();
    resend.push(hire("hire-20", &resident(20), &unit, "2021-01-01"));
    resend[3].rank = proto::Rank::Officer as i32;
    let second = hr
        .push_personnel_events(tokio_stream::iter(resend))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (second.accepted, second.replayed, second.rejected),
        (1, 19, 1)
    );
    assert_eq!(
        second.results[3].error.as_ref().unwrap().code,
        "ALREADY_EXISTS"
    );
    assert_eq!(second.results[0].accepted_at, first.results[0].accepted_at);

    let roll = app
        .query("140100", AgencyKind::Hr)
        .await
        .list_roll(proto::ListRollRequest {
            uscc: unit,
            as_of: "2022-01-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(roll.entries.len(), 21, "nobody counted twice");
}

async fn a_stream_spanning_batches_keeps_stream_order(backend: Backend) {
    // Small batches so that a hire and the departure after it land in different transactions.
    let app = TestApp::spawn_with(
        backend,
        Limits {
            batch_size: 3,
            ..Limits::default()
        },
    )
    .await;
    let unit = uscc("140100", 1);
    let mut events = Vec::new();
    for n in 0..5 {
        events.push(hire(
            &format!("hire-{n}"),
            &resident(n),
            &unit,
            "2021-01-01",
        ));
    }
    let mut departure = hire("depart-0", &resident(0), &unit, "2023-06-30");
    departure.event_type = proto::PersonnelEventType::Departure as i32;
    events.push(departure);
    // A return of someone never away does not fit, whatever batch it lands in.
    let mut stray = hire("return-1", &resident(1), &unit, "2022-01-01");
    stray.event_type = proto::PersonnelEventType::Return as i32;
    events.push(stray);
    events.push(hire("hire-9", &resident(9), &unit, "2021-01-01"));

    let response = app
        .hr("140100")
        .await
        .push_personnel_events(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.accepted, response.rejected), (7, 1));
    assert_eq!(
        response.results[6].error.as_ref().unwrap().code,
        "FAILED_PRECONDITION"
    );

    let roll = |as_of: &'static str| {
        let unit = unit.clone();
        let app = &app;
        async move {
            app.query("140100", AgencyKind::Hr)
                .await
                .list_roll(proto::ListRollRequest {
                    uscc: unit,
                    as_of: as_of.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .entries
                .len()
        }
    };
    assert_eq!(roll("2023-06-29").await, 6);
    assert_eq!(roll("2023-06-30").await, 5);
}

async fn records_beyond_the_stream_limit_are_refused_alone(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Limits {
            batch_size: 2,
            max_records_per_stream: 3,
            ..Limits::default()
        },
    )
    .await;
    let unit = uscc("140100", 1);
    let lines: Vec<_> = (0..5)
        .map(|n| payroll(&format!("pay-{n}"), &resident(n), &unit, "2024-03"))
        .collect();
    let response = app
        .finance("140100")
        .await
        .push_payroll_lines(tokio_stream::iter(lines))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.accepted, response.rejected), (3, 2));
    assert_eq!(
        response.results[4].error.as_ref().unwrap().code,
        "RESOURCE_EXHAUSTED"
    );
}

/// A bulk push whose records raise many findings answers within `limits.answer_bytes` (a stock
/// gRPC client reads at most 4 MiB): every record's result is there, the first finding changes
/// whole, and the number left out, which together with those listed is every change made.
async fn a_bulk_answer_keeps_within_its_size_and_counts_what_it_leaves_out(backend: Backend) {
    use prost::Message;
    const BUDGET: usize = 8 * 1024;
    let app = TestApp::spawn_with(
        backend,
        Limits {
            answer_bytes: BUDGET,
            ..Limits::default()
        },
    )
    .await;
    let unit = uscc("140100", 1);
    // Ghost pay: each line raises a finding about someone on no roll.
    let lines: Vec<proto::PayrollLine> = (0..60)
        .map(|n| payroll(&format!("ghost-{n}"), &resident(n), &unit, "2024-03"))
        .collect();
    let response = app
        .finance("140100")
        .await
        .max_decoding_message_size(BUDGET)
        .push_payroll_lines(tokio_stream::iter(lines))
        .await
        .unwrap()
        .into_inner();
    assert!(
        response.encoded_len() <= BUDGET,
        "{}",
        response.encoded_len()
    );
    assert_eq!(response.results.len(), 60);
    assert_eq!(response.accepted, 60);
    let listed: usize = response.results.iter().map(|r| r.findings.len()).sum();
    assert!(listed > 0, "the first changes are listed");
    assert!(response.findings_omitted > 0, "{response:?}");
    // The listed changes are the first ones, whole.
    let first_empty = response
        .results
        .iter()
        .position(|r| r.findings.is_empty())
        .unwrap();
    assert!(
        response.results[first_empty..]
            .iter()
            .all(|r| r.findings.is_empty())
    );
    assert!(
        response.results[0].findings[0]
            .finding
            .as_ref()
            .is_some_and(|f| !f.explanation_zh.is_empty())
    );
    let findings = app
        .store
        .findings(&quotahub::store::reconcile::FindingFilter {
            open: true,
            limit: u32::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed as u64 + response.findings_omitted,
        findings.len() as u64,
        "listed and left out add up to every change"
    );
}

/// A finding a person's rewritten history raises is answered on the first of their records in
/// the stream, whichever of them made it true, and on no one else's.
async fn a_persons_finding_goes_to_their_first_record_in_the_stream(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (here, there) = (uscc("140100", 1), uscc("140100", 2));
    let mut staffing = app.staffing("140100").await;
    for (n, unit) in [&here, &there].into_iter().enumerate() {
        staffing
            .push_institution(organ(&format!("inst-{n}"), unit, "140100"))
            .await
            .unwrap();
    }
    // The second hire of resident 1, elsewhere without leaving, puts them on two rolls.
    let events = vec![
        hire("a-here", &resident(1), &here, "2021-01-01"),
        hire("b-here", &resident(2), &here, "2021-01-01"),
        hire("a-there", &resident(1), &there, "2022-01-01"),
    ];
    let response = app
        .hr("140100")
        .await
        .push_personnel_events(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted, 3);
    let duplicates = |i: usize| {
        response.results[i]
            .findings
            .iter()
            .filter_map(|change| change.finding.as_ref())
            .filter(|f| f.code == proto::RuleCode::DuplicateEnrollment as i32)
            .count()
    };
    assert_eq!(
        [duplicates(0), duplicates(1), duplicates(2)],
        [1, 0, 0],
        "{response:?}"
    );
}
