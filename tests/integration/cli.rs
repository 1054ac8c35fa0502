//! The command line as a newcomer uses it: `serve` with nothing configured makes its certificates
//! and database; `import` pushes a file as an agency.

use std::process::ExitCode;

use clap::Parser;
use quotahub::cli::{Cli, Command};
use quotahub::config::Settings;
use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::server::Application;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(import_pushes_a_csv_file_and_reports_refusals);

async fn import_pushes_a_csv_file_and_reports_refusals(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let dir = tempfile::tempdir().unwrap();
    let files = ClientFiles::new(&agency("140100", AgencyKind::Finance));
    let (ca, cert, key) = (files.ca.clone(), files.cert.clone(), files.key.clone());
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let mut csv = String::from("record_id,period,institution_uscc,resident_id,name,gross_fen\n");
    for n in 0..12 {
        csv.push_str(&format!(
            "line-{n},2024-05,{unit},{},李{n},{}\n",
            resident(n),
            500_000 + n
        ));
    }
    csv.push_str(&format!(
        "line-bad,2024-05,{unit},110105194912310021,坏,1\n"
    ));
    csv.push_str(&format!(
        "line-worse,2024-05,{unit},{},坏,not-a-number\n",
        resident(99)
    ));
    let file = write("payroll.csv", &csv);
    let errors = dir.path().join("errors.jsonl");

    let cli = Cli::parse_from([
        "quotahub",
        "import",
        "--kind",
        "payroll-line",
        &file,
        "--server",
        &app.endpoint(),
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--stream-size",
        "5",
        "--errors",
        errors.to_str().unwrap(),
    ]);
    assert!(matches!(cli.command, Command::Import(_)));
    let code = quotahub::cli::run(cli).await.unwrap();
    assert_eq!(code, ExitCode::from(2), "refusals make a non-zero exit");
    let report = std::fs::read_to_string(&errors).unwrap();
    assert_eq!(report.lines().count(), 2, "{report}");
    assert!(report.contains("resident_id"));
    assert!(report.contains("UNREADABLE"));

    let lines = app
        .query("140100", AgencyKind::Finance)
        .await
        .list_payroll(proto::ListPayrollRequest {
            institution_uscc: unit.clone(),
            period: "2024-05".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .lines;
    assert_eq!(lines.len(), 12);

    // Importing the same file again stores nothing twice.
    let again = Cli::parse_from([
        "quotahub",
        "import",
        "--kind",
        "payroll-line",
        &file,
        "--server",
        &app.endpoint(),
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--errors",
        errors.to_str().unwrap(),
    ]);
    quotahub::cli::run(again).await.unwrap();
    let count = app
        .query("140100", AgencyKind::Finance)
        .await
        .list_payroll(proto::ListPayrollRequest {
            institution_uscc: unit,
            period: "2024-05".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .lines
        .len();
    assert_eq!(count, 12);
}

#[tokio::test]
async fn serve_with_defaults_makes_its_certificates_and_database() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: dir.path().join("quotahub-data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        // Any free port: the defaults' own (50051, 50052) may be taken by a hub running here.
        console: quotahub::config::ConsoleSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
        },
        ..Settings::default()
    };
    quotahub::tls::install_crypto_provider();
    let application = Application::build(&settings).await.unwrap();
    let pki_dir = settings.data_dir.join("pki");
    for file in [
        "ca.pem",
        "server.pem",
        "server-key.pem",
        "140100-finance.pem",
        "140105-hr-key.pem",
    ] {
        assert!(pki_dir.join(file).exists(), "{file}");
    }
    assert!(settings.data_dir.join("quotahub.db").exists());

    // The made certificates work: an agency of the sample city can push.
    let address = application.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let read = |name: &str| std::fs::read(pki_dir.join(name)).unwrap();
    let channel = quotahub::tls::client_channel(
        &format!("https://{address}"),
        &read("ca.pem"),
        &read("140100-staffing-office.pem"),
        &read("140100-staffing-office-key.pem"),
    )
    .await
    .unwrap();
    proto::staffing_service_client::StaffingServiceClient::new(channel)
        .push_institution(organ("i", &uscc("140100", 1), "140100"))
        .await
        .unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_live_feed_and_finds_what_was_planted() {
    let cli = Cli::parse_from(["quotahub", "demo", "--show", "5"]);
    let Command::Demo(args) = cli.command else {
        panic!("demo")
    };
    let mut out = Vec::new();
    quotahub::cli::demo::run(args, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("RAISED"), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("RAISED")).count(), 5);
    let summary = out
        .lines()
        .find(|l| l.contains("are open now"))
        .expect("a summary");
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // "... saw E findings raised ...; O are open now (the generator planted P):" — O equals P.
    assert_eq!(numbers[1], numbers[2], "{summary}");
    assert!(out.contains("PAID_NOT_ON_ROLL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_directory_loads_in_one_command_without_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("city");
    let cli = Cli::parse_from([
        "quotahub",
        "gen",
        "--scale",
        "small",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    quotahub::cli::run(cli).await.unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let as_of =
        chrono::NaiveDate::parse_from_str(manifest["as_of"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let app = TestApp::spawn_on(Backend::Sqlite, as_of).await;
    // A PKI directory laid out as `quotahub pki init` lays it out, with the test CA's certificates
    // for every agency kind of the generated city.
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    std::fs::write(pki_dir.join("ca.pem"), pki().ca.cert_pem()).unwrap();
    let root = manifest["root"].as_str().unwrap();
    for kind in AgencyKind::ALL {
        let sender = agency(root, kind);
        app.register(&sender).await;
        let certificate = pki().agency(&sender);
        let (cert, key) = quotahub::pki::agency_files(&pki_dir, &sender);
        std::fs::write(cert, &certificate.cert_pem).unwrap();
        std::fs::write(key, &certificate.key_pem).unwrap();
    }
    let errors = dir.path().join("refused.jsonl");
    let cli = Cli::parse_from([
        "quotahub",
        "load",
        out.to_str().unwrap(),
        "--server",
        &app.endpoint(),
        "--pki-dir",
        pki_dir.to_str().unwrap(),
        "--errors",
        errors.to_str().unwrap(),
    ]);
    assert!(matches!(cli.command, Command::Load(_)));
    assert_eq!(
        quotahub::cli::run(cli).await.unwrap(),
        ExitCode::SUCCESS,
        "{}",
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    assert_eq!(
        std::fs::read_to_string(&errors).unwrap(),
        "",
        "nothing refused"
    );

    // Without the agencies' certificates, `load` names what is missing and how to make it.
    let empty = dir.path().join("no-pki");
    std::fs::create_dir_all(&empty).unwrap();
    let cli = Cli::parse_from([
        "quotahub",
        "load",
        out.to_str().unwrap(),
        "--server",
        &app.endpoint(),
        "--pki-dir",
        empty.to_str().unwrap(),
    ]);
    let error = quotahub::cli::run(cli).await.unwrap_err().to_string();
    assert!(error.contains("no certificate for"), "{error}");
    assert!(error.contains("pki init"), "{error}");
    // Everything went now, on the hub's clock: none of the timeline's freshness findings.
    let truth = std::fs::read_to_string(out.join("truth.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| !line.contains("LATE_PAYROLL") && !line.contains("BACKDATED_EVENT"))
        .count();
    let open = app
        .store
        .findings(&quotahub::store::reconcile::FindingFilter {
            open: true,
            limit: u32::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        open.len(),
        truth,
        "the hub finds what the generator planted"
    );
}
