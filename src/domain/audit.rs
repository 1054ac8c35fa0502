//! The audit trail's chain (全程留痕): every entry carries the SHA-256 of the previous entry's hash
//! and its own canonical bytes, so that changing, removing or inserting an entry breaks the chain
//! at that entry. Pure: the store keeps the entries, `audit` appends and verifies them.

use sha2::{Digest, Sha256};

/// One audited event: a call, or a refused TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When it happened, microseconds since the Unix epoch.
    pub at: i64,
    /// The agency (`140100/finance`), or empty when none was established.
    pub agency_id: String,
    /// The agency's jurisdiction (what auditors' queries are scoped by), or empty.
    pub jurisdiction: String,
    /// SHA-256 (hex) of the client certificate, or empty when none was presented.
    pub fingerprint: String,
    /// The peer's address.
    pub peer: String,
    /// The gRPC path called, or `tls-handshake` for a refused connection.
    pub method: String,
    /// What the call touched: record ids of a push, the request of a read (a short summary).
    pub touched: String,
    /// The outcome: a gRPC code name (`OK`, `PERMISSION_DENIED`, ...) or why a handshake failed.
    pub outcome: String,
}

/// The method recorded for a refused handshake.
pub const HANDSHAKE_METHOD: &str = "tls-handshake";

impl AuditEntry {
    /// The bytes the hash covers: every field, each prefixed by its length, so that no two
    /// different entries share them. The sequence number is left out on purpose: where an entry
    /// stands is fixed by the hash of the one before it.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(128 + self.touched.len());
        bytes.extend_from_slice(&self.at.to_be_bytes());
        for field in [
            &self.agency_id,
            &self.jurisdiction,
            &self.fingerprint,
            &self.peer,
            &self.method,
            &self.touched,
            &self.outcome,
        ] {
            bytes.extend_from_slice(&(field.len() as u64).to_be_bytes());
            bytes.extend_from_slice(field.as_bytes());
        }
        bytes
    }

    /// This entry's hash after `prev_hash` (hex; empty for the first entry).
    pub fn chain_hash(&self, prev_hash: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.as_bytes());
        hasher.update(self.canonical_bytes());
        hex::encode(hasher.finalize())
    }
}

/// An entry as stored: its place in the chain and the hashes that link it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedEntry {
    /// Sequence number, from 1, without gaps.
    pub seq: i64,
    /// The entry.
    pub entry: AuditEntry,
    /// The previous entry's hash as recorded in this one.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainBreak {
    /// The entry's content no longer matches its hash.
    Changed(i64),
    /// The entry with this sequence number is gone.
    Removed(i64),
    /// The entry with this sequence number was not written by the hub.
    Inserted(i64),
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::Changed(seq) => write!(f, "entry {seq} was changed"),
            ChainBreak::Removed(seq) => write!(f, "entry {seq} was removed"),
            ChainBreak::Inserted(seq) => write!(f, "entry {seq} was inserted"),
        }
    }
}

/// Walks the chain incrementally, a page of entries at a time, and names the first break.
#[derive(Debug, Clone)]
pub struct ChainWalk {
    /// Hash of the last entry found sound.
    prev_hash: String,
    /// Hash of the entry before that one.
    before_prev: String,
    /// The sequence number the next entry must have.
    expected: i64,
    /// An entry that broke the link, kept until the next entry says whether it was inserted or
    /// changed.
    suspect: Option<(ChainedEntry, bool)>,
}

impl Default for ChainWalk {
    fn default() -> ChainWalk {
        ChainWalk {
            prev_hash: String::new(),
            before_prev: String::new(),
            expected: 1,
            suspect: None,
        }
    }
}

impl ChainWalk {
    /// Takes the next entry in sequence order; an error names the first break found.
    pub fn next(&mut self, row: ChainedEntry) -> Result<(), ChainBreak> {
        if let Some((suspect, content_sound)) = self.suspect.take() {
            // The entry after a broken one tells what happened: if it links to the entry before
            // the broken one, the broken one was slipped in between.
            return Err(if row.prev_hash == self.prev_hash {
                ChainBreak::Inserted(suspect.seq)
            } else if content_sound {
                // A sound entry that does not follow its predecessor: one before it is missing.
                ChainBreak::Removed(suspect.seq)
            } else {
                ChainBreak::Changed(suspect.seq)
            });
        }
        if row.seq != self.expected {
            return Err(ChainBreak::Removed(self.expected));
        }
        let content_sound = row.entry.chain_hash(&row.prev_hash) == row.hash;
        if content_sound && row.prev_hash == self.prev_hash {
            self.before_prev = std::mem::replace(&mut self.prev_hash, row.hash);
            self.expected += 1;
            return Ok(());
        }
        if content_sound && row.seq > 1 && row.prev_hash == self.before_prev {
            // A sound entry that links over its predecessor: the predecessor was slipped in.
            return Err(ChainBreak::Inserted(row.seq - 1));
        }
        self.suspect = Some((row, content_sound));
        Ok(())
    }

    /// Ends the walk against the recorded head of the chain (its last sequence number and hash).
    pub fn finish(self, head_seq: i64, head_hash: &str) -> Result<(), ChainBreak> {
        if let Some((suspect, content_sound)) = self.suspect {
            return Err(if suspect.seq > head_seq {
                ChainBreak::Inserted(suspect.seq)
            } else if content_sound {
                ChainBreak::Removed(suspect.seq)
            } else {
                ChainBreak::Changed(suspect.seq)
            });
        }
        let last = self.expected - 1;
        if last < head_seq {
            Err(ChainBreak::Removed(last + 1))
        } else if last > head_seq {
            Err(ChainBreak::Inserted(head_seq + 1))
        } else if last > 0 && self.prev_hash != head_hash {
            Err(ChainBreak::Changed(last))
        } else {
            Ok(())
        }
    }
}

/// Verifies a whole chain held in memory.
pub fn verify(
    rows: impl IntoIterator<Item = ChainedEntry>,
    head_seq: i64,
    head_hash: &str,
) -> Result<(), ChainBreak> {
    let mut walk = ChainWalk::default();
    for row in rows {
        walk.next(row)?;
    }
    walk.finish(head_seq, head_hash)
}

/// Chains `entries` after the entry `(seq, hash)`.
pub fn chain(after_seq: i64, after_hash: &str, entries: Vec<AuditEntry>) -> Vec<ChainedEntry> {
    let mut prev = after_hash.to_owned();
    entries
        .into_iter()
        .zip(after_seq + 1..)
        .map(|(entry, seq)| {
            let hash = entry.chain_hash(&prev);
            ChainedEntry {
                seq,
                entry,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: i64) -> AuditEntry {
        AuditEntry {
            at: 1_000 + n,
            agency_id: "140100/finance".into(),
            jurisdiction: "140100".into(),
            fingerprint: "ab".into(),
            peer: "127.0.0.1:1".into(),
            method: "/quotahub.v1.FinanceService/PushPayrollLine".into(),
            touched: format!("record_id: \"p{n}\""),
            outcome: "OK".into(),
        }
    }

    fn chain_of(n: i64) -> Vec<ChainedEntry> {
        chain(0, "", (1..=n).map(entry).collect())
    }

    fn head(rows: &[ChainedEntry]) -> (i64, String) {
        rows.last()
            .map_or((0, String::new()), |r| (r.seq, r.hash.clone()))
    }

    fn check(rows: Vec<ChainedEntry>, head: &(i64, String)) -> Result<(), ChainBreak> {
        verify(rows, head.0, &head.1)
    }

    #[test]
    fn an_untouched_chain_verifies_and_so_does_an_empty_one() {
        let rows = chain_of(5);
        let head = head(&rows);
        assert_eq!(check(rows, &head), Ok(()));
        assert_eq!(check(Vec::new(), &(0, String::new())), Ok(()));
    }

    #[test]
    fn a_changed_entry_is_named() {
        let rows = chain_of(5);
        let head = head(&rows);
        for at in 0..5 {
            let mut changed = rows.clone();
            changed[at].entry.outcome = "PERMISSION_DENIED".into();
            assert_eq!(
                check(changed, &head),
                Err(ChainBreak::Changed(at as i64 + 1))
            );
        }
    }

    #[test]
    fn a_removed_entry_is_named_with_or_without_renumbering() {
        let rows = chain_of(5);
        let head = head(&rows);
        let mut gap = rows.clone();
        gap.remove(2);
        assert_eq!(check(gap, &head), Err(ChainBreak::Removed(3)));
        let mut renumbered = rows.clone();
        renumbered.remove(2);
        for (i, row) in renumbered.iter_mut().enumerate() {
            row.seq = i as i64 + 1;
        }
        assert_eq!(check(renumbered, &head), Err(ChainBreak::Removed(3)));
        let mut tail = rows.clone();
        tail.pop();
        assert_eq!(check(tail, &head), Err(ChainBreak::Removed(5)));
    }

    #[test]
    fn an_inserted_entry_is_named_even_when_its_hash_is_well_formed() {
        let rows = chain_of(5);
        let head = head(&rows);
        // In the middle, the rest renumbered, with a hash computed the hub's way.
        let mut forged = entry(99);
        forged.outcome = "OK".into();
        let mut inserted = rows.clone();
        let hash = forged.chain_hash(&rows[1].hash);
        inserted.insert(
            2,
            ChainedEntry {
                seq: 3,
                entry: forged.clone(),
                prev_hash: rows[1].hash.clone(),
                hash,
            },
        );
        for (i, row) in inserted.iter_mut().enumerate() {
            row.seq = i as i64 + 1;
        }
        assert_eq!(check(inserted, &head), Err(ChainBreak::Inserted(3)));
        // At the end, chained correctly: only the head betrays it.
        let appended = chain(5, &rows[4].hash, vec![forged]);
        let mut longer = rows.clone();
        longer.extend(appended);
        assert_eq!(check(longer, &head), Err(ChainBreak::Inserted(6)));
    }
}
