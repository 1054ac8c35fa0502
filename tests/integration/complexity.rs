//! What a push's check reads is bounded by its dirty keys, not by the history it touches: the same
//! act (a hire, a payroll line, a funding, an exit) reads the same number of rows whether it lands
//! in a 5,000-person institution with ten years of payroll or in a 10-person one. Work is counted
//! (rows the checks read, `Store::check_reads`), never timed.

use quotahub::api::convert::Pushed;
use quotahub::clock::Clock;
use quotahub::domain::findings::Scope;
use quotahub::domain::ids::resident_id_with_check;
use quotahub::domain::precheck::{FundingQuestion, HireQuestion};
use quotahub::domain::{
    Agency, AgencyKind, LeaderLevel, LeaderPosition, QuotaCategory, ResidentId,
};
use quotahub::proto;
use quotahub::store::roll_now::RollReadCounts;
use quotahub::store::{Store, StoreOptions};

use crate::helpers::*;

/// A resident ID for person `n` of this test (unique for n below 1,000,000).
fn person(n: u32) -> String {
    let birth = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
        + chrono::Days::new(u64::from(n / 1000));
    resident_id_with_check(&format!("140105{}{:03}", birth.format("%Y%m%d"), n % 1000))
        .expect("valid id")
        .to_string()
}

async fn push<P: Pushed>(store: &Store, agency: &Agency, messages: Vec<P>) {
    let submissions: Vec<_> = messages
        .into_iter()
        .map(|m| m.to_submission().expect("valid record"))
        .collect();
    for verdict in store.push(agency, &submissions).await.unwrap() {
        verdict.expect("accepted");
    }
}

fn approval(
    id: &str,
    number: &str,
    institution: &str,
    year: i32,
    entries: u32,
) -> proto::HiringApproval {
    proto::HiringApproval {
        record_id: id.into(),
        approval_number: number.into(),
        institution_uscc: institution.into(),
        category: proto::QuotaCategory::Administrative as i32,
        approved_entries: entries,
        issued_on: format!("{year}-01-01"),
        valid_until: format!("{year}-12-31"),
    }
}

fn event(
    id: &str,
    kind: proto::PersonnelEventType,
    who: &str,
    institution: &str,
    on: &str,
    number: &str,
) -> proto::PersonnelEvent {
    proto::PersonnelEvent {
        event_type: kind as i32,
        approval_number: number.into(),
        ..hire(id, who, institution, on)
    }
}

fn funding(id: &str, institution: &str, period: &str) -> proto::Funding {
    proto::Funding {
        record_id: id.into(),
        institution_uscc: institution.into(),
        category: proto::QuotaCategory::Administrative as i32,
        period: period.into(),
        funded_headcount: 1,
        amount_fen: 100,
    }
}

/// An institution with `people` hired over 2014–2023 (a tenth of them gone since), each year's
/// hires under that year's approval, paid every month of those ten years and funded every month.
async fn plant(store: &Store, n: u32, people: u32, first_person: u32) -> String {
    let office = agency("140100", AgencyKind::StaffingOffice);
    let hr = agency("140100", AgencyKind::Hr);
    let finance = agency("140100", AgencyKind::Finance);
    let unit = uscc("140100", n);
    push(
        store,
        &office,
        vec![organ(&format!("i{n}"), &unit, "140100")],
    )
    .await;
    push(
        store,
        &office,
        vec![quota(&format!("q{n}"), &unit, people * 2)],
    )
    .await;
    let number = |year: i32| format!("并编审〔{year}〕{n}号");
    let approvals = (2014..=2024)
        .map(|year| approval(&format!("a{n}-{year}"), &number(year), &unit, year, people))
        .collect();
    push(store, &office, approvals).await;

    let mut events = Vec::new();
    for k in 0..people {
        let who = person(first_person + k);
        let year = 2014 + (k % 10) as i32;
        let on = format!("{year}-03-01");
        let kind = proto::PersonnelEventType::Hire;
        events.push(event(
            &format!("h{n}-{k}"),
            kind,
            &who,
            &unit,
            &on,
            &number(year),
        ));
        if k % 10 == 9 {
            let kind = proto::PersonnelEventType::Departure;
            let off = format!("{}-09-01", year.min(2022) + 1);
            events.push(event(&format!("d{n}-{k}"), kind, &who, &unit, &off, ""));
        }
    }
    push(store, &hr, events).await;

    let months: Vec<String> = (2014..=2023)
        .flat_map(|year| (1..=12).map(move |m| format!("{year}-{m:02}")))
        .collect();
    let fundings = months
        .iter()
        .map(|period| funding(&format!("f{n}-{period}"), &unit, period))
        .collect();
    push(store, &finance, fundings).await;

    // Ten years of payroll for everyone who was there, straight into the table: the history the
    // checks must not read (pushing 600,000 lines one by one would only make the test slow).
    let values = months
        .iter()
        .map(|m| format!("('{m}')"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH months(period) AS (VALUES {values}) \
         INSERT INTO payroll_lines (agency_id, record_id, period, institution_uscc, resident_id, name, gross_fen, accepted_at) \
         SELECT '{agency}', 'hist-' || p.resident_id || '-' || m.period, m.period, p.institution_uscc, p.resident_id, '王五', 650000, 0 \
         FROM (SELECT DISTINCT resident_id, institution_uscc FROM person_spells WHERE institution_uscc = '{unit}') p CROSS JOIN months m",
        agency = finance.id()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(store.readers())
        .await
        .unwrap();
    unit
}

/// The date the tests check on: the planted histories run to 2023, their approvals to 2024.
fn check_date() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2024, 6, 15).unwrap()
}

/// A store whose clock is on [`check_date`] (the clock, for a test that moves it), its push
/// checks off while the test plants history.
async fn planting(db: &TestDb) -> (Store, Clock) {
    let clock = Clock::on(check_date());
    let store = db.store_on(&clock).await;
    store.set_push_checks(false);
    (store, clock)
}

/// Statements a pre-check may issue on its read connection (a statement asked again is answered
/// from what it read): each costs a plan's start and its index descents, most of a pre-check's
/// time on SQLite; the bound keeps them few. A hire of a newcomer citing an approval onto a
/// leader's post issues 16: the approval's use is what settling its draws read, and an entry's
/// kinds (hire, transfer) are read in one statement.
const MAX_PRECHECK_STATEMENTS: u64 = 16;

/// Rows the checks read for one push.
async fn reads_of<P: Pushed>(store: &Store, agency: &Agency, message: P) -> u64 {
    let before = store.check_reads().rows();
    push(store, agency, vec![message]).await;
    store.check_reads().rows() - before
}

async fn a_push_reads_what_its_keys_name_whatever_the_history(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (store, _) = planting(&db).await;
    let big = plant(&store, 1, 5_000, 0).await;
    let small = plant(&store, 2, 10, 100_000).await;
    let lines: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payroll_lines")
        .fetch_one(store.readers())
        .await
        .unwrap();
    assert_eq!(
        lines,
        (5_000 + 10) * 120,
        "ten years of payroll are planted"
    );
    store.set_push_checks(true);

    let hr = agency("140100", AgencyKind::Hr);
    let finance = agency("140100", AgencyKind::Finance);
    let today = "2024-06-15";

    // The pre-checks too: the same reads, and the same few statements, whatever the history.
    let mut asked = Vec::new();
    for (n, unit, stayer) in [(1, &big, person(0)), (2, &small, person(100_000))] {
        let institution = quotahub::domain::Uscc::parse(unit).unwrap();
        let date = check_date();
        let hire = HireQuestion {
            institution: institution.clone(),
            category: QuotaCategory::Administrative,
            channel: None,
            approval_number: Some(format!("并编审〔2024〕{n}号")),
            resident_id: Some(ResidentId::parse(&person(600_000 + n)).unwrap()),
            post: Some((LeaderLevel::Division, LeaderPosition::Principal)),
            rank: None,
            date,
        };
        let mover = HireQuestion {
            resident_id: Some(ResidentId::parse(&stayer).unwrap()),
            post: None,
            approval_number: None,
            ..hire.clone()
        };
        let fund = FundingQuestion {
            institution,
            category: QuotaCategory::Administrative,
            period: quotahub::domain::Period::parse("2024-06").unwrap(),
            headcount: 3,
            amount_fen: 300,
        };
        let work = |before: (u64, u64, u64)| {
            let reads = store.check_reads();
            (
                reads.rows() - before.0,
                reads.statements() - before.1,
                reads.steps() - before.2,
            )
        };
        let now = || {
            let reads = store.check_reads();
            (reads.rows(), reads.statements(), reads.steps())
        };
        let start = now();
        store.check_hire(&hr, &hire).await.unwrap();
        let hired = work(start);
        let start = now();
        store.check_hire(&hr, &mover).await.unwrap();
        let moved = work(start);
        let start = now();
        store.verify_funding(&finance, &fund).await.unwrap();
        let funded = work(start);
        asked.push([hired, moved, funded]);
    }
    eprintln!(
        "pre-checks' (rows, statements, SQLite steps) [hire, someone already here, funding]: large {:?}, small {:?}",
        asked[0], asked[1]
    );
    let counted = |asked: &[(u64, u64, u64)]| -> Vec<(u64, u64)> {
        asked
            .iter()
            .map(|&(rows, statements, _)| (rows, statements))
            .collect()
    };
    assert_eq!(
        counted(&asked[0]),
        counted(&asked[1]),
        "a pre-check reads as much in a 5,000-person institution with ten years of payroll as in \
         a 10-person one (large, small)"
    );
    // SQLite's steps count the rows it looked at, not only those it returned: a read sought by
    // the institution's history instead of by its key takes thousands more in the large one. They
    // are not equal to the step: a scan of the large institution's index entries looks at the next
    // entry (the small one's) to see its range end, where the small one's ends with the index.
    for (large, small) in asked[0].iter().zip(&asked[1]) {
        assert!(
            large.2 <= small.2 + small.2 / 10,
            "a pre-check's SQLite steps do not grow with the history: large {large:?}, small {small:?}"
        );
    }
    for (rows, statements, _) in asked[0] {
        assert!(rows < 60, "a pre-check reads a handful of rows, not {rows}");
        assert!(
            statements <= MAX_PRECHECK_STATEMENTS,
            "a pre-check issues at most {MAX_PRECHECK_STATEMENTS} statements, not {statements}"
        );
    }
    let mut read = Vec::new();
    for (n, unit, stayer) in [(1, &big, person(0)), (2, &small, person(100_000))] {
        let newcomer = person(500_000 + n);
        let number = format!("并编审〔2024〕{n}号");
        let kind = proto::PersonnelEventType::Hire;
        let hired = reads_of(
            &store,
            &hr,
            event(&format!("new{n}"), kind, &newcomer, unit, today, &number),
        )
        .await;
        let paid = reads_of(
            &store,
            &finance,
            payroll(&format!("pay{n}"), &stayer, unit, "2024-06"),
        )
        .await;
        let funded = reads_of(
            &store,
            &finance,
            funding(&format!("fund{n}"), unit, "2024-06"),
        )
        .await;
        let kind = proto::PersonnelEventType::Departure;
        let left = reads_of(
            &store,
            &hr,
            event(&format!("off{n}"), kind, &stayer, unit, today, ""),
        )
        .await;
        read.push([hired, paid, funded, left]);
    }
    eprintln!(
        "rows read [hire, pay, fund, exit]: large {:?}, small {:?}",
        read[0], read[1]
    );
    assert_eq!(
        read[0], read[1],
        "a hire, a payroll line, a funding and an exit read as much in a 5,000-person institution \
         with ten years of payroll as in a 10-person one (rows: large, small)"
    );
    for rows in read[0] {
        assert!(
            rows > 0 && rows < 60,
            "a push reads a handful of rows, not {rows}"
        );
    }

    // A hire backdated before every other entry, citing an approval of its own: every later entry
    // of the institution keeps its verdict (they cite other numbers), so none of them is read.
    // (A year of its own, too: its plan's evidence samples that year's entries.)
    let office = agency("140100", AgencyKind::StaffingOffice);
    let mut backdated = Vec::new();
    for (n, unit) in [(1, &big), (2, &small)] {
        let number = format!("并编审〔2013〕特{n}号");
        push(
            &store,
            &office,
            vec![approval(&format!("special{n}"), &number, unit, 2013, 1)],
        )
        .await;
        let kind = proto::PersonnelEventType::Hire;
        let late = person(700_000 + n);
        let on = "2013-05-01";
        backdated.push(
            reads_of(
                &store,
                &hr,
                event(&format!("late{n}"), kind, &late, unit, on, &number),
            )
            .await,
        );
    }
    eprintln!(
        "rows read by a backdated hire: large {}, small {}",
        backdated[0], backdated[1]
    );
    assert_eq!(
        backdated[0], backdated[1],
        "a hire backdated before ten years of entries reads as much in a 5,000-person \
         institution as in a 10-person one (rows: large, small)"
    );

    // A hire citing a number whose one approval has room left (a year's 500 entries of 5,000
    // approved in the large institution, 1 of 10 in the small): no entry citing it can run out,
    // so no other entry's verdict moves, and none of them is read, only their count.
    let mut roomy = Vec::new();
    for (n, unit) in [(1, &big), (2, &small)] {
        let number = format!("并编审〔2014〕{n}号");
        let kind = proto::PersonnelEventType::Hire;
        let newcomer = person(800_000 + n);
        roomy.push(
            reads_of(
                &store,
                &hr,
                event(&format!("roomy{n}"), kind, &newcomer, unit, today, &number),
            )
            .await,
        );
    }
    eprintln!(
        "rows read by a hire on an approval with room: large {}, small {}",
        roomy[0], roomy[1]
    );
    assert_eq!(
        roomy[0], roomy[1],
        "a hire citing an approval 500 entries drew on reads as much as one citing an approval \
         one entry drew on (rows: large, small)"
    );

    // A finance office's file funds many months at once: their rolls are read in one statement,
    // so the file issues as many statements as a single funding does.
    let statements_of = |messages: Vec<proto::Funding>| {
        let (store, finance) = (store.clone(), finance.clone());
        async move {
            let before = store.check_reads().statements();
            push(&store, &finance, messages).await;
            store.check_reads().statements() - before
        }
    };
    let one = statements_of(vec![funding("again-one", &big, "2024-05")]).await;
    let year = statements_of(
        (1..=12)
            .map(|m| funding(&format!("again-{m}"), &big, &format!("2023-{m:02}")))
            .collect(),
    )
    .await;
    assert_eq!(
        year, one,
        "a file funding twelve months issues as many statements as one funding (year, one)"
    );
}

/// REGIONAL_BALANCE (the console's overview) reads one kept row per roll for the hub's date,
/// however long the rolls' history; a roll whose next change has come since is sought in the
/// history (one seek), until the schedule keeps it as of the new date again.
async fn the_balance_reads_one_row_per_roll_whatever_the_history(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (store, clock) = planting(&db).await;
    // Ten years of hires and exits: 300 people on one roll, 10 on another.
    let large = plant(&store, 1, 300, 0).await;
    let small = plant(&store, 2, 10, 100_000).await;
    // Someone of the small roll leaves in September: its count changes after today.
    let hr = agency("140100", AgencyKind::Hr);
    let kind = proto::PersonnelEventType::Departure;
    push(
        &store,
        &hr,
        vec![event(
            "later",
            kind,
            &person(100_000),
            &small,
            "2024-09-01",
            "",
        )],
    )
    .await;
    store.set_push_checks(true);

    let active_on = |day: &str| {
        let store = store.clone();
        let day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
        async move {
            let before = store.roll_reads();
            let rows = store.regional_balance(None, day).await.unwrap();
            let after = store.roll_reads();
            let active: i64 = rows.iter().map(|row| row.active).sum();
            let read = RollReadCounts {
                kept: after.kept - before.kept,
                seeks: after.seeks - before.seeks,
            };
            (active, read)
        }
    };
    let today = active_on("2024-06-15").await;
    assert_eq!(
        today,
        (270 + 9, RollReadCounts { kept: 2, seeks: 0 }),
        "today: 300 hired less 30 gone, 10 less 1; one kept row per roll, no history read"
    );
    let earlier = active_on("2018-01-01").await;
    assert_eq!(
        earlier.1,
        RollReadCounts { kept: 0, seeks: 2 },
        "a date before the kept rows: one seek per roll"
    );
    assert_eq!(
        earlier.0,
        store
            .snapshot_for(&Scope {
                institutions: [large.clone(), small.clone()].into(),
                ..Scope::default()
            })
            .await
            .map(|snapshot| quotahub::domain::rules::regional_balance(
                &snapshot,
                chrono::NaiveDate::from_ymd_opt(2018, 1, 1).unwrap()
            ))
            .unwrap()
            .iter()
            .map(|row| row.active)
            .sum::<i64>(),
        "the history's count is the snapshot's"
    );

    // September comes: the small roll's kept row no longer holds, and is sought until the
    // schedule keeps it as of the new date.
    clock.advance(chrono::Duration::days(100));
    let autumn = active_on("2024-09-23").await;
    assert_eq!(autumn, (270 + 8, RollReadCounts { kept: 1, seeks: 1 }));
    let refreshed = store
        .refresh_rolls(chrono::NaiveDate::from_ymd_opt(2024, 9, 23).unwrap())
        .await
        .unwrap();
    assert_eq!(refreshed, 1, "one roll's next change had come");
    let after = active_on("2024-09-23").await;
    assert_eq!(after, (270 + 8, RollReadCounts { kept: 2, seeks: 0 }));
}

/// A CheckHire reads the counts of the rolls it decides in one statement: the hire's roll on its
/// date with the roll on the last day of each funded month the hire counts in (the funded heads
/// against the people), and the answer's headcount from what the decision read. A hire into an
/// institution funded for the month issues as many statements as one into an unfunded one
/// (on the city on PostgreSQL, a round trip of about fifteen).
async fn a_hire_check_reads_its_rolls_counts_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (store, _) = planting(&db).await;
    let funded = plant(&store, 1, 10, 0).await;
    let unfunded = plant(&store, 2, 10, 100_000).await;
    let finance = agency("140100", AgencyKind::Finance);
    push(&store, &finance, vec![funding("june", &funded, "2024-06")]).await;
    store.set_push_checks(true);

    let hr = agency("140100", AgencyKind::Hr);
    let mut asked = Vec::new();
    for (n, unit) in [(1, &funded), (2, &unfunded)] {
        let question = HireQuestion {
            institution: quotahub::domain::Uscc::parse(unit).unwrap(),
            category: QuotaCategory::Administrative,
            channel: None,
            approval_number: Some(format!("并编审〔2024〕{n}号")),
            resident_id: Some(ResidentId::parse(&person(700_000 + n)).unwrap()),
            post: None,
            rank: None,
            date: check_date(),
        };
        let before = store.check_reads().statements();
        let answer = store.check_hire(&hr, &question).await.unwrap();
        asked.push((store.check_reads().statements() - before, answer.active));
    }
    eprintln!(
        "CheckHire (statements, headcount): funded {:?}, unfunded {:?}",
        asked[0], asked[1]
    );
    assert_eq!(
        asked[0].0, asked[1].0,
        "a hire check in an institution funded for the month issues as many statements as in an \
         unfunded one (funded, unfunded)"
    );
    assert_eq!(
        (asked[0].1, asked[1].1),
        (9, 9),
        "the answer's headcount is the roll's (ten hired, one gone)"
    );
}

crate::on_both_backends!(
    a_push_reads_what_its_keys_name_whatever_the_history,
    a_hire_check_reads_its_rolls_counts_once,
    the_balance_reads_one_row_per_roll_whatever_the_history
);

/// A retried batch looks up its own records' keys, not the agency's whole history of that kind:
/// PostgreSQL without statistics (a fresh or bulk-loaded table, autovacuum behind) read every
/// record of the agency and kind for each batch when the keys came as a list of parameters, so
/// the repeated import of a city's payroll slowed from 4,652 to 477 rows/s. Counted from the
/// table's own statistics (rows fetched), [`fetched_for`] the push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_retry_reads_its_own_keys_not_the_agencys_history() {
    if !postgres_given() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let finance = agency("140100", AgencyKind::Finance);
    let unit = uscc("140100", 1);
    let lines = |from: u32, to: u32| -> Vec<proto::PayrollLine> {
        (from..to)
            .map(|n| payroll(&format!("line-{n}"), &person(n), &unit, "2024-05"))
            .collect()
    };
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .unwrap();
    store.set_push_checks(false);
    for start in (0..20_000).step_by(5_000) {
        push(&store, &finance, lines(start, start + 5_000)).await;
    }
    store.close().await;
    let read = fetched_for(db.url(), "pushed_records", async |store: &Store| {
        store.set_push_checks(false);
        push(store, &finance, lines(10_000, 10_100)).await;
    })
    .await;
    eprintln!("a retry of 100 lines read {read} pushed records");
    assert!(
        (100..=2 * 100).contains(&read),
        "a retry of 100 lines read {read} of the agency's 20,000 pushed records"
    );

    // A checked hire reads the newcomer's spells by key, not the 5,000 people's (into a
    // registered institution within its quota, so that no finding cites its roll).
    let store = registered(db.url(), &unit).await;
    let hr = agency("140100", AgencyKind::Hr);
    let hires = (0..5_000)
        .map(|n| hire(&format!("h{n}"), &person(n), &unit, "2024-01-01"))
        .collect();
    push(&store, &hr, hires).await;
    store.close().await;
    let read = fetched_for(db.url(), "person_spells", async |store: &Store| {
        let newcomer = hire("new", &person(9_999), &unit, "2024-06-01");
        push(store, &hr, vec![newcomer]).await;
    })
    .await;
    eprintln!("a checked hire read {read} spells");
    assert!(
        read <= 20,
        "a checked hire read {read} of 5,000 people's spells"
    );
}

/// A store with its checks off, `unit` registered in it with a quota of 10,000.
async fn registered(url: &str, unit: &str) -> Store {
    let store = Store::connect(url, &StoreOptions::default()).await.unwrap();
    store.set_push_checks(false);
    let office = agency("140100", AgencyKind::StaffingOffice);
    push(&store, &office, vec![organ("i1", unit, "140100")]).await;
    push(&store, &office, vec![quota("q1", unit, 10_000)]).await;
    store
}

/// Rows PostgreSQL fetched from `table` for `work` on a store of one connection a pool: those of
/// opening a store, `work` and closing it, less those of opening and closing one (its kept
/// counts are filled from the history once), each counted once the connections have closed.
async fn fetched_for(url: &str, table: &str, work: impl AsyncFnOnce(&Store)) -> i64 {
    let options = StoreOptions {
        max_connections: 1,
        ..StoreOptions::default()
    };
    let start = fetched_after_close(url, table).await;
    Store::connect(url, &options).await.unwrap().close().await;
    let opened = fetched_after_close(url, table).await;
    let store = Store::connect(url, &options).await.unwrap();
    work(&store).await;
    store.close().await;
    let worked = fetched_after_close(url, table).await;
    (worked - opened) - (opened - start)
}

/// Rows PostgreSQL has fetched from `table` (scanned or by index) once the connections that read
/// it have closed: a backend flushes its counts when it exits, where an idle one may hold them for
/// ten seconds. Read until two readings agree, since the exit is not waited for.
async fn fetched_after_close(url: &str, table: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let mut last = -1;
    loop {
        let (seq, idx): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(seq_tup_read, 0), COALESCE(idx_tup_fetch, 0) \
             FROM pg_stat_user_tables WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(&pool)
        .await
        .unwrap();
        if seq + idx == last {
            pool.close().await;
            return last;
        }
        last = seq + idx;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// A CheckHire citing an approval reads the approval's entries, not the institution's hires:
/// PostgreSQL without statistics (a table never analyzed) sought the count of an approval's use
/// by the institution and the event type, and read every hire the institution ever had. Counted
/// from the table's own statistics, [`fetched_for`] the CheckHire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_hire_check_reads_its_approval_not_the_institution_s_hires() {
    if !postgres_given() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let unit = uscc("140100", 1);
    let (earlier, cited) = ("并编审〔2023〕1号", "并编审〔2024〕1号");
    {
        let store = registered(db.url(), &unit).await;
        let office = agency("140100", AgencyKind::StaffingOffice);
        let approvals = vec![
            approval("a1", earlier, &unit, 2023, 5_000),
            approval("a2", cited, &unit, 2024, 10),
        ];
        push(&store, &office, approvals).await;
        let hr = agency("140100", AgencyKind::Hr);
        let kind = proto::PersonnelEventType::Hire;
        let mut hires: Vec<_> = (0..3_000)
            .map(|n| {
                event(
                    &format!("h{n}"),
                    kind,
                    &person(n),
                    &unit,
                    "2023-03-01",
                    earlier,
                )
            })
            .collect();
        hires.push(event(
            "h-new",
            kind,
            &person(3_000),
            &unit,
            "2024-03-01",
            cited,
        ));
        push(&store, &hr, hires).await;
        store.close().await;
    }
    let hire = HireQuestion {
        institution: quotahub::domain::Uscc::parse(&unit).unwrap(),
        category: QuotaCategory::Administrative,
        channel: None,
        approval_number: Some(cited.to_owned()),
        resident_id: Some(ResidentId::parse(&person(9_999)).unwrap()),
        post: None,
        rank: None,
        date: check_date(),
    };
    let hr = agency("140100", AgencyKind::Hr);
    let asked = fetched_for(db.url(), "personnel_events", async |store: &Store| {
        let answer = store.check_hire(&hr, &hire).await.unwrap();
        assert_eq!(
            answer.approval_used, 1,
            "the approval's one entry is counted"
        );
    })
    .await;
    eprintln!("a CheckHire read {asked} personnel events");
    assert!(
        asked <= 20,
        "a CheckHire read {asked} personnel events of an institution with 3,001 hires, one \
         citing its approval"
    );
}

/// A push's statements keep their texts whatever the number of rolls, records or keys it moves:
/// PostgreSQL parses and plans each new text (and `sqlx` prepares it on every connection), so a
/// text per batch size costs each batch a prepare, and the cache's room. Counted as the statements
/// prepared on the store's one native connection: once a push of one hire and one of two have run
/// (a single key is sought by a text of its own, a set by another), pushes of three and of four
/// hires into other institutions prepare none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_push_prepares_the_same_statements_whatever_it_moves() {
    if !postgres_given() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let options = StoreOptions {
        max_connections: 1,
        ..StoreOptions::default()
    };
    let store = Store::connect(db.url(), &options).await.unwrap();
    let office = agency("140100", AgencyKind::StaffingOffice);
    let hr = agency("140100", AgencyKind::Hr);
    let units: Vec<String> = (1..=10).map(|n| uscc("140100", n)).collect();
    for (n, unit) in units.iter().enumerate() {
        push(
            &store,
            &office,
            vec![organ(&format!("i{n}"), unit, "140100")],
        )
        .await;
        push(&store, &office, vec![quota(&format!("q{n}"), unit, 10)]).await;
    }
    let hires = |from: usize, to: usize| -> Vec<proto::PersonnelEvent> {
        (from..to)
            .map(|n| hire(&format!("h{n}"), &person(n as u32), &units[n], "2024-03-01"))
            .collect()
    };
    let prepared = async || store.native_statements_prepared().await.unwrap().unwrap();
    push(&store, &hr, hires(0, 1)).await;
    push(&store, &hr, hires(1, 3)).await;
    let seen = prepared().await;
    push(&store, &hr, hires(3, 6)).await;
    let three = prepared().await;
    push(&store, &hr, hires(6, 10)).await;
    let four = prepared().await;
    eprintln!("statements prepared: after one hire and two {seen}, three {three}, four {four}");
    assert_eq!(
        (three, four),
        (seen, seen),
        "pushes moving three and four rolls prepared statements of their own"
    );

    // So do payroll lines and fundings, paying and funding one institution, two, three, four.
    let finance = agency("140100", AgencyKind::Finance);
    let lines = |from: usize, to: usize| -> Vec<proto::PayrollLine> {
        (from..to)
            .map(|n| payroll(&format!("p{n}"), &person(n as u32), &units[n], "2024-04"))
            .collect()
    };
    let funded = |from: usize, to: usize| -> Vec<proto::Funding> {
        (from..to)
            .map(|n| funding(&format!("f{n}"), &units[n], "2024-04"))
            .collect()
    };
    for (from, to) in [(0, 1), (1, 3)] {
        push(&store, &finance, lines(from, to)).await;
        push(&store, &finance, funded(from, to)).await;
    }
    let seen = prepared().await;
    let mut grown = Vec::new();
    for (from, to) in [(3, 6), (6, 10)] {
        push(&store, &finance, lines(from, to)).await;
        push(&store, &finance, funded(from, to)).await;
        grown.push(prepared().await - seen);
    }
    eprintln!("payroll and funding: {seen} prepared, then {grown:?} more");
    assert_eq!(
        grown,
        [0, 0],
        "payroll lines and fundings prepared statements by size"
    );
}

/// An audit append on PostgreSQL is one round trip while the trail's head is where this hub's
/// last append left it: every answered call appends (the trail's task batches what arrives
/// together), so each exchange saved is saved on every call. Counted through a relay that counts
/// the client's exchanges with the server. A checkpoint signed on demand moves the head the hub
/// holds with it. Once another replica has appended, the next append finds the head moved,
/// writes nothing, and locks and reads the head as the first append did (and the one after, as
/// replicas may be taking turns, then finds the head where it left it);
/// the chain, the tree and the checkpoints signed in the one-statement appends stay whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_audit_append_is_one_round_trip_while_the_head_is_the_hubs() {
    use quotahub::audit::Verdict;
    use quotahub::domain::audit::{AuditEntry, LogSigner, open_checkpoint};
    use quotahub::store::trust::{AuditFilter, CheckpointPolicy};
    if !postgres_given() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let relay = PgRelay::start(db.url()).await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit-log.key");
    let public = quotahub::pki::log_key(&key, "test.quotahub/audit-log").unwrap();
    let policy = CheckpointPolicy {
        signer: LogSigner::parse(&std::fs::read_to_string(&key).unwrap()).unwrap(),
        every_entries: 4,
        every_micros: i64::MAX,
    };
    let store = Store::connect(&relay.url, &StoreOptions::default())
        .await
        .unwrap()
        .with_log(policy.clone());
    let other = Store::connect(db.url(), &StoreOptions::default())
        .await
        .unwrap()
        .with_log(policy);
    let entry = call_entry;
    let exchanges = async |store: &Store, entries: Vec<AuditEntry>| {
        let before = relay.exchanges();
        store.append_audit(entries).await.unwrap();
        relay.exchanges() - before
    };

    // The first append locks and reads the head; the second prepares the one statement.
    let first = exchanges(&store, vec![entry(1)]).await;
    exchanges(&store, vec![entry(2)]).await;
    let mut each = Vec::new();
    for n in (3..23).step_by(2) {
        each.push(exchanges(&store, vec![entry(n), entry(n + 1)]).await);
    }
    eprintln!("exchanges: the first append {first}, then {each:?}");
    assert_eq!(each, [1; 10], "appends continuing the hub's own head");

    // A checkpoint signed on demand (as an evidence export's is) moves the head this hub holds.
    let signed = store
        .issue_checkpoint(true)
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(signed.size, 22);
    assert_eq!(exchanges(&store, vec![entry(23)]).await, 1);

    // Another replica appends; this hub's next append finds the head moved. The one after locks
    // and reads the head at once (replicas may be taking turns), finds it where it left it, and
    // the next is one statement again.
    other.append_audit(vec![entry(24)]).await.unwrap();
    let after_the_other = exchanges(&store, vec![entry(25)]).await;
    let locked = exchanges(&store, vec![entry(26)]).await;
    let then = exchanges(&store, vec![entry(27)]).await;
    eprintln!("after another replica's append: {after_the_other}, {locked}, then {then}");
    // The one statement that wrote nothing, then the begin, the head, the entries, the head
    // moved and the commit at least.
    assert!(
        after_the_other >= 6,
        "the append after another replica's took {after_the_other} exchanges"
    );
    assert!(locked >= 5, "{locked} exchanges");
    assert_eq!(then, 1);

    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Whole(27)
    );
    let stored: Vec<AuditEntry> = store
        .audit_entries(&AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.entry)
        .collect();
    assert_eq!(
        store.audit_tree_head().await.unwrap(),
        (27, root_of(&stored))
    );
    let checkpoints = store.audit_checkpoints().await.unwrap();
    assert!(checkpoints.len() >= 5, "{} checkpoints", checkpoints.len());
    for checkpoint in checkpoints {
        let opened = open_checkpoint(&checkpoint.note, &public).unwrap();
        assert_eq!(opened.size, checkpoint.size);
        let size = usize::try_from(checkpoint.size).unwrap();
        assert_eq!(opened.root, root_of(&stored[..size]));
    }
    store.close().await;
    other.close().await;
}

/// While replicas take turns at the trail, a one-statement append would write nothing every time
/// (the head moved since this hub's last append); so after one that wrote nothing, appends lock
/// and read the head at once, until one finds it where this hub left it. Counted as the last
/// test counts: the chain alone (no tree, no checkpoint), so that every locked append is the same
/// five exchanges (the `BEGIN`, the head, the entry, the head moved, the `COMMIT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_replicas_taking_turns_at_the_trail_lock_its_head_at_once() {
    use quotahub::audit::Verdict;
    use quotahub::domain::audit::AuditEntry;
    if !postgres_given() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let relay = PgRelay::start(db.url()).await;
    let store = Store::connect(&relay.url, &StoreOptions::default())
        .await
        .unwrap();
    let other = Store::connect(db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let mut n = 0;
    let mut next = || {
        n += 1;
        vec![call_entry(n)]
    };
    let exchanges = async |store: &Store, entries: Vec<AuditEntry>| {
        let before = relay.exchanges();
        store.append_audit_chain_only(entries).await.unwrap();
        relay.exchanges() - before
    };
    // The locked path's statements, then the one statement, prepared.
    exchanges(&store, next()).await;
    exchanges(&store, next()).await;
    assert_eq!(exchanges(&store, next()).await, 1);

    let mut turns = Vec::new();
    for _ in 0..4 {
        other.append_audit_chain_only(next()).await.unwrap();
        turns.push(exchanges(&store, next()).await);
    }
    let mut alone = Vec::new();
    for _ in 0..3 {
        alone.push(exchanges(&store, next()).await);
    }
    eprintln!("taking turns: {turns:?}; alone again: {alone:?}");
    assert_eq!(turns, [6, 5, 5, 5], "taking turns with another replica");
    assert_eq!(alone, [5, 1, 1], "alone again");
    // Idle past a second, the connection is pinged before use: a round trip, not a statement's.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(exchanges(&store, next()).await, 1, "after a second idle");
    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Whole(15)
    );
    store.close().await;
    other.close().await;
}
