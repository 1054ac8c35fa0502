//! What every call passes before a handler sees it, besides [`super::policy::POLICY`]: the agency
//! registry (a certificate must be registered for its agency, which must be enabled), the agency's
//! rate limit, a deadline on unary calls, and an entry in the audit trail whatever the outcome.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::AuditSink;
use crate::domain::Agency;
use crate::error::Error;
use crate::store::Store;
use crate::store::trust::CertificateStanding;

/// How long a registry answer is reused in process. A disable or re-key made elsewhere (the CLI,
/// another replica) takes effect within this time; one made through this hub's AdminService at
/// once.
pub const REGISTRY_TTL: Duration = Duration::from_secs(1);

/// The agency registry as the hub consults it on every call, with a short in-process cache.
#[derive(Debug)]
pub struct Registry {
    store: Store,
    /// Positive answers by fingerprint, with when they were read. Unknown certificates are not
    /// cached, so that a newly registered agency is served at once.
    cache: Mutex<HashMap<String, (Instant, CertificateStanding)>>,
}

impl Registry {
    /// A registry over the store's tables.
    pub fn new(store: Store) -> Registry {
        Registry {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets cached answers, after this hub changed the registry.
    pub fn invalidate(&self) {
        self.cache.lock().expect("not poisoned").clear();
    }

    /// Refuses a certificate that is not registered for the agency it names, that was revoked, or
    /// whose agency is disabled.
    pub async fn check(&self, agency: &Agency, fingerprint: &str) -> Result<(), Error> {
        let cached = self
            .cache
            .lock()
            .expect("not poisoned")
            .get(fingerprint)
            .map(|(read, standing)| (read.elapsed() < REGISTRY_TTL, standing.clone()));
        let standing = match cached {
            Some((true, standing)) => standing,
            _ => {
                let read = match self.store.certificate_standing(fingerprint).await {
                    Ok(read) => read,
                    // While the database is away the last answer stands: the call is refused
                    // or served as it was a moment ago (health reports NOT_SERVING; writes fail
                    // with UNAVAILABLE on their own), instead of every call failing here.
                    Err(Error::Unavailable(reason)) => match cached {
                        Some((_, standing)) => Some(standing),
                        None => return Err(Error::Unavailable(reason)),
                    },
                    Err(error) => return Err(error),
                };
                let Some(standing) = read else {
                    return Err(Error::Unauthenticated(format!(
                        "the certificate of {agency} is not registered with the hub; the operator registers it with `quotahub agency add` or `rekey`"
                    )));
                };
                self.cache
                    .lock()
                    .expect("not poisoned")
                    .insert(fingerprint.to_owned(), (Instant::now(), standing.clone()));
                standing
            }
        };
        if standing.agency_id != agency.id() {
            return Err(Error::Unauthenticated(format!(
                "the certificate names {agency} but is registered for {}",
                standing.agency_id
            )));
        }
        if standing.revoked {
            return Err(Error::Unauthenticated(format!(
                "this certificate of {agency} was revoked when the agency was re-keyed"
            )));
        }
        if !standing.enabled {
            return Err(Error::PermissionDenied(format!(
                "agency {agency} is disabled"
            )));
        }
        Ok(())
    }
}

/// Per-agency token buckets: `rate` calls a second on average, bursts up to `burst`. One agency
/// emptying its bucket leaves every other agency's untouched. Buckets are per hub process.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Buckets of `burst` tokens refilled at `calls_per_second`; 0 calls a second turns limiting off.
    pub fn new(calls_per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(calls_per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of `agency_id`'s bucket, or says how long until one is there.
    pub fn take(&self, agency_id: &str) -> Result<(), Duration> {
        self.take_at(agency_id, Instant::now())
    }

    fn take_at(&self, agency_id: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("not poisoned");
        let bucket = buckets.entry(agency_id.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

/// A full re-check of a city takes minutes (BENCHMARKS.md), so `Reconcile` gets a deadline of its
/// own rather than the one of ordinary calls.
const RECONCILE: &str = "/quotahub.v1.ReconciliationService/Reconcile";
const RECONCILE_DEADLINE: Duration = Duration::from_secs(3_600);

/// What a handler may say about what its call touched (record ids, the filter of a read), for the
/// audit trail. The guard puts one in every request's extensions.
#[derive(Debug, Clone, Default)]
pub struct AuditNote(Arc<Mutex<String>>);

/// Longest note kept.
const NOTE_CHARS: usize = 480;

impl AuditNote {
    /// Sets the note, cut to a few hundred characters.
    pub fn set(&self, text: &str) {
        let cut: String = text.chars().take(NOTE_CHARS).collect();
        *self.0.lock().expect("not poisoned") = cut;
    }

    /// Sets the note unless one was set already.
    pub fn set_if_empty(&self, text: impl FnOnce() -> String) {
        let mut note = self.0.lock().expect("not poisoned");
        if note.is_empty() {
            *note = text().chars().take(NOTE_CHARS).collect();
        }
    }

    /// The note.
    pub fn text(&self) -> String {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// Notes what a call touched, for the audit trail.
pub fn note<T>(request: &tonic::Request<T>, text: &str) {
    if let Some(note) = request.extensions().get::<AuditNote>() {
        note.set(text);
    }
}

/// Everything the authorization layer consults besides the policy table.
#[derive(Debug)]
pub struct Guard {
    /// Registered agencies and their certificates.
    pub registry: Registry,
    /// Per-agency rate limits.
    pub limiter: RateLimiter,
    /// Where entries of the trail go.
    pub audit: AuditSink,
    /// Deadlines of calls.
    pub deadlines: Deadlines,
}

/// The deadline of each unary call. Streams have none: a bulk push is bounded by its record limit
/// and a feed stream is meant to stay open.
#[derive(Debug, Clone)]
pub struct Deadlines {
    /// Deadline of an ordinary unary call; `None` for none.
    call_timeout: Option<Duration>,
    /// Paths of the unary methods.
    unary: HashSet<String>,
}

impl Deadlines {
    /// Deadlines for the unary methods of the contract (and health checks).
    pub fn of_contract(
        call_timeout: Option<Duration>,
    ) -> Result<Deadlines, prost_reflect::DescriptorError> {
        let mut unary: HashSet<String> = HashSet::from(["/grpc.health.v1.Health/Check".to_owned()]);
        let pool = prost_reflect::DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)?;
        for service in pool.services() {
            for method in service.methods() {
                if !method.is_client_streaming() && !method.is_server_streaming() {
                    unary.insert(format!("/{}/{}", service.full_name(), method.name()));
                }
            }
        }
        Ok(Deadlines {
            call_timeout,
            unary,
        })
    }

    /// The deadline of a call to `path`, if it has one.
    pub fn of(&self, path: &str) -> Option<Duration> {
        let deadline = self.call_timeout.filter(|_| self.unary.contains(path))?;
        Some(if path == RECONCILE {
            deadline.max(RECONCILE_DEADLINE)
        } else {
            deadline
        })
    }
}

impl Guard {
    /// A guard over the store's registry.
    pub fn new(
        store: Store,
        audit: AuditSink,
        limits: &super::Limits,
    ) -> Result<Guard, prost_reflect::DescriptorError> {
        Ok(Guard {
            registry: Registry::new(store),
            limiter: RateLimiter::new(limits.calls_per_second, limits.burst),
            audit,
            deadlines: Deadlines::of_contract(limits.call_timeout)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate_per_agency() {
        let limiter = RateLimiter::new(10, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at("140100/hr", start).is_ok());
        }
        let wait = limiter.take_at("140100/hr", start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another agency is untouched.
        assert!(limiter.take_at("140100/finance", start).is_ok());
        // A tenth of a second later one token is back.
        let later = start + Duration::from_millis(100);
        assert!(limiter.take_at("140100/hr", later).is_ok());
        assert!(limiter.take_at("140100/hr", later).is_err());
    }

    #[test]
    fn unary_calls_have_deadlines_and_streams_do_not() {
        let deadlines = Deadlines::of_contract(Some(Duration::from_secs(30))).unwrap();
        let thirty = Some(Duration::from_secs(30));
        assert_eq!(
            deadlines.of("/quotahub.v1.FinanceService/PushPayrollLine"),
            thirty
        );
        assert_eq!(deadlines.of("/grpc.health.v1.Health/Check"), thirty);
        assert_eq!(
            deadlines.of("/quotahub.v1.FinanceService/PushPayrollLines"),
            None
        );
        assert_eq!(deadlines.of("/quotahub.v1.FeedService/Subscribe"), None);
        assert_eq!(deadlines.of(RECONCILE), Some(RECONCILE_DEADLINE));
        assert_eq!(Deadlines::of_contract(None).unwrap().of(RECONCILE), None);
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        let limiter = RateLimiter::new(0, 0);
        for _ in 0..10_000 {
            assert!(limiter.take("140100/hr").is_ok());
        }
    }
}
