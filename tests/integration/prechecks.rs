//! Pre-checks against the oracle: for random sequences of pushes by every agency, CheckHire and
//! VerifyFunding on the store (the act's keys decided from a handful of reads, `store::precheck`)
//! answer exactly as the snapshot engine does over everything the institution and the person
//! have (`domain::precheck::check_hire`, `verify_funding`): the verdict, every reason and every
//! number beside it, on both backends.

use proptest::prelude::*;
use quotahub::domain::findings::Scope;
use quotahub::domain::ids::normalize_document_number;
use quotahub::domain::precheck::{self, FundingQuestion, HireAnswer, HireQuestion};
use quotahub::domain::{
    AgencyKind, HiringChannel, LeaderLevel, LeaderPosition, Period, QuotaCategory, ResidentId, Uscc,
};

use crate::helpers::*;
use crate::incremental::{Op, op, pushed_on};

/// A hire to ask about, drawn over the same four institutions and six people as the pushes.
#[derive(Debug, Clone)]
struct Ask {
    unit: u8,
    /// `None` for someone nobody has heard of.
    person: Option<u8>,
    cited: bool,
    channel: Option<bool>,
    post: bool,
    /// Days before the check date.
    back: u16,
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        0u8..4,
        prop::option::weighted(0.8, 0u8..6),
        any::<bool>(),
        prop::option::of(any::<bool>()),
        prop::bool::weighted(0.3),
        prop_oneof![Just(0u16), 0u16..1300],
    )
        .prop_map(|(unit, person, cited, channel, post, back)| Ask {
            unit,
            person,
            cited,
            channel,
            post,
            back,
        })
}

fn question(ask: &Ask, today: chrono::NaiveDate) -> HireQuestion {
    HireQuestion {
        institution: Uscc::parse(&uscc("140100", u32::from(ask.unit) + 1)).unwrap(),
        category: QuotaCategory::Administrative,
        channel: ask.channel.map(|reserve| {
            if reserve {
                HiringChannel::PolicyPlacement
            } else {
                HiringChannel::OpenRecruitment
            }
        }),
        approval_number: ask
            .cited
            .then(|| normalize_document_number("并编审〔2020〕7号")),
        resident_id: ask
            .person
            .map(|p| ResidentId::parse(&resident(u32::from(p))).unwrap()),
        post: ask
            .post
            .then_some((LeaderLevel::Division, LeaderPosition::Deputy)),
        rank: None,
        date: today - chrono::Days::new(u64::from(ask.back)),
    }
}

/// What an answer says, reasons in a stable order.
fn said(answer: &HireAnswer) -> String {
    let mut reasons: Vec<String> = answer
        .reasons
        .iter()
        .map(|r| format!("{:?} {:?} {}", r.code, r.verdict, r.message))
        .collect();
    reasons.sort();
    format!(
        "{:?} {reasons:?} quota={} active={} plan={}/{} approval={}/{} posts={}/{} elsewhere={:?} \
         reserve={}/{}/{}",
        answer.verdict,
        answer.approved_quota,
        answer.active,
        answer.plan_approved,
        answer.plan_used,
        answer.approval_entries,
        answer.approval_used,
        answer.posts_approved,
        answer.posts_occupied,
        answer.other_institutions,
        answer.reserve_kept,
        answer.reserve_needed,
        answer.reserve_eaten,
    )
}

async fn prechecks_equal_the_oracle(
    backend: Backend,
    ops: Vec<Op>,
    asks: Vec<Ask>,
) -> Result<(), TestCaseError> {
    let (_db, store) = pushed_on(backend, &ops).await;
    let config = &store.checks().rules;
    let today = store.checks().clock.today();
    let hr = agency("140100", AgencyKind::Hr);
    let finance = agency("140100", AgencyKind::Finance);

    for ask in &asks {
        let question = question(ask, today);
        let person = question
            .resident_id
            .clone()
            .unwrap_or_else(|| ResidentId::parse(&resident(999)).unwrap());
        let scope = Scope {
            everything: false,
            institutions: [question.institution.to_string()].into_iter().collect(),
            residents: [person.to_string()].into_iter().collect(),
        };
        let snapshot = store.snapshot_for(&scope).await.unwrap();
        let oracle = precheck::check_hire(&snapshot, &question, config);
        let answered = store.check_hire(&hr, &question).await.unwrap();
        prop_assert_eq!(said(&answered), said(&oracle), "{:?}", question);

        let funding = FundingQuestion {
            institution: question.institution.clone(),
            category: QuotaCategory::Administrative,
            period: Period::parse(&format!("2024-{:02}", 3 + ask.back % 4)).unwrap(),
            headcount: u32::from(ask.back % 5),
            amount_fen: i64::from(ask.back % 5) * 100,
        };
        let oracle = precheck::verify_funding(&snapshot, &funding, config);
        let answered = store.verify_funding(&finance, &funding).await.unwrap();
        prop_assert_eq!(
            format!("{answered:?}"),
            format!("{oracle:?}"),
            "{:?}",
            funding
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn prechecks_answer_as_the_oracle_does(
        ops in prop::collection::vec(op(), 1..45),
        asks in prop::collection::vec(ask(), 1..6),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(prechecks_equal_the_oracle(Backend::Sqlite, ops, asks))?;
    }
}

proptest! {
    // A database per case: fewer cases, the same code paths in the other dialect.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn on_postgres_prechecks_answer_as_the_oracle_does(
        ops in prop::collection::vec(op(), 1..45),
        asks in prop::collection::vec(ask(), 1..6),
    ) {
        if postgres_given() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(prechecks_equal_the_oracle(Backend::Postgres, ops, asks))?;
        }
    }
}
