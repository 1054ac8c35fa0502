//! Trust, over real mutual TLS: the agency registry (unknown, disabled, re-keyed agencies), the
//! policy table walked for every method and agency kind, revocation by CRL and reloading without a
//! restart, the audit trail (every refusal in it, tampering found, one chain across replicas), and
//! per-agency rate limits.

use std::time::Duration;

use quotahub::api::Limits;
use quotahub::audit::Verdict;
use quotahub::domain::AgencyKind;
use quotahub::domain::audit::{AuditEntry, ChainBreak, ChainedEntry, HANDSHAKE_METHOD};
use quotahub::pki::{CertifiedKey, Validity};
use quotahub::proto;
use quotahub::server::Application;
use quotahub::store::trust::AuditFilter;
use quotahub::store::{Store, StoreOptions};
use quotahub::tls_reload::TlsFiles;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    every_refusal_is_answered_audited_and_leaves_the_hub_serving,
    agencies_are_disabled_enabled_and_rekeyed_without_a_restart,
    the_policy_table_holds_for_every_method_and_agency_kind,
    a_revoked_certificate_fails_the_handshake_once_the_crl_reloads,
    verify_names_the_entry_that_was_changed_removed_or_inserted,
    one_agency_over_its_rate_limit_leaves_the_others_served,
    auditors_read_the_trail_of_their_jurisdiction,
);

/// Waits (at most ten seconds) for an audit entry that `matches`: entries are appended by a
/// background writer, and a refused handshake is recorded after the client saw the refusal.
async fn audited(app: &TestApp, matches: impl Fn(&AuditEntry) -> bool) -> AuditEntry {
    for _ in 0..200 {
        step("flushing the audit trail");
        app.audit.flush().await;
        step("reading the audit trail");
        let entries = app
            .store
            .audit_entries(&AuditFilter {
                limit: 100_000,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        if let Some(found) = entries.into_iter().find(|row| matches(&row.entry)) {
            return found.entry;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no such entry in the audit trail");
}

async fn channel_with(app_endpoint: &str, certificate: &CertifiedKey) -> Result<Channel, String> {
    quotahub::tls::client_channel(
        app_endpoint,
        pki().ca.cert_pem().as_bytes(),
        certificate.cert_pem.as_bytes(),
        certificate.key_pem.as_bytes(),
    )
    .await
    .map_err(|error| error.to_string())
}

/// A read as `certificate`: the status, whether the refusal came at connect or at the call.
async fn read_as(endpoint: &str, certificate: &CertifiedKey) -> Result<(), tonic::Status> {
    step("connecting for a read");
    let channel = channel_with(endpoint, certificate)
        .await
        .map_err(tonic::Status::unavailable)?;
    step("reading findings");
    let read = proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
        .list_findings(proto::ListFindingsRequest::default())
        .await
        .map(drop);
    step(format_args!(
        "read: {:?}",
        read.as_ref().map_err(tonic::Status::code)
    ));
    read
}

fn fingerprint(certificate: &CertifiedKey) -> String {
    quotahub::tls::certificate_identity(certificate.cert_pem.as_bytes())
        .unwrap()
        .1
}

async fn operator(app: &TestApp) -> proto::admin_service_client::AdminServiceClient<Channel> {
    proto::admin_service_client::AdminServiceClient::new(
        app.channel(&agency("140000", AgencyKind::StaffingOffice))
            .await,
    )
}

async fn every_refusal_is_answered_audited_and_leaves_the_hub_serving(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let endpoint = app.endpoint();
    let city_unit = uscc("140100", 1);
    app.staffing("140100")
        .await
        .push_institution(organ("c", &city_unit, "140100"))
        .await
        .unwrap();

    // No client certificate: refused in the handshake.
    step("no client certificate");
    let anonymous = async {
        let channel = quotahub::tls::client_channel_without_identity(
            &endpoint,
            pki().ca.cert_pem().as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
            .list_findings(proto::ListFindingsRequest::default())
            .await
            .map_err(|e| e.to_string())
    };
    assert!(anonymous.await.is_err());
    audited(&app, |e| {
        e.method == HANDSHAKE_METHOD && e.outcome.to_lowercase().contains("no certificates")
    })
    .await;

    // A certificate of another CA, and an expired one of the hub's CA: refused in the handshake.
    step("another CA's certificate, an expired one");
    let stranger = quotahub::pki::DevCa::generate("not the hub's CA").unwrap();
    let forged = stranger
        .issue_agency(
            &agency("140100", AgencyKind::Audit),
            Validity::default_leaf(),
        )
        .unwrap();
    assert!(read_as(&endpoint, &forged).await.is_err());
    audited(&app, |e| {
        e.method == HANDSHAKE_METHOD && e.outcome.contains("UnknownIssuer")
    })
    .await;
    let day = Duration::from_secs(86_400);
    let expired = pki()
        .ca
        .issue_agency(
            &agency("140100", AgencyKind::Audit),
            Validity {
                not_before: std::time::SystemTime::now() - 30 * day,
                not_after: std::time::SystemTime::now() - day,
            },
        )
        .unwrap();
    assert!(read_as(&endpoint, &expired).await.is_err());
    audited(&app, |e| {
        e.method == HANDSHAKE_METHOD && e.outcome.to_lowercase().contains("expired")
    })
    .await;

    // Certificates of the hub's CA that the registry does not know: an agency never registered,
    // and a second certificate of a registered agency.
    step("certificates the registry does not know");
    for unknown in [
        agency("140300", AgencyKind::Finance),
        agency("140100", AgencyKind::Audit),
    ] {
        let certificate = pki()
            .ca
            .issue_agency(&unknown, Validity::default_leaf())
            .unwrap();
        let status = read_as(&endpoint, &certificate).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let print = fingerprint(&certificate);
        let entry = audited(&app, |e| e.fingerprint == print).await;
        assert_eq!(entry.outcome, "UNAUTHENTICATED");
        assert_eq!(entry.agency_id, unknown.id());
        // Who it is comes before what it may do: not a word about the policy to a stranger.
        let channel = channel_with(&endpoint, &certificate).await.unwrap();
        let status = proto::staffing_service_client::StaffingServiceClient::new(channel)
            .push_institution(organ("x", &uscc("140100", 9), "140100"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }

    // A disabled agency.
    step("a disabled agency");
    let organization = agency("140100", AgencyKind::Organization);
    let organization_channel = app.channel(&organization).await;
    operator(&app)
        .await
        .disable_agency(proto::AgencyRef {
            agency_id: organization.id(),
        })
        .await
        .unwrap();
    let status = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        organization_channel,
    )
    .list_findings(proto::ListFindingsRequest::default())
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("disabled"), "{status:?}");
    audited(&app, |e| {
        e.agency_id == organization.id() && e.outcome == "PERMISSION_DENIED"
    })
    .await;

    // The wrong agency kind for the method.
    step("the wrong agency kind");
    let status = proto::staffing_service_client::StaffingServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Finance)).await,
    )
    .push_institution(organ("f", &uscc("140100", 2), "140100"))
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    audited(&app, |e| {
        e.agency_id == "140100/finance"
            && e.method == "/quotahub.v1.StaffingService/PushInstitution"
            && e.outcome == "PERMISSION_DENIED"
    })
    .await;

    // A read and a write outside the agency's jurisdiction: the district about the city's unit.
    step("outside the jurisdiction");
    let status = app
        .query("140105", AgencyKind::Discipline)
        .await
        .get_institution(proto::GetInstitutionRequest {
            uscc: city_unit.clone(),
            as_of: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let read = audited(&app, |e| {
        e.agency_id == "140105/discipline" && e.method.ends_with("/GetInstitution")
    })
    .await;
    assert_eq!(read.outcome, "PERMISSION_DENIED");
    assert!(read.touched.contains(&city_unit), "{read:?}");
    let status = app
        .staffing("140105")
        .await
        .push_quota(quota("q-outside", &city_unit, 3))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let write = audited(&app, |e| {
        e.agency_id == "140105/staffing-office" && e.method.ends_with("/PushQuota")
    })
    .await;
    assert_eq!(write.outcome, "PERMISSION_DENIED");
    assert!(write.touched.contains("q-outside"), "{write:?}");

    // The hub still serves, a good call is audited as such, and the chain is whole.
    step("a good call; the chain");
    app.staffing("140100")
        .await
        .push_quota(quota("q-good", &city_unit, 3))
        .await
        .unwrap();
    let good = audited(&app, |e| e.touched.contains("q-good")).await;
    assert_eq!(good.outcome, "OK");
    assert_eq!(good.agency_id, "140100/staffing-office");
    assert_eq!(
        good.fingerprint,
        fingerprint(&pki().agency(&agency("140100", AgencyKind::StaffingOffice)))
    );
    assert!(matches!(
        quotahub::audit::verify(&app.store).await.unwrap(),
        Verdict::Whole(n) if n > 10
    ));
}

async fn agencies_are_disabled_enabled_and_rekeyed_without_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let endpoint = app.endpoint();
    let mut admin = operator(&app).await;

    // Only a province's staffing office keeps the registry, and only within its province.
    let status = proto::admin_service_client::AdminServiceClient::new(
        app.channel(&agency("140100", AgencyKind::StaffingOffice))
            .await,
    )
    .list_agencies(proto::ListAgenciesRequest {})
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = admin
        .disable_agency(proto::AgencyRef {
            agency_id: "150100/finance".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Disable and enable take effect at once on this hub.
    let finance = agency("140100", AgencyKind::Finance);
    let finance_key = pki().agency(&finance);
    read_as(&endpoint, &finance_key).await.unwrap();
    let entry = admin
        .disable_agency(proto::AgencyRef {
            agency_id: finance.id(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!entry.enabled);
    let status = read_as(&endpoint, &finance_key).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    admin
        .enable_agency(proto::AgencyRef {
            agency_id: finance.id(),
        })
        .await
        .unwrap();
    read_as(&endpoint, &finance_key).await.unwrap();

    // Re-keying: the new certificate works, the old one is revoked.
    let hr = agency("140105", AgencyKind::Hr);
    let old_key = pki().agency(&hr);
    read_as(&endpoint, &old_key).await.unwrap();
    let new_key = pki()
        .ca
        .issue_agency(&hr, Validity::default_leaf())
        .unwrap();
    assert_eq!(
        read_as(&endpoint, &new_key).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let status = admin
        .rekey_agency(proto::RekeyAgencyRequest {
            agency_id: agency("140105", AgencyKind::Finance).id(),
            certificate_pem: new_key.cert_pem.clone(),
            revoke_others: true,
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "a certificate of another agency"
    );
    let entry = admin
        .rekey_agency(proto::RekeyAgencyRequest {
            agency_id: hr.id(),
            certificate_pem: new_key.cert_pem.clone(),
            revoke_others: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry.certificates.len(), 2);
    assert_eq!(
        entry
            .certificates
            .iter()
            .filter(|c| c.revoked_at.is_some())
            .map(|c| c.fingerprint.clone())
            .collect::<Vec<_>>(),
        [fingerprint(&old_key)]
    );
    read_as(&endpoint, &new_key).await.unwrap();
    assert_eq!(
        read_as(&endpoint, &old_key).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // A new agency added through the service is served at once.
    let newcomer = agency("140200", AgencyKind::Discipline);
    let newcomer_key = pki()
        .ca
        .issue_agency(&newcomer, Validity::default_leaf())
        .unwrap();
    assert_eq!(
        read_as(&endpoint, &newcomer_key).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    admin
        .add_agency(proto::AddAgencyRequest {
            agency_id: newcomer.id(),
            certificate_pem: newcomer_key.cert_pem.clone(),
        })
        .await
        .unwrap();
    read_as(&endpoint, &newcomer_key).await.unwrap();
    let listed = admin
        .list_agencies(proto::ListAgenciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .agencies
            .iter()
            .any(|a| a.agency_id == newcomer.id() && a.enabled)
    );

    // The command line works on the database directly; the hub sees it within its cache's life.
    let audit = agency("140100", AgencyKind::Audit);
    let audit_key = pki().agency(&audit);
    read_as(&endpoint, &audit_key).await.unwrap();
    let run = |args: &[&str]| {
        let mut argv = vec!["quotahub", "agency"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--database-url", app.db.url()]);
        use clap::Parser;
        let quotahub::cli::Command::Agency { command } =
            quotahub::cli::Cli::parse_from(argv).command
        else {
            panic!("an agency command")
        };
        quotahub::cli::admin::run_agency(command, Vec::new())
    };
    run(&["disable", "140100/audit"]).await.unwrap();
    let refused = async {
        loop {
            match read_as(&endpoint, &audit_key).await {
                Err(status) => return status,
                Ok(()) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("the disable reaches the hub within its cache's life");
    assert_eq!(status.code(), Code::PermissionDenied);
    run(&["enable", "140100/audit"]).await.unwrap();
    let served = async {
        while read_as(&endpoint, &audit_key).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the enable reaches the hub within its cache's life");
}

/// Who may call what, written out again independently of `POLICY`: service, method, kinds.
fn expected(service: &str, method: &str, kind: AgencyKind) -> bool {
    use AgencyKind::*;
    let only = |kinds: &[AgencyKind]| kinds.contains(&kind);
    match (service, method) {
        ("quotahub.v1.StaffingService", _) => only(&[StaffingOffice]),
        ("quotahub.v1.PersonnelService", _) => only(&[Hr]),
        ("quotahub.v1.OrganizationService", _) => only(&[Organization]),
        ("quotahub.v1.FinanceService", _) => only(&[Finance]),
        ("quotahub.v1.QueryService", _) => true,
        ("quotahub.v1.ReconciliationService", "CheckHire") => {
            only(&[Hr, Organization, StaffingOffice])
        }
        ("quotahub.v1.ReconciliationService", "VerifyFunding") => only(&[Finance, StaffingOffice]),
        ("quotahub.v1.ReconciliationService", "FreshnessReport") => only(&[StaffingOffice]),
        (
            "quotahub.v1.ReconciliationService",
            "Reconcile" | "GetOperation" | "CancelOperation" | "ListOperations",
        ) => only(&[StaffingOffice, Discipline, Audit]),
        ("quotahub.v1.ReconciliationService", _) => true,
        ("quotahub.v1.FeedService", "TransitionAlert") => only(&[StaffingOffice, Discipline]),
        ("quotahub.v1.FeedService", _) => true,
        ("quotahub.v1.AdminService", _) => only(&[StaffingOffice]),
        ("quotahub.v1.AuditService", _) => only(&[Audit, Discipline]),
        (
            "quotahub.v1.LedgerService",
            "OpenItem" | "ImposePenalty" | "AssignItem" | "ConfirmLevel",
        ) => only(&[StaffingOffice]),
        ("quotahub.v1.LedgerService", "MoveItem") => {
            only(&[StaffingOffice, Organization, Hr, Finance])
        }
        ("quotahub.v1.LedgerService", _) => true,
        ("quotahub.v1.ApplicationService", "Decide") => only(&[StaffingOffice]),
        ("quotahub.v1.ApplicationService", "GetApplication" | "ListApplications") => {
            only(&[StaffingOffice, Organization, Hr, Discipline, Audit])
        }
        ("quotahub.v1.ApplicationService", "ReviewApplication") => {
            only(&[StaffingOffice, Discipline, Audit])
        }
        ("quotahub.v1.ApplicationService", _) => only(&[StaffingOffice, Organization, Hr]),
        (
            "quotahub.v1.CampaignService",
            "OpenCampaign" | "OpenUndeclaredItems" | "CloseCampaign",
        ) => only(&[StaffingOffice]),
        ("quotahub.v1.CampaignService", "Declare") => only(&[Hr, Organization]),
        ("quotahub.v1.CampaignService", _) => {
            only(&[StaffingOffice, Organization, Hr, Discipline, Audit])
        }
        ("quotahub.v1.CaseService", "GetCase" | "ListCases") => {
            only(&[StaffingOffice, Discipline, Audit])
        }
        ("quotahub.v1.CaseService", "GetTransfer" | "ListTransfers") => {
            only(&[StaffingOffice, Discipline, Audit, Organization, Finance])
        }
        ("quotahub.v1.CaseService", "AcknowledgeReceipt") => {
            only(&[Discipline, Audit, Organization, Finance])
        }
        ("quotahub.v1.CaseService", _) => only(&[StaffingOffice]),
        ("quotahub.v1.ReportService", _) => only(&[StaffingOffice, Discipline, Audit]),
        ("grpc.health.v1.Health", _) => true,
        ("grpc.reflection.v1.ServerReflection", _) => true,
        ("grpc.reflection.v1alpha.ServerReflection", _) => true,
        _ => false,
    }
}

/// Calls `path` with one empty message and returns the first status: the call's if it was
/// refused or failed at once, OK if an answer began.
async fn call_raw(channel: Channel, path: &str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::try_from(path.to_owned()).unwrap();
    let request = tonic::Request::new(tokio_stream::iter(vec![()]));
    match tokio::time::timeout(
        Duration::from_secs(20),
        grpc.streaming(request, path, codec),
    )
    .await
    .expect("an answer")
    {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

async fn the_policy_table_holds_for_every_method_and_agency_kind(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pool = prost_reflect::DescriptorPool::decode(quotahub::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods: Vec<(String, String)> = pool
        .services()
        .flat_map(|service| {
            service
                .methods()
                .map(|method| (service.full_name().to_owned(), method.name().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    methods.extend([
        ("grpc.health.v1.Health".to_owned(), "Check".to_owned()),
        ("grpc.health.v1.Health".to_owned(), "Watch".to_owned()),
        (
            "quotahub.v1.SecretService".to_owned(),
            "Everything".to_owned(),
        ),
    ]);
    for kind in AgencyKind::ALL {
        let channel = app.channel(&agency("140100", kind)).await;
        for (service, method) in &methods {
            let path = format!("/{service}/{method}");
            let status = call_raw(channel.clone(), &path).await;
            // The policy's refusal, as opposed to a handler's answer to an empty request.
            let refused = status.code() == Code::PermissionDenied
                && (status.message().contains("may not call")
                    || status.message().contains("not open to any agency"));
            assert_eq!(
                !refused,
                expected(service, method, kind),
                "{kind} on {path}: {status:?}"
            );
        }
    }

    // Jurisdiction, which the store and the handlers check: a read and a write outside it.
    let city_unit = uscc("140100", 7);
    app.staffing("140100")
        .await
        .push_institution(organ("c7", &city_unit, "140100"))
        .await
        .unwrap();
    let status = app
        .query("140105", AgencyKind::Audit)
        .await
        .list_roll(proto::ListRollRequest {
            uscc: city_unit.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = app
        .hr("140105")
        .await
        .push_personnel_event(hire("h-out", &resident(7), &city_unit, "2021-01-01"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn a_revoked_certificate_fails_the_handshake_once_the_crl_reloads(backend: Backend) {
    let db = TestDb::new(backend).await;
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str| files.path().join(name);
    let tls = pki().server_tls();
    std::fs::write(path("ca.pem"), &tls.ca_pem).unwrap();
    std::fs::write(path("server.pem"), &tls.cert_pem).unwrap();
    std::fs::write(path("server-key.pem"), &tls.key_pem).unwrap();
    std::fs::write(path("crl.pem"), pki().ca.revocation_list(&[], 7).unwrap()).unwrap();
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .unwrap();
    pki().register_all(&store).await;
    let victim = agency("140100", AgencyKind::Hr);
    let victim_key = pki()
        .ca
        .issue_agency(&victim, Validity::default_leaf())
        .unwrap();
    register(&store, &victim_key).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let application = Application::with_listener(listener, store.clone(), &tls, Limits::default())
        .unwrap()
        .reload_tls(
            TlsFiles {
                ca: path("ca.pem"),
                cert: path("server.pem"),
                key: path("server-key.pem"),
                crl: Some(path("crl.pem")),
            },
            Duration::from_millis(100),
        )
        .unwrap();
    let endpoint = format!("https://{}", application.local_addr());
    let audit = application.audit();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    // Served before the revocation; this connection stays open across the reload.
    let open = channel_with(&endpoint, &victim_key).await.unwrap();
    let mut open_reader =
        proto::reconciliation_service_client::ReconciliationServiceClient::new(open);
    open_reader
        .list_findings(proto::ListFindingsRequest::default())
        .await
        .unwrap();

    std::fs::write(
        path("crl.pem"),
        pki()
            .ca
            .revocation_list(&[&victim_key.cert_pem], 7)
            .unwrap(),
    )
    .unwrap();
    let refused = async {
        while read_as(&endpoint, &victim_key).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("the CRL is reloaded without a restart");
    let status = read_as(&endpoint, &victim_key).await.unwrap_err();
    assert_ne!(status.code(), Code::Ok);

    // Others are served, and the connection opened before the reload keeps working.
    read_as(
        &endpoint,
        &pki().agency(&agency("140100", AgencyKind::Audit)),
    )
    .await
    .unwrap();
    open_reader
        .list_findings(proto::ListFindingsRequest::default())
        .await
        .unwrap();

    // A new server certificate is presented from the next connection on.
    let rotated = pki().ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    std::fs::write(path("server.pem"), &rotated.cert_pem).unwrap();
    std::fs::write(path("server-key.pem"), &rotated.key_pem).unwrap();
    let rotated_der = der_of(&rotated.cert_pem);
    let presented = async {
        loop {
            if server_certificate(&endpoint).await == rotated_der {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), presented)
        .await
        .expect("the server certificate is reloaded without a restart");
    read_as(
        &endpoint,
        &pki().agency(&agency("140100", AgencyKind::Audit)),
    )
    .await
    .unwrap();

    // The refused handshake is in the trail.
    let mut found = false;
    for _ in 0..200 {
        audit.flush().await;
        let entries = store
            .audit_entries(&AuditFilter {
                limit: 100_000,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        if entries.iter().any(|row| {
            row.entry.method == HANDSHAKE_METHOD && row.entry.outcome.contains("Revoked")
        }) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found, "the revoked certificate's handshake is audited");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// The DER of a PEM certificate.
fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The certificate the hub presents to a new connection (DER).
async fn server_certificate(endpoint: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;
    let address = endpoint.trim_start_matches("https://");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(pki().ca.cert_pem().as_bytes())
                .unwrap(),
        )
        .unwrap();
    let client = pki().agency(&agency("140100", AgencyKind::Audit));
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![
            rustls::pki_types::CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap(),
        ],
        rustls::pki_types::PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Replaces the whole trail with `rows`, as someone with write access to the database could.
async fn rewrite(store: &Store, rows: &[ChainedEntry]) {
    sqlx::query("DELETE FROM audit_log")
        .execute(store.readers())
        .await
        .unwrap();
    for row in rows {
        insert(store, row).await;
    }
}

async fn insert(store: &Store, row: &ChainedEntry) {
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

async fn verify_names_the_entry_that_was_changed_removed_or_inserted(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mut staffing = app.staffing("140100").await;
    for n in 0..8 {
        staffing
            .push_institution(organ(&format!("i{n}"), &uscc("140100", n), "140100"))
            .await
            .unwrap();
    }
    drop(staffing);
    app.stop().await;
    // The hub is stopped, its writer has appended everything; the database is now the attacker's.
    let store = Store::connect(app.db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let original = store
        .audit_entries(&AuditFilter {
            limit: 100_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(original.len() >= 8, "{original:?}");
    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Whole(original.len() as i64)
    );

    // Changed: a refusal made to look like a success.
    sqlx::query("UPDATE audit_log SET outcome = 'PERMISSION_DENIED' WHERE seq = 4")
        .execute(store.readers())
        .await
        .unwrap();
    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Broken(ChainBreak::Changed(4))
    );
    rewrite(&store, &original).await;

    // Removed.
    sqlx::query("DELETE FROM audit_log WHERE seq = 6")
        .execute(store.readers())
        .await
        .unwrap();
    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Broken(ChainBreak::Removed(6))
    );
    rewrite(&store, &original).await;

    // Inserted at 5, the later entries moved up, its hash computed the hub's way.
    let mut forged = original[3].entry.clone();
    forged.touched = "record_id forged".into();
    let prev_hash = original[3].hash.clone();
    let hash = forged.chain_hash(&prev_hash);
    sqlx::query("DELETE FROM audit_log WHERE seq >= 5")
        .execute(store.readers())
        .await
        .unwrap();
    insert(
        &store,
        &ChainedEntry {
            seq: 5,
            entry: forged,
            prev_hash,
            hash,
        },
    )
    .await;
    for row in &original[4..] {
        let mut moved = row.clone();
        moved.seq += 1;
        insert(&store, &moved).await;
    }
    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Broken(ChainBreak::Inserted(5))
    );

    // The command line says the same, and fails.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_quotahub"))
        .args(["audit", "verify", "--database-url", app.db.url()])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("entry 5 was inserted"), "{said}");

    rewrite(&store, &original).await;
    assert!(matches!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Whole(_)
    ));

    // Appended past the end, chained the hub's way: only the head betrays it.
    let last = original.last().unwrap();
    let mut appended = last.entry.clone();
    appended.touched = "record_id appended".into();
    let hash = appended.chain_hash(&last.hash);
    insert(
        &store,
        &ChainedEntry {
            seq: last.seq + 1,
            entry: appended,
            prev_hash: last.hash.clone(),
            hash,
        },
    )
    .await;
    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Broken(ChainBreak::Inserted(last.seq + 1))
    );
    store.close().await;
}

async fn one_agency_over_its_rate_limit_leaves_the_others_served(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Limits {
            calls_per_second: 1,
            burst: 3,
            ..Limits::default()
        },
    )
    .await;
    let mut greedy = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Finance)).await,
    );
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            greedy
                .list_findings(proto::ListFindingsRequest::default())
                .await
                .err(),
        );
    }
    assert!(statuses[..3].iter().all(Option::is_none), "{statuses:?}");
    let throttled = statuses
        .iter()
        .flatten()
        .find(|status| status.code() == Code::ResourceExhausted)
        .expect("the greedy agency is throttled");
    let retry = throttled
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo delay");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );

    // Another agency is served as if nothing happened.
    let mut other = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Hr)).await,
    );
    for _ in 0..3 {
        other
            .list_findings(proto::ListFindingsRequest::default())
            .await
            .unwrap();
    }
    audited(&app, |e| {
        e.agency_id == "140100/finance" && e.outcome == "RESOURCE_EXHAUSTED"
    })
    .await;
}

async fn auditors_read_the_trail_of_their_jurisdiction(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut city = app.staffing("140100").await;
    for n in 1..=3 {
        city.push_institution(organ(&format!("c{n}"), &uscc("140100", n), "140100"))
            .await
            .unwrap();
    }
    app.staffing("140105")
        .await
        .push_institution(organ("d1", &uscc("140105", 1), "140105"))
        .await
        .unwrap();
    app.audit.flush().await;

    // The city's auditor pages through the city staffing office's pushes.
    let mut city_auditor = proto::audit_service_client::AuditServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Audit)).await,
    );
    let query = |page_token: String| proto::QueryAuditRequest {
        agency_id: "140100/staffing-office".into(),
        method: "/quotahub.v1.StaffingService/PushInstitution".into(),
        page_size: 2,
        page_token,
        ..Default::default()
    };
    let first = city_auditor
        .query_audit(query(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = city_auditor
        .query_audit(query(first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    let touched: Vec<String> = first
        .entries
        .iter()
        .chain(&second.entries)
        .map(|entry| entry.touched.clone())
        .collect();
    assert_eq!(touched, ["record_id c1", "record_id c2", "record_id c3"]);
    assert!(second.entries.iter().all(|entry| entry.outcome == "OK"));

    // The district's auditor sees its district's calls only.
    let mut district_auditor = proto::audit_service_client::AuditServiceClient::new(
        app.channel(&agency("140105", AgencyKind::Audit)).await,
    );
    let seen = district_auditor
        .query_audit(proto::QueryAuditRequest {
            page_size: 1_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(seen.entries.iter().any(|e| e.touched == "record_id d1"));
    assert!(
        seen.entries
            .iter()
            .all(|e| e.agency_id.starts_with("140105/")),
        "{seen:?}"
    );
    let status = district_auditor
        .query_audit(proto::QueryAuditRequest {
            agency_id: "140100/staffing-office".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Other kinds may not read the trail at all.
    let status = proto::audit_service_client::AuditServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Finance)).await,
    )
    .query_audit(proto::QueryAuditRequest::default())
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_appending_at_once_keep_one_valid_chain() {
    use crate::replicas::{channel_as, start_hub};
    if !postgres_given() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let files = tempfile::tempdir().unwrap();
    let tls = pki().server_tls();
    std::fs::write(files.path().join("ca.pem"), &tls.ca_pem).unwrap();
    std::fs::write(files.path().join("server.pem"), &tls.cert_pem).unwrap();
    std::fs::write(files.path().join("server-key.pem"), &tls.key_pem).unwrap();
    let hubs = [
        start_hub(db.url(), files.path(), &files.path().join("a")).await,
        start_hub(db.url(), files.path(), &files.path().join("b")).await,
    ];
    const CALLS: usize = 40;
    let mut clients = Vec::new();
    for client in 0..6usize {
        let endpoint = hubs[client % 2].endpoint.clone();
        let kind = AgencyKind::ALL[client];
        clients.push(tokio::spawn(async move {
            let mut reader = proto::reconciliation_service_client::ReconciliationServiceClient::new(
                channel_as(&endpoint, "140100", kind).await,
            );
            for _ in 0..CALLS {
                reader
                    .list_findings(proto::ListFindingsRequest::default())
                    .await
                    .unwrap();
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .unwrap();
    // Every answered call was queued for the trail before its answer; wait for the writers.
    let all = async {
        loop {
            let (head, _) = store.audit_head().await.unwrap();
            if head >= (6 * CALLS) as i64 {
                return head;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let head = tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("both replicas append every call");
    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Whole(head)
    );
    let agencies: std::collections::BTreeSet<String> = store
        .audit_entries(&AuditFilter {
            limit: 100_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.entry.agency_id)
        .collect();
    assert!(agencies.len() >= 6, "{agencies:?}");
    store.close().await;
    drop(hubs);
}

/// The trail's appends on PostgreSQL keep a connection of their own between appends. When the
/// server has dropped it meanwhile (here cut by `pg_terminate_backend`, as a restart would), the
/// next append after a second's idleness finds out by a ping and takes a new one: it succeeds at
/// its first attempt, as the pool's connections do, instead of failing once and leaving the hub
/// reporting its database away until the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_append_after_the_trails_connection_was_cut_succeeds_at_once() {
    if !postgres_given() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let entry = call_entry;
    store.append_audit(vec![entry(1)]).await.unwrap();
    store.append_audit(vec![entry(2)]).await.unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(store.readers())
    .await
    .unwrap();
    assert!(cut >= 1, "the trail's connection was open");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(store.append_audit(vec![entry(3)]).await.unwrap(), 3);
    assert_eq!(store.append_audit(vec![entry(4)]).await.unwrap(), 4);
    assert_eq!(
        quotahub::audit::verify(&store).await.unwrap(),
        Verdict::Whole(4)
    );
    store.close().await;
}
