//! The audit trail as a transparency log (issue 15): witnesses keep the hub's signed checkpoints
//! and catch what the hash chain alone cannot — the tail cut off with the head moved back, an entry
//! rewritten with the chain recomputed after it, two logs shown under one key; proofs and
//! checkpoints are checked by a second implementation (tests/interop/tlog_verify.py, RFC 9162's
//! algorithms over hashlib; Ed25519 through ring rather than the hub's ed25519-dalek).

use std::path::{Path, PathBuf};

use base64::Engine;
use quotahub::audit::Verdict;
use quotahub::domain::AgencyKind;
use quotahub::domain::audit::{
    AuditEntry, ChainedEntry, Hash, LogSigner, chain, open_checkpoint, verify_consistency,
    verify_inclusion,
};
use quotahub::proto;
use quotahub::server::Application;
use quotahub::store::trust::{AuditFilter, CheckpointPolicy};
use quotahub::store::{Store, StoreOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_witness_holding_an_older_checkpoint_catches_a_truncated_tail,
    a_witness_catches_a_rewritten_middle_entry_and_a_fork,
    proofs_and_checkpoints_check_with_an_independent_verifier,
    two_replicas_issue_checkpoints_of_one_log,
    a_subscriber_keeps_the_checkpoints_the_feed_publishes_and_refuses_a_fork,
    an_idle_hub_signs_the_entries_waiting_on_its_timer,
    an_evidence_bundle_verifies_offline_and_names_what_was_changed,
    a_masked_bundle_verifies_and_a_transfer_carries_one,
);

/// A log key made the way `quotahub serve` makes the development one.
struct LogKey {
    dir: tempfile::TempDir,
    signer: LogSigner,
    public: String,
}

fn log_key() -> LogKey {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-log.key");
    let public = quotahub::pki::log_key(&path, "test.quotahub/audit-log").unwrap();
    let signer = LogSigner::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(signer.public_key(), public);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("audit-log.pub"))
            .unwrap()
            .trim(),
        public
    );
    LogKey {
        dir,
        signer,
        public,
    }
}

/// A checkpoint at every append, so that the tests know where they stand.
fn every_append(key: &LogKey) -> CheckpointPolicy {
    CheckpointPolicy {
        signer: key.signer.clone(),
        every_entries: 1,
        every_micros: i64::MAX,
    }
}

async fn push_some(app: &TestApp, from: u32, count: u32) {
    let mut staffing = app.staffing("140100").await;
    for n in from..from + count {
        staffing
            .push_institution(organ(&format!("i{n}"), &uscc("140100", n), "140100"))
            .await
            .unwrap();
    }
}

fn auditor(
    channel: tonic::transport::Channel,
) -> proto::audit_service_client::AuditServiceClient<tonic::transport::Channel> {
    proto::audit_service_client::AuditServiceClient::new(channel)
}

/// What a witness (the province's audit agency) takes from the hub: its latest checkpoint, once
/// every call so far is in the log.
async fn witness(app: &TestApp) -> proto::SignedCheckpoint {
    app.audit.flush().await;
    auditor(app.channel(&agency("140000", AgencyKind::Audit)).await)
        .get_checkpoint(proto::GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// Kept in a file, as `quotahub audit verify --checkpoint` reads it.
fn keep(key: &LogKey, name: &str, note: &str) -> PathBuf {
    let path = key.dir.path().join(name);
    std::fs::write(&path, note).unwrap();
    path
}

async fn entries(store: &Store) -> Vec<ChainedEntry> {
    store
        .audit_entries(&AuditFilter {
            limit: 100_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

/// The attacker with the database (not the log key): writes `entries` as the whole trail, the
/// chain recomputed the hub's way, the head and the tree's root moved to match, the stored tree
/// and the hub's own checkpoints dropped. Every hash in the database agrees afterwards.
async fn forge(store: &Store, entries: Vec<AuditEntry>) {
    let root = root_of(&entries);
    let rows = chain(0, "", entries);
    for statement in [
        "DELETE FROM audit_log",
        "DELETE FROM audit_tree",
        "DELETE FROM audit_checkpoints",
    ] {
        sqlx::query(statement)
            .execute(store.readers())
            .await
            .unwrap();
    }
    for row in &rows {
        sqlx::query(
            "INSERT INTO audit_log (seq, at, agency_id, jurisdiction, fingerprint, peer, method, \
             touched, outcome, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(row.seq)
        .bind(row.entry.at)
        .bind(row.entry.agency_id.clone())
        .bind(row.entry.jurisdiction.clone())
        .bind(row.entry.fingerprint.clone())
        .bind(row.entry.peer.clone())
        .bind(row.entry.method.clone())
        .bind(row.entry.touched.clone())
        .bind(row.entry.outcome.clone())
        .bind(row.prev_hash.clone())
        .bind(row.hash.clone())
        .execute(store.readers())
        .await
        .unwrap();
    }
    let last = rows.last().unwrap();
    sqlx::query(
        "UPDATE audit_head SET seq = $1, hash = $2, tree_size = $1, root = $3, \
         checkpoint_size = $1 WHERE id = 1",
    )
    .bind(last.seq)
    .bind(last.hash.clone())
    .bind(hex::encode(root.0))
    .execute(store.readers())
    .await
    .unwrap();
}

/// `quotahub audit verify --checkpoint ...`: whether it passed, and what it said.
async fn verify_cli(url: &str, key: &LogKey, checkpoints: &[&Path]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quotahub"));
    command.args([
        "audit",
        "verify",
        "--database-url",
        url,
        "--log-key",
        &key.public,
    ]);
    for path in checkpoints {
        command.arg("--checkpoint").arg(path);
    }
    let output = command.output().await.unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

async fn reopen(app: &mut TestApp) -> Store {
    app.stop().await;
    Store::connect(app.db.url(), &StoreOptions::default())
        .await
        .unwrap()
}

async fn a_witness_holding_an_older_checkpoint_catches_a_truncated_tail(backend: Backend) {
    let key = log_key();
    let mut app = TestApp::spawn_logged(backend, every_append(&key)).await;
    push_some(&app, 0, 6).await;
    let kept = witness(&app).await;
    let checkpoint = open_checkpoint(&kept.note, &key.public).unwrap();
    assert_eq!(checkpoint.size, kept.tree_size);
    let file = keep(&key, "witness.checkpoint", &kept.note);
    push_some(&app, 6, 4).await;
    let store = reopen(&mut app).await;

    let (sound, said) = verify_cli(app.db.url(), &key, &[&file]).await;
    assert!(sound, "{said}");
    assert!(said.contains("audit log consistent"), "{said}");

    // The attack of the issue: the last entries deleted, the head pointed at the new last one.
    let original = entries(&store).await;
    let kept_entries = kept.tree_size as usize - 2;
    forge(
        &store,
        original[..kept_entries]
            .iter()
            .map(|row| row.entry.clone())
            .collect(),
    )
    .await;
    // The chain alone finds nothing: this is what `audit verify` reported before the log.
    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Whole(kept_entries as i64)
    );
    let (sound, said) = verify_cli(app.db.url(), &key, &[&file]).await;
    assert!(!sound, "{said}");
    assert!(said.contains("audit chain whole"), "{said}");
    assert!(
        said.contains(&format!(
            "TRUNCATED: a checkpoint of {} entries was signed, the log holds only {kept_entries}",
            kept.tree_size
        )),
        "{said}"
    );
    store.close().await;
}

async fn a_witness_catches_a_rewritten_middle_entry_and_a_fork(backend: Backend) {
    let key = log_key();
    let mut app = TestApp::spawn_logged(backend, every_append(&key)).await;
    push_some(&app, 0, 6).await;
    let kept = witness(&app).await;
    let size = kept.tree_size;
    let file = keep(&key, "witness.checkpoint", &kept.note);
    push_some(&app, 6, 3).await;
    let store = reopen(&mut app).await;

    // A middle entry rewritten (a refusal made a success), every hash after it recomputed.
    let mut rewritten: Vec<AuditEntry> = entries(&store)
        .await
        .into_iter()
        .map(|row| row.entry)
        .collect();
    rewritten[2].outcome = "PERMISSION_DENIED".into();
    forge(&store, rewritten.clone()).await;
    assert!(matches!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Whole(_)
    ));
    let (sound, said) = verify_cli(app.db.url(), &key, &[&file]).await;
    assert!(!sound, "{said}");
    assert!(
        said.contains(&format!(
            "REWRITTEN: the first {size} entries no longer hash to the root signed for them"
        )),
        "{said}"
    );
    assert!(!said.contains("FORKED"), "{said}");

    // A fork: the hub's key signs the rewritten log at the size the witness holds, and shows that
    // checkpoint to another witness (and keeps it as its own).
    let forked = key
        .signer
        .sign(size, root_of(&rewritten[..size as usize]))
        .unwrap();
    let other = keep(&key, "other.checkpoint", &forked);
    let (sound, said) = verify_cli(app.db.url(), &key, &[&file, &other]).await;
    assert!(!sound, "{said}");
    assert!(
        said.contains(&format!(
            "FORKED: two signed checkpoints of {size} entries have different roots"
        )),
        "{said}"
    );
    sqlx::query(
        "INSERT INTO audit_checkpoints (tree_size, root, note, issued_at) VALUES ($1, $2, $3, 0)",
    )
    .bind(size as i64)
    .bind(hex::encode(root_of(&rewritten[..size as usize]).0))
    .bind(forked)
    .execute(store.readers())
    .await
    .unwrap();
    let (sound, said) = verify_cli(app.db.url(), &key, &[&file]).await;
    assert!(!sound, "{said}");
    assert!(said.contains("FORKED"), "{said}");
    // The rewritten log holds to its own (forked) checkpoint: only the witness tells.
    let (sound, said) = verify_cli(app.db.url(), &key, &[&other]).await;
    assert!(sound, "{said}");
    // A checkpoint slipped into the hub's table without the key is named too.
    let unsigned = kept.note.replacen(&format!("\n{size}\n"), "\n1\n", 1);
    sqlx::query(
        "INSERT INTO audit_checkpoints (tree_size, root, note, issued_at) VALUES (1, $1, $2, 0)",
    )
    .bind(hex::encode([0u8; 32]))
    .bind(unsigned)
    .execute(store.readers())
    .await
    .unwrap();
    let (sound, said) = verify_cli(app.db.url(), &key, &[&other]).await;
    assert!(!sound, "{said}");
    assert!(
        said.contains("stored checkpoint of 1 entries is not signed by the log key"),
        "{said}"
    );
    store.close().await;
}

/// Checks a signed note's signature with ring, from the public key's bytes alone.
fn ring_verifies(note: &str, public: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(public.splitn(3, '+').nth(2).unwrap()).unwrap();
    let (text, signatures) = note.split_once("\n\n").unwrap();
    let line = signatures.lines().next().unwrap();
    let signature = b64.decode(line.rsplit(' ').next().unwrap()).unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key[1..])
        .verify(format!("{text}\n").as_bytes(), &signature[4..])
        .is_ok()
}

/// python3 for the independent verifier (stdlib only), or `None` with a note outside CI.
async fn python() -> Option<String> {
    let python = std::env::var("QUOTAHUB_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let usable = Command::new(&python)
        .args(["-c", "import hashlib, json, base64"])
        .output()
        .await
        .is_ok_and(|output| output.status.success());
    if usable {
        return Some(python);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the independent log verifier: no `{python}`"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "independent log verifier not run: no `{python}` (set QUOTAHUB_TEST_PYTHON)"
    );
    None
}

fn hexes(hashes: &[Vec<u8>]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn hashes(proof: &[Vec<u8>]) -> Vec<Hash> {
    proof
        .iter()
        .map(|hash| Hash(hash.as_slice().try_into().unwrap()))
        .collect()
}

async fn proofs_and_checkpoints_check_with_an_independent_verifier(backend: Backend) {
    let key = log_key();
    let app = TestApp::spawn_logged(backend, every_append(&key)).await;
    // Past 16 and 32 entries, so that the proofs use kept hashes and hashes made from entries.
    push_some(&app, 0, 19).await;
    let old = witness(&app).await;
    push_some(&app, 19, 20).await;
    let new = witness(&app).await;
    assert!(
        old.tree_size > 16 && new.tree_size > 32,
        "{} {}",
        old.tree_size,
        new.tree_size
    );
    for checkpoint in [&old, &new] {
        assert!(
            ring_verifies(&checkpoint.note, &key.public),
            "{}",
            checkpoint.note
        );
        assert!(!ring_verifies(
            &checkpoint.note.replacen('\n', "\n1", 1),
            &key.public
        ));
    }
    let mut client = auditor(app.channel(&agency("140000", AgencyKind::Audit)).await);
    let consistency = client
        .get_consistency_proof(proto::ConsistencyProofRequest {
            old_size: old.tree_size,
            new_size: new.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    let root = |c: &proto::SignedCheckpoint| Hash(c.root_hash.as_slice().try_into().unwrap());
    assert!(verify_consistency(
        &hashes(&consistency.hashes),
        old.tree_size,
        root(&old),
        new.tree_size,
        root(&new)
    ));
    let all = entries(&app.store).await;
    let mut inclusion = Vec::new();
    for (seq, size) in [
        (1, new.tree_size),
        (old.tree_size, new.tree_size),
        (new.tree_size, new.tree_size),
        (3, old.tree_size),
    ] {
        let proof = client
            .get_inclusion_proof(proto::InclusionProofRequest {
                seq: seq as i64,
                tree_size: size,
            })
            .await
            .unwrap()
            .into_inner();
        let entry = &all[seq as usize - 1].entry;
        assert_eq!(proof.leaf_hash, entry.leaf_hash().0.to_vec());
        let checkpoint = if size == old.tree_size { &old } else { &new };
        assert!(verify_inclusion(
            &hashes(&proof.hashes),
            size,
            root(checkpoint),
            seq - 1,
            entry.leaf_hash()
        ));
        inclusion.push(serde_json::json!({
            "index": seq - 1,
            "size": size,
            "leaf": hex::encode(entry.canonical_bytes()),
            "proof": hexes(&proof.hashes),
        }));
    }
    // A size past the log is refused.
    let status = client
        .get_inclusion_proof(proto::InclusionProofRequest {
            seq: 1,
            tree_size: new.tree_size + 1_000,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let Some(python) = python().await else { return };
    // The genuine ones, then a proof for the wrong entry and a consistency proof with a byte off.
    let mut wrong_leaf = inclusion[0].clone();
    wrong_leaf["leaf"] = serde_json::json!(hex::encode(all[1].entry.canonical_bytes()));
    inclusion.push(wrong_leaf);
    let mut bent = consistency.hashes.clone();
    if let Some(first) = bent.first_mut() {
        first[0] ^= 1;
    }
    let asked = serde_json::json!({
        "checkpoints": [old.note, new.note],
        "consistency": [
            {"old": old.tree_size, "new": new.tree_size, "proof": hexes(&consistency.hashes)},
            {"old": old.tree_size, "new": new.tree_size, "proof": hexes(&bent)},
        ],
        "inclusion": inclusion,
    });
    let mut child = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tlog_verify.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(asked.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [
            "consistency 0: OK",
            "consistency 1: FAIL",
            "inclusion 0: OK",
            "inclusion 1: OK",
            "inclusion 2: OK",
            "inclusion 3: OK",
            "inclusion 4: FAIL",
        ],
        "{said}"
    );
}

/// A second hub on the same database, with the same log key.
struct Replica {
    address: std::net::SocketAddr,
    audit: quotahub::audit::AuditSink,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    async fn start(url: &str, log: CheckpointPolicy) -> Replica {
        let store = Store::connect(url, &StoreOptions::default())
            .await
            .unwrap()
            .with_log(log);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let application = Application::with_listener(
            listener,
            store,
            &pki().server_tls(),
            quotahub::api::Limits::default(),
        )
        .unwrap();
        let address = application.local_addr();
        let audit = application.audit();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Replica {
            address,
            audit,
            stop: Some(stop),
            server,
        }
    }

    async fn staffing(
        &self,
    ) -> proto::staffing_service_client::StaffingServiceClient<tonic::transport::Channel> {
        let pki = pki();
        let certificate = pki.agency(&agency("140100", AgencyKind::StaffingOffice));
        proto::staffing_service_client::StaffingServiceClient::new(
            quotahub::tls::client_channel(
                &format!("https://{}", self.address),
                pki.ca.cert_pem().as_bytes(),
                certificate.cert_pem.as_bytes(),
                certificate.key_pem.as_bytes(),
            )
            .await
            .unwrap(),
        )
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.await.unwrap().unwrap();
    }
}

async fn two_replicas_issue_checkpoints_of_one_log(backend: Backend) {
    let key = log_key();
    let mut app = TestApp::spawn_logged(backend, every_append(&key)).await;
    let replica = Replica::start(app.db.url(), every_append(&key)).await;
    let mut first = app.staffing("140100").await;
    let mut second = replica.staffing().await;
    for n in 0..6 {
        let (a, b) = tokio::join!(
            first.push_institution(organ(&format!("a{n}"), &uscc("140100", n), "140100")),
            second.push_institution(organ(&format!("b{n}"), &uscc("140100", 100 + n), "140100")),
        );
        a.unwrap();
        b.unwrap();
    }
    app.audit.flush().await;
    replica.audit.flush().await;
    replica.stop().await;
    let store = reopen(&mut app).await;

    // Both issued checkpoints, all of one log: each holds against the entries, and each older one
    // is a prefix of each newer one.
    let stored = store.audit_checkpoints().await.unwrap();
    assert!(stored.len() >= 2, "{stored:?}");
    let report = quotahub::audit::verify_log(&store, &[], Some(&key.public))
        .await
        .unwrap();
    assert!(matches!(report.chain, Verdict::Whole(_)), "{report:?}");
    assert_eq!(report.breaks, vec![], "{report:?}");
    assert_eq!(report.checkpoints, stored.len());
    let (size, _) = store.audit_tree_head().await.unwrap();
    let all = entries(&store).await;
    assert_eq!(size, all.len() as u64);
    for pair in stored.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let query = quotahub::domain::audit::TreeQuery::Consistency {
            old: old.size,
            new: new.size,
        };
        let proof = query
            .answer(&store.audit_tree_hashes(&query.needs()).await.unwrap())
            .unwrap();
        assert!(verify_consistency(
            &proof, old.size, old.root, new.size, new.root
        ));
    }
    store.close().await;
}

/// Checkpoints only when the test (or the export of evidence) asks for one.
fn on_demand(key: &LogKey) -> CheckpointPolicy {
    CheckpointPolicy {
        signer: key.signer.clone(),
        every_entries: u64::MAX,
        every_micros: i64::MAX,
    }
}

/// `quotahub subscribe --checkpoint-file` for the discipline agency of 140100, in this process.
fn witness_args(
    app: &TestApp,
    files: &ClientFiles,
    file: &Path,
    key: &LogKey,
) -> quotahub::cli::subscribe::SubscribeArgs {
    use clap::Parser;
    let cli = quotahub::cli::Cli::parse_from([
        "quotahub",
        "subscribe",
        "--server",
        &app.endpoint(),
        "--ca",
        &files.ca,
        "--cert",
        &files.cert,
        "--key",
        &files.key,
        "--name",
        "witness",
        "--checkpoint-file",
        file.to_str().unwrap(),
        "--log-key",
        &key.public,
    ]);
    let quotahub::cli::Command::Subscribe(args) = cli.command else {
        panic!("subscribe")
    };
    args
}

/// Waits (bounded) until the file holds a checkpoint of at least `size` entries.
async fn held(file: &Path, key: &LogKey, size: u64) -> u64 {
    for _ in 0..600 {
        if let Ok(note) = std::fs::read_to_string(file) {
            let kept = open_checkpoint(&note, &key.public).unwrap();
            if kept.size >= size {
                return kept.size;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the witness never kept a checkpoint of {size} entries");
}

async fn a_subscriber_keeps_the_checkpoints_the_feed_publishes_and_refuses_a_fork(
    backend: Backend,
) {
    let key = log_key();
    let app = TestApp::spawn_logged(backend, on_demand(&key)).await;
    push_some(&app, 0, 3).await;
    app.audit.flush().await;
    let first = app.store.issue_checkpoint(true).await.unwrap().unwrap();
    let files = ClientFiles::new(&agency("140100", AgencyKind::Discipline));
    let file = key.dir.path().join("witness.checkpoint");
    let printed = Printed::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let subscriber = tokio::spawn(quotahub::cli::subscribe::run(
        witness_args(&app, &files, &file, &key),
        printed.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    // The latest checkpoint as the stream opens: the first one a witness holds.
    assert_eq!(held(&file, &key, first.size).await, first.size);

    // A newer one replaces it once a consistency proof from the one held checks.
    push_some(&app, 3, 4).await;
    app.audit.flush().await;
    let second = app.store.issue_checkpoint(true).await.unwrap().unwrap();
    assert!(second.size > first.size);
    assert_eq!(held(&file, &key, second.size).await, second.size);
    assert!(
        printed.text().contains(&format!(
            "checkpoint of {} entries kept, consistent with the one of {} held before",
            second.size, first.size
        )),
        "{}",
        printed.text()
    );

    // The hub's key signs a log that does not extend the one the witness holds (a fork shown to
    // this witness): refused, loudly, the file unchanged, the hub's checkpoint kept beside it.
    app.audit.flush().await;
    let (size, _) = app.store.audit_tree_head().await.unwrap();
    assert!(size > second.size);
    let forged_root = root_of(&[AuditEntry {
        at: 0,
        agency_id: String::new(),
        jurisdiction: String::new(),
        fingerprint: String::new(),
        peer: String::new(),
        method: "forged".into(),
        touched: String::new(),
        outcome: String::new(),
    }]);
    let forged = key.signer.sign(size, forged_root).unwrap();
    sqlx::query(
        "INSERT INTO audit_checkpoints (tree_size, root, note, issued_at) VALUES ($1, $2, $3, 0)",
    )
    .bind(size as i64)
    .bind(hex::encode(forged_root.0))
    .bind(forged.clone())
    .execute(app.store.readers())
    .await
    .unwrap();
    let refused = tokio::time::timeout(std::time::Duration::from_secs(60), subscriber)
        .await
        .expect("the witness refused the forged checkpoint")
        .unwrap()
        .unwrap_err()
        .to_string();
    drop(stop);
    assert!(
        refused.contains(&format!(
            "REWRITTEN or FORKED: the checkpoint of {} entries is not a prefix of the one of {size} entries",
            second.size
        )),
        "{refused}"
    );
    let kept = open_checkpoint(&std::fs::read_to_string(&file).unwrap(), &key.public).unwrap();
    assert_eq!(kept.size, second.size);
    assert_eq!(
        std::fs::read_to_string(key.dir.path().join("witness.checkpoint.rejected")).unwrap(),
        forged
    );
}

async fn an_idle_hub_signs_the_entries_waiting_on_its_timer(backend: Backend) {
    let key = log_key();
    let app = TestApp::spawn_logged(
        backend,
        CheckpointPolicy {
            signer: key.signer.clone(),
            every_entries: u64::MAX,
            every_micros: 2_000_000,
        },
    )
    .await;
    app.audit.flush().await;
    // Two appends at once: the first is due (no checkpoint yet, or one long ago), the second,
    // within the interval, is not: it waits unsigned, and no call comes to sign it.
    let entry = |n: i64| AuditEntry {
        at: n,
        agency_id: String::new(),
        jurisdiction: String::new(),
        fingerprint: String::new(),
        peer: "127.0.0.1:1".into(),
        method: "tls-handshake".into(),
        touched: String::new(),
        outcome: "test".into(),
    };
    app.store.append_audit(vec![entry(1)]).await.unwrap();
    let waiting = app.store.append_audit(vec![entry(2)]).await.unwrap();
    let signed = |app: &TestApp| {
        let store = app.store.clone();
        async move {
            store
                .audit_checkpoint(None)
                .await
                .unwrap()
                .map_or(0, |checkpoint| checkpoint.size)
        }
    };
    assert!(signed(&app).await < waiting as u64);
    let mut latest = 0;
    for _ in 0..300 {
        latest = signed(&app).await;
        if latest >= waiting as u64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        latest, waiting as u64,
        "the idle hub never signed entry {waiting}"
    );
    let report = quotahub::audit::verify_log(&app.store, &[], Some(&key.public))
        .await
        .unwrap();
    assert_eq!(report.breaks, vec![], "{report:?}");
}

/// A finding with a record behind it: pay to a person on no roll (PAID_NOT_ON_ROLL), pushed by
/// the finance bureau of 140100 as `ghost-1`. Answers the alert's id.
async fn ghost_pay(app: &TestApp) -> String {
    app.finance("140100")
        .await
        .push_payroll_line(payroll(
            "ghost-1",
            &resident(1),
            &uscc("140100", 1),
            "2024-01",
        ))
        .await
        .unwrap();
    let findings = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Discipline)).await,
    )
    .list_findings(proto::ListFindingsRequest::default())
    .await
    .unwrap()
    .into_inner()
    .findings;
    let finding = findings
        .iter()
        .find(|f| f.code == proto::RuleCode::PaidNotOnRoll as i32)
        .expect("PAID_NOT_ON_ROLL raised");
    format!(
        "PAID_NOT_ON_ROLL|{}|{}|{}",
        finding.institution_uscc, finding.subject, finding.period
    )
}

async fn export(app: &TestApp, kind: AgencyKind, id: &str) -> proto::EvidenceBundle {
    proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", kind)).await,
    )
    .export_evidence(proto::ExportEvidenceRequest {
        matter: proto::MatterKind::Alert as i32,
        matter_id: id.to_owned(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// `quotahub evidence verify FILE --log-key KEY`: whether it passed, and what it said.
async fn verify_bundle(file: &Path, key: &LogKey) -> (bool, String) {
    use clap::Parser;
    let cli = quotahub::cli::Cli::parse_from([
        "quotahub",
        "evidence",
        "verify",
        file.to_str().unwrap(),
        "--log-key",
        &key.public,
    ]);
    let quotahub::cli::Command::Evidence { command } = cli.command else {
        panic!("evidence")
    };
    let mut out = Vec::new();
    let status = quotahub::cli::evidence::run(command, &mut out)
        .await
        .unwrap();
    (
        status == std::process::ExitCode::SUCCESS,
        String::from_utf8(out).unwrap(),
    )
}

async fn an_evidence_bundle_verifies_offline_and_names_what_was_changed(backend: Backend) {
    let key = log_key();
    let app = TestApp::spawn_logged(backend, on_demand(&key)).await;
    let id = ghost_pay(&app).await;
    // Exported with the command, as the discipline agency (it sees personal data whole).
    let files = ClientFiles::new(&agency("140100", AgencyKind::Discipline));
    let file = key.dir.path().join("evidence.json");
    {
        use clap::Parser;
        let cli = quotahub::cli::Cli::parse_from([
            "quotahub",
            "evidence",
            "export",
            "--server",
            &app.endpoint(),
            "--ca",
            &files.ca,
            "--cert",
            &files.cert,
            "--key",
            &files.key,
            "--id",
            &id,
            "--out",
            file.to_str().unwrap(),
        ]);
        let quotahub::cli::Command::Evidence { command } = cli.command else {
            panic!("evidence")
        };
        let mut out = Vec::new();
        quotahub::cli::evidence::run(command, &mut out)
            .await
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("sealed by audit entry"), "{out}");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(bundle["format"], "quotahub-evidence-bundle/1");
    assert_eq!(bundle["records"][0]["kind"], "payroll_line");
    assert_eq!(bundle["records"][0]["agency_id"], "140100/finance");
    assert_eq!(bundle["records"][0]["record_id"]["value"], "ghost-1");
    assert_eq!(
        bundle["records"][0]["fields"]["resident_id"]["value"],
        resident(1).as_str()
    );
    let (sound, said) = verify_bundle(&file, &key).await;
    assert!(sound, "{said}");
    assert!(said.contains("evidence bundle VERIFIED"), "{said}");
    assert!(
        said.contains("140100/finance called /quotahub.v1.FinanceService/PushPayrollLine naming record `ghost-1`"),
        "{said}"
    );
    assert!(said.contains("The export by 140100/discipline"), "{said}");
    // Proven into the checkpoint the hub serves to witnesses.
    let checkpoint = witness(&app).await;
    let in_bundle = open_checkpoint(bundle["checkpoint"].as_str().unwrap(), &key.public).unwrap();
    assert!(checkpoint.tree_size >= in_bundle.size);

    // Each change is caught, and named.
    let changed = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut bundle = bundle.clone();
        edit(&mut bundle);
        let path = key.dir.path().join("changed.json");
        std::fs::write(&path, serde_json::to_string_pretty(&bundle).unwrap()).unwrap();
        path
    };
    let amount = bundle["records"][0]["fields"]["gross_fen"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let one_more = (amount.parse::<i64>().unwrap() + 1).to_string();
    let path =
        changed(&|b| b["records"][0]["fields"]["gross_fen"]["value"] = one_more.clone().into());
    let (sound, said) = verify_bundle(&path, &key).await;
    assert!(!sound, "{said}");
    assert!(
        said.contains("FAILED: record 1 (payroll_line 140100/finance/ghost-1): its fields do not match its digest"),
        "{said}"
    );
    let path = changed(&|b| {
        let proof = b["entries"][0]["proof"][0].as_str().unwrap().to_owned();
        let flipped = if proof.starts_with('0') { "1" } else { "0" };
        b["entries"][0]["proof"][0] = format!("{flipped}{}", &proof[1..]).into();
    });
    let seq = bundle["entries"][0]["seq"].as_i64().unwrap();
    let (sound, said) = verify_bundle(&path, &key).await;
    assert!(!sound, "{said}");
    assert!(
        said.contains(&format!(
            "FAILED: audit entry {seq}: its inclusion proof does not prove it"
        )),
        "{said}"
    );
    let path = changed(&|b| b["entries"][0]["touched"] = "record_id ghost-2".into());
    let (sound, said) = verify_bundle(&path, &key).await;
    assert!(!sound, "{said}");
    assert!(
        said.contains(&format!(
            "FAILED: audit entry {seq}: its fields do not hash"
        )),
        "{said}"
    );
    // The bundle's proofs and checkpoint check with the independent verifier too.
    if let Some(python) = python().await {
        let inclusion: Vec<serde_json::Value> = bundle["entries"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&bundle["seal"]])
            .map(|e| {
                let text = |key: &str| e[key].as_str().unwrap().to_owned();
                let entry = AuditEntry {
                    at: e["at"].as_i64().unwrap(),
                    agency_id: text("agency_id"),
                    jurisdiction: text("jurisdiction"),
                    fingerprint: text("fingerprint"),
                    peer: text("peer"),
                    method: text("method"),
                    touched: text("touched"),
                    outcome: text("outcome"),
                };
                serde_json::json!({
                    "index": e["seq"].as_i64().unwrap() - 1,
                    "size": in_bundle.size,
                    "leaf": hex::encode(entry.canonical_bytes()),
                    "proof": e["proof"],
                })
            })
            .collect();
        let asked = serde_json::json!({
            "checkpoints": [bundle["checkpoint"]],
            "inclusion": inclusion,
        });
        let mut child = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tlog_verify.py"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(asked.to_string().as_bytes()).await.unwrap();
        drop(stdin);
        let said = String::from_utf8(child.wait_with_output().await.unwrap().stdout).unwrap();
        assert_eq!(said.lines().count(), inclusion.len(), "{said}");
        assert!(said.lines().all(|line| line.ends_with(": OK")), "{said}");
    }
    let path = changed(&|b| b["records"][0]["content_hash"] = "00".repeat(32).into());
    let (sound, said) = verify_bundle(&path, &key).await;
    assert!(!sound && said.contains("FAILED: record 1"), "{said}");
    let other = log_key();
    let (sound, said) = verify_bundle(&file, &other).await;
    assert!(
        !sound && said.contains("FAILED: checkpoint: not signed by the log key"),
        "{said}"
    );
}

async fn a_masked_bundle_verifies_and_a_transfer_carries_one(backend: Backend) {
    let key = log_key();
    let app = TestApp::spawn_logged(backend, on_demand(&key)).await;
    let id = ghost_pay(&app).await;
    // Finance reads people by token and pay in the clear; the organization department knows who
    // people are but not what they are paid.
    for kind in [AgencyKind::Finance, AgencyKind::Organization] {
        let exported = export(&app, kind, &id).await;
        let bundle = quotahub::domain::evidence::Bundle::from_json(&exported.json).unwrap();
        assert!(bundle.personal_data_masked);
        let found = quotahub::domain::evidence::verify(&bundle, &key.public);
        assert!(found.sound(), "{kind}: {found:?}");
        let record = &bundle.records[0];
        let hidden = if kind == AgencyKind::Finance {
            "resident_id"
        } else {
            "gross_fen"
        };
        assert!(record.fields[hidden].value.is_none(), "{kind}: {record:?}");
        assert!(
            record.fields[hidden].commitment.is_some(),
            "{kind}: {record:?}"
        );
        if kind == AgencyKind::Finance {
            assert!(!exported.json.contains(&resident(1)), "{}", exported.json);
        }
    }
    // A transfer to discipline inspection attaches the matter's bundle.
    let transfer = proto::case_service_client::CaseServiceClient::new(
        app.channel(&agency("140100", AgencyKind::StaffingOffice))
            .await,
    )
    .transfer(proto::TransferRequest {
        kind: proto::TransferKind::Transfer as i32,
        matter: proto::MatterKind::Alert as i32,
        matter_id: id.clone(),
        text: "移送".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    let bundle = quotahub::domain::evidence::Bundle::from_json(&transfer.evidence_bundle).unwrap();
    assert_eq!(bundle.exported_by, "140100/staffing-office");
    let found = quotahub::domain::evidence::verify(&bundle, &key.public);
    assert!(found.sound(), "{found:?}");
}
