//! The feed's recent events, held in this process so that a thousand subscribers woken by one
//! commit read it once from the database, not once each. The database stays the truth: the tail
//! only ever holds a gap-free run of committed events (it reads after the highest sequence number
//! it holds, and the feed is numbered under a lock held until commit), it refreshes when the
//! store's feed signal says the feed may have grown (this process's commits and, on PostgreSQL,
//! other replicas' notifications), and a reader further back than the tail reads the database.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::RwLock;

use super::Store;
use super::feed::FeedEvent;
use crate::domain::{AgencyKind, Jurisdiction, ledger};
use crate::error::Result;

/// Events the tail holds at most; a subscriber further behind reads the database.
const CAPACITY: usize = 8_192;

/// Events read from the database per query when the tail catches up.
const REFRESH_BATCH: i64 = 1_024;

/// The tail reads the database at least this often while read, even without a signal: a lost
/// notification (a replica's LISTEN connection reconnecting) delays an event by this much at most.
const MAX_AGE: Duration = Duration::from_secs(1);

/// The recent events and how fresh they are.
#[derive(Debug, Default)]
pub(crate) struct FeedTail {
    state: RwLock<TailState>,
    /// Events the tail has read from the database (a count of work for the tests).
    read: AtomicU64,
}

#[derive(Debug, Default)]
struct TailState {
    /// Whether `through` has been set from the feed's head.
    started: bool,
    /// The most recent events read, oldest first, in sequence order.
    events: VecDeque<Arc<FeedEvent>>,
    /// The highest sequence number read; every event up to it is either held or older than the
    /// first one held.
    through: i64,
    /// The feed signal's value when the tail last read the database.
    generation: u64,
    /// When the tail last read the database.
    refreshed_at: Option<Instant>,
}

impl TailState {
    /// Whether the tail has read the database since the signal last changed, recently enough.
    fn fresh(&self, generation: u64) -> bool {
        self.started
            && self.generation == generation
            && self.refreshed_at.is_some_and(|at| at.elapsed() < MAX_AGE)
    }

    /// The sequence number before the first event the tail can answer for.
    fn floor(&self) -> i64 {
        // Sequence numbers held are consecutive except where the feed was trimmed before the
        // tail first read it; those are gone from the database too.
        self.events
            .front()
            .map_or(self.through, |first| first.seq - 1)
    }

    fn after(
        &self,
        after: i64,
        jurisdiction: &Jurisdiction,
        kind: AgencyKind,
        limit: usize,
    ) -> Vec<Arc<FeedEvent>> {
        let prefix = jurisdiction.prefix();
        let skip = self.events.partition_point(|event| event.seq <= after);
        self.events
            .iter()
            .skip(skip)
            // The same test as `feed_after`'s `(jurisdiction LIKE prefix% OR (below <> '' AND
            // code LIKE below%)) AND (reach = '' OR reach LIKE %,kind,%)`.
            .filter(|event| {
                (event.jurisdiction.starts_with(prefix)
                    || (!event.below.is_empty() && jurisdiction.as_str().starts_with(&event.below)))
                    && ledger::reaches(&event.reach, kind)
            })
            .take(limit)
            .cloned()
            .collect()
    }
}

impl Store {
    /// The highest sequence number the tail has read: every event up to it is committed.
    pub(crate) async fn feed_tail_through(&self) -> i64 {
        self.feed_tail.state.read().await.through
    }

    /// Events the tail has read from the database since the store started.
    pub fn feed_tail_reads(&self) -> u64 {
        self.feed_tail.read.load(Ordering::Relaxed)
    }

    /// Events after `after` that an agency of `kind` sees in `jurisdiction`, in order, at most
    /// `limit`: from the tail when it holds them, from the database otherwise.
    pub async fn feed_after_shared(
        &self,
        after: i64,
        jurisdiction: &Jurisdiction,
        kind: AgencyKind,
        limit: usize,
    ) -> Result<Vec<Arc<FeedEvent>>> {
        let generation = *self.feed_wakeups().borrow();
        {
            let state = self.feed_tail.state.read().await;
            if state.fresh(generation) && after >= state.floor() {
                return Ok(state.after(after, jurisdiction, kind, limit));
            }
        }
        {
            let mut state = self.feed_tail.state.write().await;
            let idle = state.refreshed_at.is_none_or(|at| at.elapsed() >= MAX_AGE);
            if idle {
                // Unread for a while (or never), the tail starts again at the head rather than
                // read its way up to it: the feed may have run on by a re-check's thousands of
                // events, and the first subscriber would wait for all of them (a tenth of a
                // second on a city's feed). Readers behind the head read the database, as any
                // reader further back than the tail does.
                let head = self.feed_head().await?;
                if !state.started || head - state.through > REFRESH_BATCH {
                    state.events.clear();
                    state.through = head;
                    state.started = true;
                }
            }
            // Read the signal before reading the feed: a commit during the read bumps it again,
            // and the next reader refreshes.
            let generation = *self.feed_wakeups().borrow();
            if !state.fresh(generation) {
                loop {
                    let events = self.feed_after(state.through, None, REFRESH_BATCH).await?;
                    let read = events.len() as i64;
                    self.feed_tail
                        .read
                        .fetch_add(read as u64, Ordering::Relaxed);
                    for event in events {
                        state.through = event.seq;
                        state.events.push_back(Arc::new(event));
                    }
                    if read < REFRESH_BATCH {
                        break;
                    }
                }
                while state.events.len() > CAPACITY {
                    state.events.pop_front();
                }
                state.generation = generation;
                state.refreshed_at = Some(Instant::now());
            }
            if after >= state.floor() {
                return Ok(state.after(after, jurisdiction, kind, limit));
            }
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .feed_after(after, Some((jurisdiction, kind)), limit)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}
