//! The supervision console in a real browser: headless Chromium (Debian's package) driven by
//! Playwright for Python (tests/browser/console.py) against a real hub with the console on, each
//! agency presenting its own certificate. What a page shows and does is then checked against the
//! gRPC API and the audit trail.
//!
//! The script needs a python3 with `playwright` and a `chromium` on the PATH: the one named by
//! `QUOTAHUB_TEST_PYTHON`, else `python3`. Without them this test says so and passes, except in CI
//! (`CI=true`), where it fails: `.ci/run` installs them. Screenshots of every page are written
//! under the target directory (the path is printed).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use quotahub::domain::AgencyKind;
use quotahub::domain::audit::LogSigner;
use quotahub::proto;
use quotahub::store::trust::{AuditFilter, CheckpointPolicy};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(each_agency_sees_and_does_in_the_console_what_the_api_allows);

/// A python3 with Playwright and a Chromium, or `None` (with a note) when there is none outside CI.
async fn python() -> Option<String> {
    let python = std::env::var("QUOTAHUB_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let usable = Command::new(&python)
        .args([
            "-c",
            "import shutil, sys, playwright.sync_api; sys.exit(0 if shutil.which('chromium') else 1)",
        ])
        .output()
        .await
        .is_ok_and(|output| output.status.success());
    if usable {
        return Some(python);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the browser tests: `{python}` cannot import playwright or there is no \
         chromium (.ci/run installs them; QUOTAHUB_TEST_PYTHON names the interpreter)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "browser test not run: `{python}` cannot import playwright or there is no chromium \
         (apt-get install chromium fonts-noto-cjk; pip install playwright; or set QUOTAHUB_TEST_PYTHON)"
    );
    None
}

fn masked(id: &str) -> String {
    format!("{}********{}", &id[..6], &id[14..])
}

/// The agencies' certificates as the browsers load them: `{kind}.pem` and `{kind}-key.pem`, and
/// `unregistered.pem`, issued by the hub's CA for 140100's organization department but never registered.
fn certificate_files(dir: &Path) {
    let write = |name: &str, certificate: &quotahub::pki::CertifiedKey| {
        std::fs::write(dir.join(format!("{name}.pem")), &certificate.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), &certificate.key_pem).unwrap();
    };
    for (name, kind) in [
        ("audit", AgencyKind::Audit),
        ("discipline", AgencyKind::Discipline),
        ("finance", AgencyKind::Finance),
        ("hr", AgencyKind::Hr),
        ("staffing-office", AgencyKind::StaffingOffice),
    ] {
        write(name, &pki().agency(&agency("140100", kind)));
    }
    let stranger = pki()
        .ca
        .issue_agency(
            &agency("140100", AgencyKind::Organization),
            quotahub::pki::Validity::default_leaf(),
        )
        .unwrap();
    write("unregistered", &stranger);
}

async fn each_agency_sees_and_does_in_the_console_what_the_api_allows(backend: Backend) {
    let Some(python) = python().await else {
        return;
    };
    // Checkpoints at every append, so that the audit page has entries to verify.
    let key_dir = tempfile::tempdir().unwrap();
    let key_path = key_dir.path().join("audit-log.key");
    quotahub::pki::log_key(&key_path, "test.quotahub/audit-log").unwrap();
    let log = CheckpointPolicy {
        signer: LogSigner::parse(&std::fs::read_to_string(&key_path).unwrap()).unwrap(),
        every_entries: 1,
        every_micros: i64::MAX,
    };
    let app = TestApp::spawn_with_console_logged(backend, log).await;
    let console = app.console.expect("the console is on");

    // An organ with a quota of 5 and one person; a ghost paid by it (吃空饷, about a person).
    let unit = uscc("140100", 1);
    let mut office = app.staffing("140100").await;
    office
        .push_institution(organ("org-1", &unit, "140100"))
        .await
        .unwrap();
    office.push_quota(quota("q-1", &unit, 5)).await.unwrap();
    app.hr("140100")
        .await
        .push_personnel_event(hire("hire-1", &resident(1), &unit, "2020-06-01"))
        .await
        .unwrap();
    app.finance("140100")
        .await
        .push_payroll_line(payroll("ghost-2", &resident(2), &unit, "2024-01"))
        .await
        .unwrap();

    // A ledger item on the organ, long overdue, with a step.
    let item = crate::ledger::open_by_hand(&app, &unit, "2020-01-31").await;
    // A case, a joint inspection of the item naming the ghost, and an application let past the
    // gate of the overdue item by the staffing office.
    let mut cases = crate::ledger::cases(&app, AgencyKind::StaffingOffice).await;
    let case = cases
        .take_report(proto::ReportRequest {
            channel: proto::ReportChannel::Hotline as i32,
            institution_uscc: unit.clone(),
            text: "某单位有人长期不上班仍领工资".into(),
            owner: "督查科 王某".into(),
            due_on: "2099-06-05".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let transfer = cases
        .transfer(proto::TransferRequest {
            kind: proto::TransferKind::JointInspection as i32,
            matter: proto::MatterKind::LedgerItem as i32,
            matter_id: item.id.clone(),
            agencies: vec![
                proto::AgencyKind::Audit as i32,
                proto::AgencyKind::Finance as i32,
            ],
            text: format!("联合督查，涉及 {}", resident(2)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let application = crate::ledger::applications(&app, AgencyKind::StaffingOffice)
        .await
        .apply(proto::ApplyRequest {
            department_uscc: unit.clone(),
            kind: proto::ApplicationKind::ChangeQuota as i32,
            reason: "新增职能".into(),
            category: proto::QuotaCategory::Administrative as i32,
            count: 6,
            override_reason: "防汛急需".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let certs = tempfile::tempdir().unwrap();
    certificate_files(certs.path());
    let screenshots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("console-screenshots")
        .join(format!("{backend:?}").to_lowercase());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args([
            "--url",
            &format!("https://127.0.0.1:{}", console.port()),
            "--certs",
            certs.path().to_str().unwrap(),
            "--screenshots",
            screenshots.to_str().unwrap(),
            "--resident",
            &resident(2),
            "--masked",
            &masked(&resident(2)),
            "--institution",
            &unit,
            "--newcomer",
            &resident(3),
            "--item",
            &item.id,
            "--case",
            &case.id,
            "--transfer",
            &transfer.id,
            "--application",
            &application.id,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run the browser script");
    // The script says when the live page is open; the push is made then, over gRPC, and the
    // script waits (with a deadline) for it to appear on the page.
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        println!("{line}");
        if line == "READY live" {
            app.finance("140100")
                .await
                .push_payroll_line(payroll("ghost-3", &resident(3), &unit, "2024-01"))
                .await
                .unwrap();
            stdin.write_all(b"PUSHED\n").await.unwrap();
            stdin.flush().await.unwrap();
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = child.wait().await.expect("the browser script ends");
    let stderr = stderr.await.unwrap();
    assert!(
        status.success(),
        "tests/browser/console.py failed ({status}):\n{stdout}\n{stderr}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "console screenshots in {}",
        screenshots.display()
    );
    let result: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .expect("the script's result"),
    )
    .unwrap();

    // The acknowledgement made in the page is what a gRPC read returns.
    let mut reader = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Discipline)).await,
    );
    let findings = reader
        .list_findings(proto::ListFindingsRequest {
            codes: vec![proto::RuleCode::PaidNotOnRoll as i32],
            institution_uscc: unit.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert_eq!(
        findings.len(),
        2,
        "the ghost of the page, and the one pushed meanwhile"
    );
    let acknowledged = findings
        .iter()
        .find(|finding| finding.subject == resident(2))
        .unwrap();
    assert_eq!(
        acknowledged.alert_state,
        proto::AlertState::Acknowledged as i32
    );
    assert_eq!(
        Some(acknowledged.version),
        result["version_after"].as_u64(),
        "the version the page showed after the transition is the stored one"
    );

    // Every page is in the audit trail, the refused ones too.
    app.audit.flush().await;
    let entries = app
        .store
        .audit_entries(&AuditFilter {
            limit: 100_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let has = |agency: &str, method: &str, outcome: &str| {
        entries.iter().any(|row| {
            row.entry.agency_id == agency
                && row.entry.method == method
                && row.entry.outcome == outcome
        })
    };
    assert!(has("140100/finance", "console GET /finding", "OK"));
    assert!(has(
        "140100/discipline",
        "console POST /finding/transition",
        "OK"
    ));
    assert!(has(
        "140100/discipline",
        "console POST /finding/transition",
        "ABORTED"
    ));
    assert!(has(
        "140100/hr",
        "console POST /finding/transition",
        "PERMISSION_DENIED"
    ));
    assert!(
        has("", "console GET /", "UNAUTHENTICATED"),
        "no certificate"
    );
    assert!(
        has("140100/organization", "console GET /", "UNAUTHENTICATED"),
        "unregistered"
    );
    // The live page's stream: opened (naming the calls), and its end recorded with the cursor.
    assert!(has("140100/discipline", "console GET /live/events", "OK"));
    let opened = entries
        .iter()
        .find(|row| row.entry.method == "console GET /live/events")
        .unwrap();
    assert!(
        opened
            .entry
            .touched
            .contains("/quotahub.v1.FeedService/Subscribe"),
        "{}",
        opened.entry.touched
    );
    // The audit trail is the auditors' and inspectors': HR is refused it.
    assert!(has("140100/audit", "console GET /audit", "OK"));
    assert!(has("140100/hr", "console GET /audit", "PERMISSION_DENIED"));
    // The follow-up lists, each a call of its RPC under the viewer's identity.
    let listed = entries
        .iter()
        .find(|row| {
            row.entry.agency_id == "140100/staffing-office"
                && row.entry.method == "console GET /cases"
        })
        .expect("the cases page is in the trail");
    assert!(
        listed
            .entry
            .touched
            .contains("/quotahub.v1.CaseService/ListCases"),
        "{}",
        listed.entry.touched
    );
    assert!(has("140100/finance", "console GET /transfers", "OK"));
    assert!(has("140100/hr", "console GET /cases", "PERMISSION_DENIED"));
    // The live page acknowledged what it showed (the subscription's cursor moved past the
    // newcomer's event), and the stream's end, once the browser left, is in the trail with it.
    let mut feed = proto::feed_service_client::FeedServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Discipline)).await,
    );
    let live_seq = result["live_seq"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let acked = feed
            .get_subscription(proto::SubscriptionName {
                name: "console-live".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .acked_seq;
        app.audit.flush().await;
        let ended = app
            .store
            .audit_entries(&AuditFilter {
                limit: 100_000,
                ..AuditFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .any(|row| {
                row.entry.method == "console GET /live/events (ended)"
                    && row.entry.touched.contains("events sent")
            });
        if acked >= live_seq && ended {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the console acknowledged through {acked}, not the shown {live_seq}, or the \
             stream's end is not in the trail ({ended})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
