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

// The trail as a Merkle tree log (RFC 9162 §2.1): entry `seq` is leaf `seq - 1`, its leaf the
// entry's canonical bytes. Hashing, the stored-hash layout and the proofs are `tlog_tiles` (a port of
// Go's golang.org/x/mod/sumdb/tlog, checked there against real CT logs); checkpoints are C2SP
// tlog-checkpoint notes signed with Ed25519 through `signed_note`. What is here only adapts them.

pub use tlog_tiles::Hash;
use tlog_tiles::HashReader;

impl AuditEntry {
    /// The entry's leaf hash in the log: SHA-256(0x00 || canonical bytes).
    pub fn leaf_hash(&self) -> Hash {
        tlog_tiles::record_hash(&self.canonical_bytes())
    }
}

/// Hashes of the log's tree by stored index (`tlog_tiles::stored_hash_index`): for every leaf its
/// hash and the hash of each complete subtree it closes, about two per entry.
#[derive(Debug, Clone, Default)]
pub struct StoredHashes(pub std::collections::BTreeMap<u64, Hash>);

impl HashReader for StoredHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|index| {
                self.0
                    .get(index)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Records which stored hashes a computation reads, answering zeros.
#[derive(Default)]
struct Wanted(std::cell::RefCell<Vec<u64>>);

impl HashReader for Wanted {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![Hash([0; 32]); indexes.len()])
    }
}

/// What is asked of the stored tree: a root, an inclusion proof or a consistency proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeQuery {
    /// The root of the tree of this many leaves.
    Root(u64),
    /// That leaf `index` is in the tree of `size` leaves (RFC 9162 §2.1.3).
    Inclusion {
        /// Leaf index (entry `seq - 1`).
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// That the tree of `old` leaves is a prefix of the tree of `new` (RFC 9162 §2.1.4).
    Consistency {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
    },
}

impl TreeQuery {
    /// Checks the sizes against a log of `size` leaves.
    pub fn check(&self, size: u64) -> Result<(), String> {
        match *self {
            TreeQuery::Root(n) if n > size => Err(format!("the log holds {size} entries, not {n}")),
            TreeQuery::Inclusion { index, size: t } if index >= t || t > size => Err(format!(
                "entry {} is not in a tree of {t} of a log of {size} entries",
                index + 1
            )),
            TreeQuery::Consistency { old, new } if old == 0 || old > new || new > size => Err(
                format!("no consistency proof from {old} to {new} entries in a log of {size}"),
            ),
            _ => Ok(()),
        }
    }

    /// The stored hashes answering it reads.
    pub fn needs(&self) -> Vec<u64> {
        let wanted = Wanted::default();
        let _ = self.answer(&wanted);
        wanted.0.into_inner()
    }

    /// The answer, from the stored hashes it needs: the root alone, or the proof's hashes.
    pub fn answer(&self, hashes: &impl HashReader) -> Result<Vec<Hash>, String> {
        let answer = match *self {
            TreeQuery::Root(n) => tlog_tiles::tree_hash(n, hashes).map(|root| vec![root]),
            TreeQuery::Inclusion { index, size } => tlog_tiles::prove_record(size, index, hashes),
            TreeQuery::Consistency { old, new } => tlog_tiles::prove_tree(new, old, hashes),
        };
        answer.map_err(|error| format!("the stored tree cannot answer: {error}"))
    }
}

/// Stored hashes of subtrees lower than this are not kept: they cover at most 2^4 = 16 entries and
/// are computed again from them when asked for. About one row per eight entries is kept instead of
/// two per entry.
pub const KEPT_FROM_LEVEL: u8 = 4;

/// Whether the stored hash with this index is kept, or else computed from the entries it covers.
pub fn kept(index: u64) -> bool {
    tlog_tiles::split_stored_hash_index(index).0 >= KEPT_FROM_LEVEL
}

/// The leaves `[lo, hi)` under the stored hash with this index.
pub fn leaves_under(index: u64) -> (u64, u64) {
    let (level, n) = tlog_tiles::split_stored_hash_index(index);
    (n << level, (n + 1) << level)
}

/// The hash of the complete subtree over these leaf hashes (a power of two of them).
pub fn subtree_hash(leaves: &[Hash]) -> Hash {
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| tlog_tiles::node_hash(pair[0], pair[pair.len() - 1]))
            .collect();
    }
    level.first().copied().unwrap_or(tlog_tiles::EMPTY_HASH)
}

/// The stored indexes of the complete subtrees a tree of `size` leaves ends with: what appending
/// to it reads.
pub fn frontier(size: u64) -> Vec<u64> {
    tlog_tiles::sub_tree_index(0, size, Vec::new())
}

/// What appending leaves made: the stored hashes to add (by index), the new root, and the new
/// right edge (the [`frontier`] hashes of the new size, in order).
#[derive(Debug, Clone)]
pub struct Appended {
    /// Stored hashes to add.
    pub added: Vec<(u64, Hash)>,
    /// The new root.
    pub root: Hash,
    /// The new right edge.
    pub edge: Vec<Hash>,
}

/// Appends leaves to a tree of `size` leaves whose right edge (its [`frontier`] hashes, in order)
/// is `edge`.
pub fn append_leaves(size: u64, edge: &[Hash], leaves: &[Hash]) -> Result<Appended, String> {
    let indexes = frontier(size);
    if indexes.len() != edge.len() {
        return Err(format!(
            "the tree's recorded edge has {} hashes, a tree of {size} has {}",
            edge.len(),
            indexes.len()
        ));
    }
    let mut hashes = StoredHashes(indexes.into_iter().zip(edge.iter().copied()).collect());
    let mut added = Vec::with_capacity(leaves.len() * 2);
    for (n, leaf) in (size..).zip(leaves) {
        let new = tlog_tiles::stored_hashes_for_record_hash(n, *leaf, &hashes)
            .map_err(|error| format!("the stored tree's edge is missing: {error}"))?;
        for (index, hash) in (tlog_tiles::stored_hash_index(0, n)..).zip(new) {
            hashes.0.insert(index, hash);
            added.push((index, hash));
        }
    }
    let new_size = size + leaves.len() as u64;
    let root = tlog_tiles::tree_hash(new_size, &hashes)
        .map_err(|error| format!("the stored tree's edge is missing: {error}"))?;
    let edge = hashes
        .read_hashes(&frontier(new_size))
        .map_err(|error| format!("the stored tree's edge is missing: {error}"))?;
    Ok(Appended { added, root, edge })
}

/// The right edge as `audit_head` keeps it: the hashes in hex, one after another.
pub fn edge_to_text(edge: &[Hash]) -> String {
    edge.iter().map(|hash| hex::encode(hash.0)).collect()
}

/// The right edge read back.
pub fn edge_from_text(text: &str) -> Result<Vec<Hash>, String> {
    let bytes = hex::decode(text).map_err(|_| "the tree's recorded edge is not hex".to_owned())?;
    if bytes.len() % 32 != 0 {
        return Err("the tree's recorded edge is not whole hashes".into());
    }
    Ok(bytes
        .chunks(32)
        .map(|chunk| Hash(chunk.try_into().expect("32 bytes")))
        .collect())
}

/// The trail's head as `audit_head` keeps it: the chain's last entry, the log's tree (its size,
/// root and right edge) and the last checkpoint. Each append continues from it and moves it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrailHead {
    /// The last entry's sequence number (0 before the first).
    pub seq: i64,
    /// The last entry's chain hash (empty before the first).
    pub hash: String,
    /// Entries the log's tree has taken in: `seq`, unless appends to the chain alone left it behind.
    pub tree_size: i64,
    /// The tree's root in hex (empty for the empty tree).
    pub root: String,
    /// The tree's right edge (its [`frontier`] hashes, in order).
    pub edge: Vec<Hash>,
    /// The tree size of the last checkpoint.
    pub checkpoint_size: i64,
    /// When it was issued (Unix microseconds).
    pub checkpoint_at: i64,
}

/// Who signs the log's checkpoints, and when one is due: after this many entries, or this long
/// after the last (checked at each append).
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// The log's key.
    pub signer: LogSigner,
    /// Entries since the last checkpoint that make one due (at least 1).
    pub every_entries: u64,
    /// Microseconds since the last checkpoint that make one due.
    pub every_micros: i64,
}

impl CheckpointPolicy {
    /// The checkpoint of the tree of `size` leaves with `root`, signed at `at`.
    pub fn sign(&self, size: i64, root: Hash, at: i64) -> Result<SignedCheckpoint, String> {
        let note = self
            .signer
            .sign(u64::try_from(size).unwrap_or(0), root)
            .map_err(|error| format!("cannot sign a checkpoint: {error}"))?;
        Ok(SignedCheckpoint {
            size,
            root,
            note,
            at,
        })
    }
}

/// A checkpoint signed, to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    /// Its tree size.
    pub size: i64,
    /// Its root.
    pub root: Hash,
    /// The signed note.
    pub note: String,
    /// When it was issued (Unix microseconds).
    pub at: i64,
}

/// An append worked out from the head it continues: the rows it writes and the head it leaves.
#[derive(Debug, Clone)]
pub struct TrailAppend {
    /// The entries, chained.
    pub rows: Vec<ChainedEntry>,
    /// The tree's new stored hashes that are kept ([`kept`]), by index.
    pub nodes: Vec<(u64, Hash)>,
    /// The checkpoint that fell due, if one did.
    pub checkpoint: Option<SignedCheckpoint>,
    /// The head after it.
    pub head: TrailHead,
}

impl TrailHead {
    /// Whether the tree has taken in every entry of the chain, so that an append to the log needs
    /// no older leaf.
    pub fn tree_is_whole(&self) -> bool {
        self.tree_size == self.seq
    }

    /// `entries` chained after the head, the tree left as it is: the trail as it was kept before
    /// the log (the bench's baseline).
    pub fn chain_only(&self, entries: Vec<AuditEntry>) -> TrailAppend {
        let rows = chain(self.seq, &self.hash, entries);
        let mut head = self.clone();
        if let Some(last) = rows.last() {
            (head.seq, head.hash) = (last.seq, last.hash.clone());
        }
        TrailAppend {
            rows,
            nodes: Vec::new(),
            checkpoint: None,
            head,
        }
    }

    /// `entries` chained and taken into the log's tree after `older`, the leaves of the entries
    /// the tree has not taken in yet (`tree_size + 1 ..= seq`); with a checkpoint signed if
    /// `policy` says one is due at `now`.
    pub fn log(
        &self,
        older: &[Hash],
        entries: Vec<AuditEntry>,
        policy: Option<&CheckpointPolicy>,
        now: i64,
    ) -> Result<TrailAppend, String> {
        if usize::try_from(self.seq - self.tree_size).ok() != Some(older.len()) {
            return Err(format!(
                "the tree holds {} of {} entries; {} older leaves given",
                self.tree_size,
                self.seq,
                older.len()
            ));
        }
        let TrailAppend { rows, mut head, .. } = self.chain_only(entries);
        let mut leaves = older.to_vec();
        leaves.extend(rows.iter().map(|row| row.entry.leaf_hash()));
        let size = u64::try_from(self.tree_size).unwrap_or(0);
        let appended = append_leaves(size, &self.edge, &leaves)?;
        head.tree_size = head.seq;
        head.root = hex::encode(appended.root.0);
        head.edge = appended.edge;
        let checkpoint = match policy {
            Some(policy)
                if head.seq - self.checkpoint_size
                    >= i64::try_from(policy.every_entries.max(1)).unwrap_or(i64::MAX)
                    || now - self.checkpoint_at >= policy.every_micros =>
            {
                (head.checkpoint_size, head.checkpoint_at) = (head.seq, now);
                Some(policy.sign(head.seq, appended.root, now)?)
            }
            _ => None,
        };
        let nodes = appended
            .added
            .into_iter()
            .filter(|(index, _)| kept(*index))
            .collect();
        Ok(TrailAppend {
            rows,
            nodes,
            checkpoint,
            head,
        })
    }
}

/// The tree rebuilt from the leaves, in order, keeping only its right edge: what `audit verify`
/// uses so as to trust nothing stored but the entries.
#[derive(Debug, Clone, Default)]
pub struct TreeWalk {
    /// Complete subtrees, largest first, as (height, hash).
    edge: Vec<(u32, Hash)>,
    size: u64,
}

impl TreeWalk {
    /// Adds the next leaf.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0, leaf);
        while let Some(&(height, left)) = self.edge.last() {
            if height != node.0 {
                break;
            }
            self.edge.pop();
            node = (height + 1, tlog_tiles::node_hash(left, node.1));
        }
        self.edge.push(node);
        self.size += 1;
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree of the leaves so far (RFC 9162 MTH).
    pub fn root(&self) -> Hash {
        let mut nodes = self.edge.iter().rev();
        let Some(&(_, mut root)) = nodes.next() else {
            return tlog_tiles::EMPTY_HASH;
        };
        for &(_, left) in nodes {
            root = tlog_tiles::node_hash(left, root);
        }
        root
    }
}

/// Checks an inclusion proof: leaf `index` with hash `leaf` is in the tree of `size` with `root`.
pub fn verify_inclusion(proof: &[Hash], size: u64, root: Hash, index: u64, leaf: Hash) -> bool {
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf).is_ok()
}

/// Checks a consistency proof: the tree of `old` leaves with `old_root` is a prefix of the tree of
/// `new` leaves with `new_root`.
pub fn verify_consistency(
    proof: &[Hash],
    old: u64,
    old_root: Hash,
    new: u64,
    new_root: Hash,
) -> bool {
    old == new && old_root == new_root && proof.is_empty()
        || tlog_tiles::check_tree(&proof.to_vec(), new, new_root, old, old_root).is_ok()
}

/// The log's signing key: a signed-note private key (`PRIVATE+KEY+{origin}+{id}+{key}`); its
/// name is the log's origin.
#[derive(Clone)]
pub struct LogSigner(signed_note::StandardSigner, String);

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use signed_note::Signer;
        write!(f, "LogSigner({})", self.0.name())
    }
}

impl LogSigner {
    /// Reads a signed-note private key.
    pub fn parse(text: &str) -> Result<LogSigner, String> {
        use base64::Engine;
        use ring::signature::KeyPair;
        let text = text.trim();
        let signer = signed_note::StandardSigner::new(text)
            .map_err(|error| format!("not a signed-note Ed25519 private key: {error}"))?;
        // The public half, for witnesses: from the seed, through ring.
        let key = text.splitn(5, '+').nth(4).unwrap_or_default();
        let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(key)
            .ok()
            .and_then(|key| key.get(1..).and_then(|seed| seed.try_into().ok()))
            .ok_or("not a signed-note Ed25519 private key")?;
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| "not an Ed25519 seed")?;
        use signed_note::Signer;
        let (_, public) = LogSigner::from_seed(signer.name(), seed, pair.public_key().as_ref())?;
        Ok(LogSigner(signer, public))
    }

    /// A private key for `origin` from a 32-byte Ed25519 seed, and its public (verifier) key.
    pub fn from_seed(
        origin: &str,
        seed: [u8; 32],
        public: &[u8],
    ) -> Result<(String, String), String> {
        use base64::Engine;
        if !signed_note::is_key_name_valid(origin) {
            return Err(format!("`{origin}` cannot name a log (no spaces or `+`)"));
        }
        let encoded = |key: &[u8]| [&[1u8][..], key].concat();
        let id = signed_note::key_id(origin, &encoded(public));
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok((
            format!(
                "PRIVATE+KEY+{origin}+{id:08x}+{}",
                b64.encode(encoded(&seed))
            ),
            format!("{origin}+{id:08x}+{}", b64.encode(encoded(public))),
        ))
    }

    /// The public (verifier) key witnesses check checkpoints with: `{origin}+{id}+{key}`.
    pub fn public_key(&self) -> String {
        self.1.clone()
    }

    /// The log's origin (the checkpoints' first line).
    pub fn origin(&self) -> &str {
        use signed_note::Signer;
        self.0.name()
    }

    /// The checkpoint of the tree of `size` leaves with `root`, signed: a C2SP signed note.
    pub fn sign(&self, size: u64, root: Hash) -> Result<String, String> {
        let checkpoint = tlog_tiles::Checkpoint::new(self.origin(), size, root, "")
            .map_err(|error| error.to_string())?;
        let mut note = signed_note::Note::new(&checkpoint.to_bytes(), &[])
            .map_err(|error| error.to_string())?;
        note.add_sigs(&[&self.0])
            .map_err(|error| error.to_string())?;
        String::from_utf8(note.to_bytes()).map_err(|error| error.to_string())
    }
}

/// A checkpoint whose signature checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The log's origin.
    pub origin: String,
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// The signed note as issued.
    pub note: String,
}

/// Reads a signed checkpoint and checks its signature by the log key `vkey`
/// (`{origin}+{id}+{key}`).
pub fn open_checkpoint(note: &str, vkey: &str) -> Result<Checkpoint, String> {
    let verifier = signed_note::StandardVerifier::new(vkey.trim())
        .map_err(|error| format!("not a signed-note verifier key: {error}"))?;
    let parsed = signed_note::Note::from_bytes(note.as_bytes())
        .map_err(|error| format!("not a signed note: {error}"))?;
    parsed
        .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|error| format!("not signed by the log key: {error}"))?;
    let checkpoint = tlog_tiles::Checkpoint::from_bytes(parsed.text())
        .map_err(|error| format!("not a checkpoint: {error}"))?;
    Ok(Checkpoint {
        origin: checkpoint.origin().to_owned(),
        size: checkpoint.size(),
        root: *checkpoint.hash(),
        note: note.to_owned(),
    })
}

/// How the log fails a witness's checkpoint (or the hub's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogBreak {
    /// The log holds fewer entries than a checkpoint it signed: its tail was cut off.
    Truncated {
        /// The checkpoint's size.
        checkpoint: u64,
        /// Entries in the log.
        log: u64,
    },
    /// The log's first `size` entries no longer hash to the root signed for them.
    Rewritten {
        /// The checkpoint's size.
        size: u64,
    },
    /// Two signed checkpoints of one size with different roots: the hub showed two logs.
    Forked {
        /// The size.
        size: u64,
    },
    /// A checkpoint the hub stored does not carry the log key's signature.
    Unsigned {
        /// Its tree size.
        size: u64,
    },
    /// The tree stored beside the entries does not match them.
    TreeDiffers {
        /// The size at which it differs.
        size: u64,
    },
}

impl std::fmt::Display for LogBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogBreak::Truncated { checkpoint, log } => write!(
                f,
                "TRUNCATED: a checkpoint of {checkpoint} entries was signed, the log holds only {log}"
            ),
            LogBreak::Rewritten { size } => write!(
                f,
                "REWRITTEN: the first {size} entries no longer hash to the root signed for them"
            ),
            LogBreak::Forked { size } => write!(
                f,
                "FORKED: two signed checkpoints of {size} entries have different roots"
            ),
            LogBreak::Unsigned { size } => write!(
                f,
                "the hub's stored checkpoint of {size} entries is not signed by the log key"
            ),
            LogBreak::TreeDiffers { size } => write!(
                f,
                "the Merkle tree stored for the first {size} entries does not match the entries"
            ),
        }
    }
}

/// Judges the log (its `size` and the roots rebuilt from its entries at the sizes asked) against
/// signed checkpoints: the witnesses' and the hub's own. Every failure is named, forks first.
pub fn judge(
    checkpoints: &[Checkpoint],
    size: u64,
    roots: &std::collections::BTreeMap<u64, Hash>,
) -> Vec<LogBreak> {
    let mut found = Vec::new();
    let mut by_size: std::collections::BTreeMap<u64, Vec<Hash>> = Default::default();
    for checkpoint in checkpoints {
        let seen = by_size.entry(checkpoint.size).or_default();
        if !seen.contains(&checkpoint.root) {
            seen.push(checkpoint.root);
        }
    }
    for (&at, seen) in &by_size {
        if seen.len() > 1 {
            found.push(LogBreak::Forked { size: at });
        }
    }
    for (&at, seen) in &by_size {
        if at > size {
            found.push(LogBreak::Truncated {
                checkpoint: at,
                log: size,
            });
        } else if seen.iter().any(|root| roots.get(&at) != Some(root)) {
            found.push(LogBreak::Rewritten { size: at });
        }
    }
    found.dedup();
    found
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

    /// The leaves of RFC 6962's test vectors (Go's and CT's `merkle_test`).
    fn rfc_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect()
    }

    fn grow(leaves: &[Hash]) -> (StoredHashes, Hash) {
        let mut stored = StoredHashes::default();
        let mut root = tlog_tiles::EMPTY_HASH;
        let mut edge = Vec::new();
        for (n, leaf) in leaves.iter().enumerate() {
            let expected: Vec<Hash> = frontier(n as u64).iter().map(|i| stored.0[i]).collect();
            assert_eq!(edge, expected);
            let appended = append_leaves(n as u64, &edge, &[*leaf]).unwrap();
            stored.0.extend(appended.added);
            root = appended.root;
            edge = edge_from_text(&edge_to_text(&appended.edge)).unwrap();
        }
        (stored, root)
    }

    #[test]
    fn the_tree_has_the_roots_of_the_rfc_test_vectors_appended_or_rebuilt() {
        let leaves: Vec<Hash> = rfc_leaves()
            .iter()
            .map(|l| tlog_tiles::record_hash(l))
            .collect();
        let (_, root) = grow(&leaves);
        assert_eq!(
            hex::encode(root.0),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        let (_, one) = grow(&leaves[..1]);
        assert_eq!(
            hex::encode(one.0),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let mut walk = TreeWalk::default();
        assert_eq!(walk.root(), tlog_tiles::EMPTY_HASH);
        for (n, leaf) in leaves.iter().enumerate() {
            walk.push(*leaf);
            assert_eq!(walk.root(), grow(&leaves[..=n]).1, "size {}", n + 1);
        }
    }

    #[test]
    fn a_hash_not_kept_is_the_subtree_of_the_leaves_under_it() {
        let leaves: Vec<Hash> = (0..40).map(|n| entry(n).leaf_hash()).collect();
        let (stored, _) = grow(&leaves);
        for (&index, &hash) in &stored.0 {
            let (lo, hi) = leaves_under(index);
            assert_eq!(subtree_hash(&leaves[lo as usize..hi as usize]), hash);
            let (level, _) = tlog_tiles::split_stored_hash_index(index);
            assert_eq!(kept(index), level >= KEPT_FROM_LEVEL);
        }
    }

    #[test]
    fn proofs_from_the_stored_hashes_verify_and_a_wrong_leaf_does_not() {
        let leaves: Vec<Hash> = (0..21).map(|n| entry(n).leaf_hash()).collect();
        let (stored, _) = grow(&leaves);
        let root = |n: u64| TreeQuery::Root(n).answer(&stored).unwrap()[0];
        for size in 1..=21u64 {
            for index in 0..size {
                let query = TreeQuery::Inclusion { index, size };
                let proof = query.answer(&stored).unwrap();
                let needed = StoredHashes(
                    query
                        .needs()
                        .into_iter()
                        .map(|i| (i, stored.0[&i]))
                        .collect(),
                );
                assert_eq!(query.answer(&needed).unwrap(), proof);
                assert!(verify_inclusion(
                    &proof,
                    size,
                    root(size),
                    index,
                    leaves[index as usize]
                ));
                assert!(!verify_inclusion(
                    &proof,
                    size,
                    root(size),
                    index,
                    entry(99).leaf_hash()
                ));
            }
            for old in 1..=size {
                let proof = TreeQuery::Consistency { old, new: size }
                    .answer(&stored)
                    .unwrap();
                assert!(verify_consistency(&proof, old, root(old), size, root(size)));
                if old < size {
                    assert!(!verify_consistency(
                        &proof,
                        old,
                        root(old - 1),
                        size,
                        root(size)
                    ));
                }
            }
        }
    }

    #[test]
    fn a_checkpoint_is_signed_read_back_and_refused_under_another_key() {
        let seed = [7u8; 32];
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        use ring::signature::KeyPair;
        let (private, public) =
            LogSigner::from_seed("hub.example/log", seed, pair.public_key().as_ref()).unwrap();
        let signer = LogSigner::parse(&private).unwrap();
        assert_eq!(signer.public_key(), public);
        let root = tlog_tiles::record_hash(b"x");
        let note = signer.sign(5, root).unwrap();
        assert!(note.starts_with("hub.example/log\n5\n"), "{note}");
        assert!(note.contains("\n\n\u{2014} hub.example/log "), "{note}");
        let opened = open_checkpoint(&note, &public).unwrap();
        assert_eq!((opened.size, opened.root), (5, root));
        let other = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[8; 32]).unwrap();
        let (_, other_public) =
            LogSigner::from_seed("hub.example/log", [8; 32], other.public_key().as_ref()).unwrap();
        assert!(open_checkpoint(&note, &other_public).is_err());
        // Keys whose base64 holds `+` (the fields' separator) read back too.
        for byte in 0..64u8 {
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[byte; 32]).unwrap();
            let (private, public) =
                LogSigner::from_seed("o", [byte; 32], pair.public_key().as_ref()).unwrap();
            assert_eq!(LogSigner::parse(&private).unwrap().public_key(), public);
        }
        let forged = note.replacen("\n5\n", "\n4\n", 1);
        assert!(open_checkpoint(&forged, &public).is_err());
    }

    #[test]
    fn truncation_rewriting_and_forks_are_each_named() {
        let at = |size: u64, byte: u8| Checkpoint {
            origin: "o".into(),
            size,
            root: Hash([byte; 32]),
            note: String::new(),
        };
        let roots: std::collections::BTreeMap<u64, Hash> =
            [(3, Hash([3; 32])), (5, Hash([5; 32]))].into();
        assert_eq!(judge(&[at(3, 3), at(5, 5)], 5, &roots), vec![]);
        assert_eq!(
            judge(&[at(7, 7)], 5, &roots),
            vec![LogBreak::Truncated {
                checkpoint: 7,
                log: 5
            }]
        );
        assert_eq!(
            judge(&[at(3, 9)], 5, &roots),
            vec![LogBreak::Rewritten { size: 3 }]
        );
        assert_eq!(
            judge(&[at(3, 3), at(3, 9)], 5, &roots),
            vec![
                LogBreak::Forked { size: 3 },
                LogBreak::Rewritten { size: 3 }
            ]
        );
    }

    fn empty_head() -> TrailHead {
        TrailHead {
            seq: 0,
            hash: String::new(),
            tree_size: 0,
            root: String::new(),
            edge: Vec::new(),
            checkpoint_size: 0,
            checkpoint_at: 0,
        }
    }

    fn policy(every_entries: u64, every_micros: i64) -> CheckpointPolicy {
        use ring::signature::KeyPair;
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[3; 32]).unwrap();
        let (private, _) =
            LogSigner::from_seed("hub.example/log", [3; 32], pair.public_key().as_ref()).unwrap();
        CheckpointPolicy {
            signer: LogSigner::parse(&private).unwrap(),
            every_entries,
            every_micros,
        }
    }

    #[test]
    fn appends_continue_the_head_they_leave_as_one_append_would() {
        let all: Vec<AuditEntry> = (1..=11).map(entry).collect();
        let whole = empty_head().log(&[], all.clone(), None, 0).unwrap();
        let mut head = empty_head();
        let mut nodes = Vec::new();
        for part in [&all[..1], &all[1..7], &all[7..]] {
            let append = head.log(&[], part.to_vec(), None, 0).unwrap();
            nodes.extend(append.nodes);
            head = append.head;
        }
        assert_eq!(head, whole.head);
        assert_eq!(nodes, whole.nodes);
        assert_eq!(head.root, hex::encode(root_of_leaves(&all).0));
        assert_eq!(head.hash, chain_of(11).last().unwrap().hash);
        assert!(nodes.iter().all(|(index, _)| kept(*index)));
    }

    fn root_of_leaves(entries: &[AuditEntry]) -> Hash {
        let mut tree = TreeWalk::default();
        for entry in entries {
            tree.push(entry.leaf_hash());
        }
        tree.root()
    }

    #[test]
    fn the_chain_alone_leaves_the_tree_behind_and_the_log_takes_its_leaves_in_first() {
        let all: Vec<AuditEntry> = (1..=9).map(entry).collect();
        let logged = empty_head().log(&[], all[..3].to_vec(), None, 0).unwrap();
        let chained = logged.head.chain_only(all[3..5].to_vec());
        assert_eq!((chained.head.seq, chained.head.tree_size), (5, 3));
        assert_eq!(chained.head.root, logged.head.root);
        assert!(chained.nodes.is_empty() && chained.checkpoint.is_none());
        assert!(!chained.head.tree_is_whole());
        let missing = chained.head.log(&[], all[5..].to_vec(), None, 0);
        assert!(missing.is_err(), "two older leaves are owed");
        let older: Vec<Hash> = all[3..5].iter().map(AuditEntry::leaf_hash).collect();
        let caught_up = chained
            .head
            .log(&older, all[5..].to_vec(), None, 0)
            .unwrap();
        assert!(caught_up.head.tree_is_whole());
        assert_eq!(caught_up.head.root, hex::encode(root_of_leaves(&all).0));
    }

    #[test]
    fn a_checkpoint_falls_due_by_entries_or_by_time() {
        let by_entries = policy(4, i64::MAX);
        let first = empty_head()
            .log(&[], (1..=3).map(entry).collect(), Some(&by_entries), 10)
            .unwrap();
        assert!(first.checkpoint.is_none());
        let second = first
            .head
            .log(&[], vec![entry(4)], Some(&by_entries), 20)
            .unwrap();
        let signed = second.checkpoint.expect("due after four entries");
        assert_eq!((signed.size, signed.at), (4, 20));
        assert_eq!(hex::encode(signed.root.0), second.head.root);
        assert_eq!(
            (second.head.checkpoint_size, second.head.checkpoint_at),
            (4, 20)
        );
        let by_time = policy(1_000, 100);
        let soon = second
            .head
            .log(&[], vec![entry(5)], Some(&by_time), 119)
            .unwrap();
        assert!(soon.checkpoint.is_none());
        assert_eq!(soon.head.checkpoint_size, 4);
        let late = soon
            .head
            .log(&[], vec![entry(6)], Some(&by_time), 120)
            .unwrap();
        assert_eq!(late.checkpoint.map(|c| c.size), Some(6));
    }
}
