//! The generator's delivery timeline replayed over mutual TLS, and where the hub starts watching
//! data freshness.
//!
//! A small generated city's divisions' agencies push their data on the days they deliver it, the
//! hub's clock on each day, from its first start (their initial load) to the check date, with the
//! freshness schedule's pass on each month's due day (the bench's loader, `bench::ingest::replay`):
//! the LATE_PAYROLL and BACKDATED_EVENT findings then open are exactly the planted ones, the late
//! months were raised and resolved on the way, and nothing was refused. A hub that starts mid-year
//! owes no month due before its first start, however old the months an agency first pushes.

use std::collections::{BTreeSet, HashMap};

use quotahub::domain::AgencyKind;
use quotahub::generator::{GenConfig, generate, late_payroll};
use quotahub::proto;
use quotahub::proto::RuleCode;
use tonic::transport::Channel;

use crate::freshness::{checks, findings_of, move_to, report, row, staffed};
use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_replayed_city_leaves_exactly_its_planted_freshness_findings_open,
    a_hub_started_mid_year_owes_no_month_due_before_its_first_start,
);

type Key = (i32, String, String);

fn keys(findings: &[proto::Finding]) -> BTreeSet<Key> {
    findings
        .iter()
        .map(|f| (f.code, f.institution_uscc.clone(), f.period.clone()))
        .collect()
}

async fn a_replayed_city_leaves_exactly_its_planted_freshness_findings_open(backend: Backend) {
    let config = GenConfig::small(5);
    let data = generate(&config);
    let app = TestApp::spawn_on(backend, data.start).await;
    let mut channels: HashMap<String, Channel> = HashMap::new();
    for delivery in &data.deliveries {
        if let std::collections::hash_map::Entry::Vacant(entry) =
            channels.entry(delivery.agency.id())
        {
            entry.insert(app.channel(&delivery.agency).await);
        }
    }
    let ingest = quotahub::bench::ingest::replay(&data, &app.store, &channels, 1_000)
        .await
        .unwrap();
    for tally in [
        &ingest.staffing,
        &ingest.events,
        &ingest.daily_events,
        &ingest.appointments,
        &ingest.payroll,
        &ingest.fundings,
    ] {
        assert_eq!(tally.rejected, 0, "{}", tally.summary());
        assert_eq!(tally.accepted, tally.sent, "{}", tally.summary());
    }
    assert_eq!(ingest.deliveries, data.deliveries.len());
    assert_eq!(app.store.checks().clock.today(), config.as_of);
    // Each division's HR and finance agency delivered its own data.
    let divisions: BTreeSet<_> = data
        .deliveries
        .iter()
        .map(|d| d.agency.jurisdiction.clone())
        .collect();
    assert!(divisions.len() > 2, "{divisions:?}");

    let freshness = [RuleCode::LatePayroll, RuleCode::BackdatedEvent];
    let mut office = checks(&app, AgencyKind::StaffingOffice).await;
    let mut open = Vec::new();
    for code in freshness {
        open.extend(findings_of(&mut office, code, proto::FindingState::Open).await);
    }
    let planted: BTreeSet<Key> = data
        .truth
        .iter()
        .filter(|p| p.code.about_agency())
        .map(|p| {
            let code = RuleCode::from_str_name(&format!("RULE_CODE_{}", p.code)).unwrap();
            (code as i32, p.institution.clone(), p.period.clone())
        })
        .collect();
    let found = keys(&open);
    assert_eq!(
        found,
        planted,
        "missed {:#?}\nnot planted {:#?}",
        planted.difference(&found).collect::<Vec<_>>(),
        found.difference(&planted).collect::<Vec<_>>()
    );
    for code in freshness {
        let n = planted.iter().filter(|k| k.0 == code as i32).count();
        assert!(n >= 2, "{code:?} planted {n} times");
    }
    for finding in &open {
        // About a division's agency, in its jurisdiction; BACKDATED_EVENT cites its events.
        let (division, kind) = finding.institution_uscc.split_once('/').unwrap();
        assert_eq!(finding.jurisdiction, division);
        if finding.code == RuleCode::LatePayroll as i32 {
            assert_eq!(kind, "finance");
        } else {
            assert_eq!(kind, "hr");
            assert!(finding.actual >= 1);
            assert!(
                finding
                    .evidence
                    .iter()
                    .all(|e| e.kind == "personnel_event"
                        && e.id.starts_with(&finding.institution_uscc)),
                "{finding:?}"
            );
        }
    }

    // The months that came late were raised on their due day and resolved when they arrived.
    let resolved = findings_of(
        &mut office,
        RuleCode::LatePayroll,
        proto::FindingState::Resolved,
    )
    .await;
    let resolved: BTreeSet<(String, String)> = resolved
        .iter()
        .map(|f| (f.institution_uscc.clone(), f.period.clone()))
        .collect();
    let late: BTreeSet<(String, String)> = late_payroll(&data)
        .into_iter()
        .map(|(agency, period)| (agency, period.to_string()))
        .collect();
    assert!(!late.is_empty());
    assert_eq!(resolved, late);
}

async fn a_hub_started_mid_year_owes_no_month_due_before_its_first_start(backend: Backend) {
    let app = TestApp::spawn_on(backend, "2024-07-20".parse().unwrap()).await;
    // One person on the roll since 2024-01-01.
    let unit = staffed(&app).await;
    // The finance agency's initial load: January to June, March missing from its archive.
    let mut finance = app.finance("140100").await;
    for period in ["2024-01", "2024-02", "2024-04", "2024-05", "2024-06"] {
        finance
            .push_payroll_line(payroll(
                &format!("pay-{period}"),
                &resident(1),
                &unit,
                period,
            ))
            .await
            .unwrap();
    }
    let mut office = checks(&app, AgencyKind::StaffingOffice).await;
    let (late, open) = (RuleCode::LatePayroll, proto::FindingState::Open);

    // March was due on 10 April and June on 10 July, before the hub started: nobody watched.
    app.store.check_freshness().await.unwrap();
    assert!(findings_of(&mut office, late, open).await.is_empty());
    let before = report(&mut office).await;
    let finance_row = row(&before, "140100/finance");
    assert!(
        finance_row.awaited_payroll_periods.is_empty(),
        "{finance_row:?}"
    );
    assert_eq!(
        (
            finance_row.next_payroll_period.as_str(),
            finance_row.next_payroll_late_from.as_str()
        ),
        ("2024-07", "2024-08-10")
    );

    // July comes due while the hub watches: that one is late, March still is not.
    move_to(&app, "2024-08-10");
    app.store.check_freshness().await.unwrap();
    assert_eq!(
        keys(&findings_of(&mut office, late, open).await),
        BTreeSet::from([(
            late as i32,
            "140100/finance".to_owned(),
            "2024-07".to_owned()
        )])
    );

    // A hub configured to watch from February (`[freshness] watch_from`) owes March as well.
    let mut configured = app.store.checks().clone();
    configured.cadence.watch_from = "2024-02-01".parse().ok();
    let store = app.store.clone().with_checks(configured);
    store.check_freshness().await.unwrap();
    let periods: BTreeSet<String> = findings_of(&mut office, late, open)
        .await
        .into_iter()
        .map(|f| f.period)
        .collect();
    assert_eq!(
        periods,
        BTreeSet::from(["2024-03".to_owned(), "2024-07".to_owned()])
    );
}
