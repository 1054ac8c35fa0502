//! Measures 3 and 4: the latency of single pushes on the loaded hub, and the throughput and
//! latency of the pre-checks (CheckHire, VerifyFunding) under concurrent callers, against
//! `grpc.health.v1.Health/Check` over the same connections.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::progress;
use super::report::human_duration;
use crate::domain::Period;
use crate::domain::ids::resident_id_with_check;
use crate::generator::Dataset;
use crate::proto;
use crate::proto::finance_service_client::FinanceServiceClient;
use crate::proto::personnel_service_client::PersonnelServiceClient;
use crate::proto::reconciliation_service_client::ReconciliationServiceClient;

/// Longest one call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Latencies and failures of a series of calls.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// Each successful call's latency, sorted.
    pub samples: Vec<Duration>,
    /// Calls that failed (a status, or the timeout).
    pub errors: u64,
    /// The first failure, to show why.
    pub first_error: Option<String>,
    /// Wall time of the series.
    pub elapsed: Duration,
}

impl Latencies {
    /// The `q` quantile (0..=1) of the successful calls; zero when there were none.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * (self.samples.len() - 1) as f64).round() as usize;
        self.samples[rank.min(self.samples.len() - 1)]
    }

    /// Successful calls per second of wall time.
    pub fn throughput(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// `12 failed (first: ...)`, or empty.
    pub fn failures(&self) -> String {
        match (&self.first_error, self.errors) {
            (_, 0) => String::new(),
            (Some(first), n) => format!("{n} calls failed (first: {first})"),
            (None, n) => format!("{n} calls failed"),
        }
    }

    fn merge(parts: Vec<Latencies>, elapsed: Duration) -> Latencies {
        let mut all = Latencies {
            elapsed,
            ..Latencies::default()
        };
        for part in parts {
            all.samples.extend(part.samples);
            all.errors += part.errors;
            if all.first_error.is_none() {
                all.first_error = part.first_error;
            }
        }
        all.samples.sort_unstable();
        all
    }
}

/// Runs one call and records its latency.
async fn timed<Fut>(latencies: &mut Latencies, call: Fut)
where
    Fut: Future<Output = Result<(), tonic::Status>>,
{
    let started = Instant::now();
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(())) => latencies.samples.push(started.elapsed()),
        Ok(Err(status)) => {
            latencies.errors += 1;
            if latencies.first_error.is_none() {
                latencies.first_error = Some(format!("{:?}: {}", status.code(), status.message()));
            }
        }
        Err(_) => {
            latencies.errors += 1;
            if latencies.first_error.is_none() {
                latencies.first_error = Some(format!("no answer within {CALL_TIMEOUT:?}"));
            }
        }
    }
}

/// What the unary pushes measured.
#[derive(Debug, Clone, Default)]
pub struct UnaryPushes {
    /// `PushPersonnelEvent` of a hire into an existing institution.
    pub hires: Latencies,
    /// `PushPayrollLine` for the person just hired.
    pub payroll: Latencies,
}

/// The institutions the dataset gives a quota, with the quota's category and an approval number
/// of that institution and category when there is one.
fn placements(data: &Dataset) -> Vec<(String, i32, String)> {
    let mut approvals: HashMap<(&str, i32), &str> = HashMap::new();
    for approval in &data.approvals {
        approvals
            .entry((approval.institution_uscc.as_str(), approval.category))
            .or_insert(approval.approval_number.as_str());
    }
    let mut seen = HashSet::new();
    data.quotas
        .iter()
        .filter(|quota| seen.insert((quota.institution_uscc.clone(), quota.category)))
        .map(|quota| {
            let approval = approvals
                .get(&(quota.institution_uscc.as_str(), quota.category))
                .copied()
                .unwrap_or_default();
            (
                quota.institution_uscc.clone(),
                quota.category,
                approval.to_owned(),
            )
        })
        .collect()
}

/// `count` resident IDs of people the dataset does not know, in the root's division.
fn new_people(data: &Dataset, division: &str, count: usize) -> Vec<String> {
    let known: HashSet<&str> = data
        .events
        .iter()
        .map(|e| e.resident_id.as_str())
        .chain(data.payroll.iter().map(|l| l.resident_id.as_str()))
        .chain(data.appointments.iter().map(|a| a.resident_id.as_str()))
        .collect();
    let born = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a real date");
    let mut people = Vec::with_capacity(count);
    let mut n: u64 = 0;
    while people.len() < count && n < 3_000 * 100 {
        let birth = born + chrono::Days::new(n % 3_000);
        let sequence = 900 + n / 3_000;
        n += 1;
        let Ok(id) = resident_id_with_check(&format!(
            "{division}{}{sequence:03}",
            birth.format("%Y%m%d")
        )) else {
            continue;
        };
        let id = id.to_string();
        if !known.contains(id.as_str()) {
            people.push(id);
        }
    }
    people
}

/// `count` sequential hires into existing institutions (PushPersonnelEvent), then a payroll line
/// for each of them (PushPayrollLine), on the loaded hub.
pub async fn unary_pushes(
    hr: Channel,
    finance: Channel,
    data: &Dataset,
    division: &str,
    as_of: NaiveDate,
    period: Period,
    count: usize,
) -> anyhow::Result<UnaryPushes> {
    let placements = placements(data);
    anyhow::ensure!(
        !placements.is_empty(),
        "the dataset has no quota to hire into"
    );
    let people = new_people(data, division, count);
    let mut hr = PersonnelServiceClient::new(hr);
    let mut finance = FinanceServiceClient::new(finance);
    let mut pushes = UnaryPushes::default();
    let started = Instant::now();
    let stride = (placements.len() / count.max(1)).max(1);
    for (k, person) in people.iter().enumerate() {
        let (institution, category, approval) = &placements[(k * stride) % placements.len()];
        let event = proto::PersonnelEvent {
            record_id: format!("bench-hire-{k}"),
            event_type: proto::PersonnelEventType::Hire as i32,
            resident_id: person.clone(),
            name: "基准测试".into(),
            institution_uscc: institution.clone(),
            category: *category,
            rank: proto::Rank::Clerk as i32,
            effective_on: as_of.to_string(),
            approval_number: approval.clone(),
            channel: proto::HiringChannel::OpenRecruitment as i32,
            ..Default::default()
        };
        timed(&mut pushes.hires, async {
            hr.push_personnel_event(event).await.map(drop)
        })
        .await;
    }
    pushes.hires.elapsed = started.elapsed();
    pushes.hires.samples.sort_unstable();
    progress(&format!(
        "  {} hires pushed one by one in {:.2} s",
        people.len(),
        pushes.hires.elapsed.as_secs_f64()
    ));

    let started = Instant::now();
    for (k, person) in people.iter().enumerate() {
        let (institution, _, _) = &placements[(k * stride) % placements.len()];
        let line = proto::PayrollLine {
            record_id: format!("bench-pay-{k}"),
            period: period.to_string(),
            institution_uscc: institution.clone(),
            resident_id: person.clone(),
            name: "基准测试".into(),
            gross_fen: 600_000,
            reverses_record_id: String::new(),
            person_token: String::new(),
        };
        timed(&mut pushes.payroll, async {
            finance.push_payroll_line(line).await.map(drop)
        })
        .await;
    }
    pushes.payroll.elapsed = started.elapsed();
    pushes.payroll.samples.sort_unstable();
    progress(&format!(
        "  {} payroll lines pushed one by one in {:.2} s",
        people.len(),
        pushes.payroll.elapsed.as_secs_f64()
    ));
    Ok(pushes)
}

/// How long and how much a load runs.
#[derive(Debug, Clone, Copy)]
pub struct LoadBounds {
    /// Callers stop starting calls after this long.
    pub duration: Duration,
    /// Callers stop after this many calls in all.
    pub max_calls: u64,
}

/// `callers` tasks call `call(caller, sequence)` back to back until the bounds are reached.
async fn load<F, Fut>(callers: usize, bounds: LoadBounds, call: F) -> Latencies
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + bounds.duration;
    let mut tasks = Vec::with_capacity(callers);
    for caller in 0..callers.max(1) {
        let call = call.clone();
        let issued = Arc::clone(&issued);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut sequence = 0;
            while tokio::time::Instant::now() < deadline
                && issued.fetch_add(1, Ordering::Relaxed) < bounds.max_calls
            {
                timed(&mut latencies, call(caller, sequence)).await;
                sequence += 1;
            }
            latencies
        }));
    }
    let mut parts = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(part) = task.await {
            parts.push(part);
        }
    }
    Latencies::merge(parts, started.elapsed())
}

/// The three calls measured under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precheck {
    /// `ReconciliationService/CheckHire` as HR.
    CheckHire,
    /// `ReconciliationService/VerifyFunding` as finance.
    VerifyFunding,
}

/// One concurrency level of one pre-check and of health over the same connections.
#[derive(Debug, Clone)]
pub struct LoadPair {
    /// Which pre-check.
    pub precheck: Precheck,
    /// Concurrent callers.
    pub callers: usize,
    /// The pre-check.
    pub measured: Latencies,
    /// `grpc.health.v1.Health/Check` over the same connections.
    pub health: Latencies,
}

/// Requests that vary over the dataset: every institution with a quota, people who are and who
/// are not on a roll, approvals, fundings.
pub struct Requests {
    check_hire: Arc<Vec<proto::CheckHireRequest>>,
    verify_funding: Arc<Vec<proto::VerifyFundingRequest>>,
}

impl Requests {
    /// At most 1,000 of each, spread over the dataset.
    pub fn from_dataset(
        data: &Dataset,
        division: &str,
        as_of: NaiveDate,
        period: Period,
    ) -> Requests {
        const MOST: usize = 1_000;
        let placements = placements(data);
        let newcomers = new_people(data, division, MOST / 2);
        let hires: Vec<&str> = data
            .events
            .iter()
            .filter(|e| e.event_type == proto::PersonnelEventType::Hire as i32)
            .map(|e| e.resident_id.as_str())
            .collect();
        let stride = (placements.len() / MOST).max(1);
        let check_hire = placements
            .iter()
            .step_by(stride)
            .take(MOST)
            .enumerate()
            .map(|(k, (institution, category, approval))| {
                // Half of the people are newcomers, half already on some roll.
                let person = if k % 2 == 0 && !newcomers.is_empty() {
                    newcomers[k / 2 % newcomers.len()].clone()
                } else if !hires.is_empty() {
                    hires[(k * 7_919) % hires.len()].to_owned()
                } else {
                    String::new()
                };
                proto::CheckHireRequest {
                    institution_uscc: institution.clone(),
                    category: *category,
                    channel: proto::HiringChannel::OpenRecruitment as i32,
                    approval_number: approval.clone(),
                    resident_id: person,
                    date: as_of.to_string(),
                    ..Default::default()
                }
            })
            .collect();
        let verify_funding: Vec<proto::VerifyFundingRequest> = if data.fundings.is_empty() {
            placements
                .iter()
                .step_by(stride)
                .take(MOST)
                .map(|(institution, category, _)| proto::VerifyFundingRequest {
                    institution_uscc: institution.clone(),
                    category: *category,
                    period: period.to_string(),
                    requested_headcount: 10,
                    amount_fen: 6_500_000,
                })
                .collect()
        } else {
            let stride = (data.fundings.len() / MOST).max(1);
            data.fundings
                .iter()
                .step_by(stride)
                .take(MOST)
                .map(|funding| proto::VerifyFundingRequest {
                    institution_uscc: funding.institution_uscc.clone(),
                    category: funding.category,
                    period: funding.period.clone(),
                    requested_headcount: funding.funded_headcount,
                    amount_fen: funding.amount_fen,
                })
                .collect()
        };
        Requests {
            check_hire: Arc::new(check_hire),
            verify_funding: Arc::new(verify_funding),
        }
    }
}

/// Runs `precheck` with each number of callers, each time followed by health checks over the
/// same connections.
pub async fn prechecks(
    precheck: Precheck,
    channels: &[Channel],
    requests: &Requests,
    concurrency: &[usize],
    bounds: LoadBounds,
) -> anyhow::Result<Vec<LoadPair>> {
    anyhow::ensure!(!channels.is_empty(), "no connection to load");
    let clients: Arc<Vec<ReconciliationServiceClient<Channel>>> = Arc::new(
        channels
            .iter()
            .cloned()
            .map(ReconciliationServiceClient::new)
            .collect(),
    );
    let health: Arc<Vec<HealthClient<Channel>>> =
        Arc::new(channels.iter().cloned().map(HealthClient::new).collect());
    let check_hire = Arc::clone(&requests.check_hire);
    let verify_funding = Arc::clone(&requests.verify_funding);
    anyhow::ensure!(
        match precheck {
            Precheck::CheckHire => !check_hire.is_empty(),
            Precheck::VerifyFunding => !verify_funding.is_empty(),
        },
        "the dataset gives no {precheck:?} request"
    );

    let call_precheck = {
        let clients = Arc::clone(&clients);
        move |caller: usize, sequence: u64| {
            let mut client = clients[caller % clients.len()].clone();
            let pick = move |len: usize| (caller * 7_919 + sequence as usize * 31) % len;
            let check_hire = Arc::clone(&check_hire);
            let verify_funding = Arc::clone(&verify_funding);
            async move {
                match precheck {
                    Precheck::CheckHire => {
                        let request = check_hire[pick(check_hire.len())].clone();
                        client.check_hire(request).await.map(drop)
                    }
                    Precheck::VerifyFunding => {
                        let request = verify_funding[pick(verify_funding.len())].clone();
                        client.verify_funding(request).await.map(drop)
                    }
                }
            }
        }
    };
    let call_health = {
        let health = Arc::clone(&health);
        move |caller: usize, _sequence: u64| {
            let mut client = health[caller % health.len()].clone();
            async move {
                client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(drop)
            }
        }
    };

    // Warm up both paths (connections, statement caches) before measuring.
    let warm_up = LoadBounds {
        duration: bounds.duration.min(Duration::from_millis(300)),
        max_calls: 50,
    };
    let _ = load(channels.len(), warm_up, call_precheck.clone()).await;
    let _ = load(channels.len(), warm_up, call_health.clone()).await;

    let mut pairs = Vec::new();
    for &callers in concurrency {
        let measured = load(callers, bounds, call_precheck.clone()).await;
        let health = load(callers, bounds, call_health.clone()).await;
        progress(&format!(
            "  {precheck:?} × {callers}: {:.0} calls/s (p50 {}, p99 {}); health {:.0} calls/s (p50 {})",
            measured.throughput(),
            human_duration(measured.quantile(0.5)),
            human_duration(measured.quantile(0.99)),
            health.throughput(),
            human_duration(health.quantile(0.5)),
        ));
        pairs.push(LoadPair {
            precheck,
            callers,
            measured,
            health,
        });
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_from_the_sorted_samples() {
        let latencies = Latencies {
            samples: (1..=100).map(Duration::from_millis).collect(),
            elapsed: Duration::from_secs(2),
            ..Latencies::default()
        };
        assert_eq!(latencies.quantile(0.5), Duration::from_millis(51));
        assert_eq!(latencies.quantile(0.99), Duration::from_millis(99));
        assert!((latencies.throughput() - 50.0).abs() < 1e-9);
        assert_eq!(Latencies::default().quantile(0.5), Duration::ZERO);
    }
}
