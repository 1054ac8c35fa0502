//! A feed subscriber's side of acknowledging: in batches, at a phase of its own.
//!
//! Acknowledging every event costs a subscriber two more messages on its stream per event (its
//! acknowledgement and the hub's `Acked` confirmation), so with a thousand subscribers the
//! acknowledgements of the first to receive an event compete with its delivery to the last.
//! Acknowledgements are cumulative, so a subscriber acknowledges the highest event it has handled
//! once per interval, or at once when half its window waits (the hub sends no more than the window
//! unacknowledged). Each subscriber ticks at its own phase of the interval: subscribers that
//! receive together would otherwise acknowledge together, a burst that meets the next push. The
//! price: a subscriber that crashes is sent the events of its last interval again (the feed is at
//! least once), and the hub's cursor trails what was handled by up to an interval.

use std::time::Duration;

use tokio::time::Instant;

/// How often a subscriber acknowledges at most, events waiting.
pub const ACK_EVERY: Duration = Duration::from_millis(250);
/// The window a subscriber asks for (`SubscribeRequest.max_in_flight`): the hub's default.
pub const WINDOW: u32 = 100;

/// The acknowledgements a subscriber owes.
#[derive(Debug)]
pub struct AckBatch {
    every: Duration,
    /// Ticks fall at `origin` plus whole intervals.
    origin: Instant,
    /// Acknowledge at once when this many events wait.
    at_most_waiting: u64,
    handled: u64,
    sent: u64,
    waiting: u64,
    /// When the oldest event waiting was handled.
    waiting_since: Option<Instant>,
}

impl AckBatch {
    /// Acknowledgements every `every` at most, ticking `phase` into each interval (taken modulo
    /// the interval), at once when half of `window` waits.
    pub fn new(every: Duration, phase: Duration, window: u32) -> AckBatch {
        let every = every.max(Duration::from_millis(1));
        let phase = Duration::from_nanos(
            u64::try_from(phase.as_nanos() % every.as_nanos()).unwrap_or_default(),
        );
        AckBatch {
            every,
            origin: Instant::now() + phase,
            at_most_waiting: u64::from(window / 2).max(1),
            handled: 0,
            sent: 0,
            waiting: 0,
            waiting_since: None,
        }
    }

    /// The usual batch, at a phase drawn from the clock: for one subscriber in a process.
    pub fn at_any_phase() -> AckBatch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        AckBatch::new(ACK_EVERY, Duration::from_nanos(u64::from(nanos)), WINDOW)
    }

    /// The usual batch, subscriber `i` of `count` in one process: phases spread over the interval.
    pub fn spread(i: usize, count: usize) -> AckBatch {
        let share = u32::try_from(i % count.max(1)).unwrap_or_default();
        let count = u32::try_from(count.max(1)).unwrap_or(u32::MAX);
        AckBatch::new(ACK_EVERY, ACK_EVERY * share / count, WINDOW)
    }

    /// Notes an event handled; the sequence number to acknowledge now, when half the window waits.
    pub fn handled(&mut self, seq: u64) -> Option<u64> {
        if seq > self.handled {
            self.handled = seq;
        }
        if self.handled > self.sent {
            self.waiting += 1;
            self.waiting_since.get_or_insert_with(Instant::now);
        }
        if self.waiting >= self.at_most_waiting {
            self.take()
        } else {
            None
        }
    }

    /// The highest event handled.
    pub fn last_handled(&self) -> u64 {
        self.handled
    }

    /// When the acknowledgement waiting is due: this subscriber's first tick after the oldest
    /// event waiting was handled; none when nothing waits.
    pub fn due(&self) -> Option<Instant> {
        let since = self.waiting_since?;
        if since < self.origin {
            return Some(self.origin);
        }
        let ticks = since.duration_since(self.origin).as_nanos() / self.every.as_nanos() + 1;
        let ticks = u32::try_from(ticks).unwrap_or(u32::MAX);
        Some(self.origin + self.every * ticks)
    }

    /// Takes the acknowledgement to send: the highest event handled, when above the last sent.
    pub fn take(&mut self) -> Option<u64> {
        self.waiting = 0;
        self.waiting_since = None;
        (self.handled > self.sent).then(|| {
            self.sent = self.handled;
            self.handled
        })
    }
}

/// Sleeps until `due`; forever when there is none (a branch of a `select!` that never fires).
pub async fn until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn acknowledgements_wait_for_the_subscribers_own_tick() {
        let every = Duration::from_millis(100);
        let mut acks = AckBatch::new(every, Duration::from_millis(30), 10);
        let start = Instant::now();
        assert_eq!(acks.due(), None, "nothing handled, nothing due");
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(acks.handled(7), None);
        assert_eq!(acks.handled(8), None);
        // Handled at 50 ms: the first tick after it, at 30 ms plus an interval.
        assert_eq!(acks.due(), Some(start + Duration::from_millis(130)));
        assert_eq!(acks.take(), Some(8));
        assert_eq!(acks.due(), None);
        assert_eq!(acks.take(), None, "nothing new since");
        // Made at 50 ms with a phase of 250 ms (50 ms into each interval), so its first tick is
        // at 100 ms; an event handled before the first tick is due at it.
        let mut early = AckBatch::new(every, Duration::from_millis(250), 10);
        assert_eq!(early.handled(1), None);
        assert_eq!(early.due(), Some(start + Duration::from_millis(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn half_the_window_waiting_is_acknowledged_at_once() {
        let mut acks = AckBatch::new(Duration::from_secs(1), Duration::ZERO, 6);
        assert_eq!(acks.handled(1), None);
        assert_eq!(acks.handled(2), None);
        assert_eq!(acks.handled(3), Some(3));
        assert_eq!(acks.due(), None);
        // An event sent again, already acknowledged, is not acknowledged again.
        assert_eq!(acks.handled(2), None);
        assert_eq!(acks.due(), None);
        assert_eq!(acks.handled(4), None);
        assert_eq!(acks.last_handled(), 4);
        assert_eq!(acks.take(), Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn subscribers_in_one_process_tick_apart() {
        let count = 4;
        let dues: Vec<_> = (0..count)
            .map(|i| {
                let mut acks = AckBatch::spread(i, count);
                acks.handled(1);
                acks.due().expect("an event waits")
            })
            .collect();
        let start = Instant::now();
        let quarter = ACK_EVERY / 4;
        // Subscriber 0 ticks at the start of each interval, so its first is a whole one later.
        assert_eq!(
            dues,
            vec![
                start + ACK_EVERY,
                start + quarter,
                start + quarter * 2,
                start + quarter * 3
            ]
        );
    }
}
