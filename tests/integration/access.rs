//! Who may do what, over real TLS: the wrong agency kind, no certificate, a certificate of another
//! CA, a certificate naming no agency, and reads and writes outside the agency's jurisdiction.

use quotahub::domain::AgencyKind;
use quotahub::pki::{DevCa, Validity};
use quotahub::proto;
use tonic::Code;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    the_wrong_agency_kind_is_refused,
    a_client_without_an_accepted_certificate_gets_nothing,
    an_agency_acts_only_within_its_jurisdiction,
    health_and_reflection_answer_over_mutual_tls,
);

async fn the_wrong_agency_kind_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    // Finance may not push institutions, HR may not push payroll, discipline may push nothing.
    let finance = app.channel(&agency("140100", AgencyKind::Finance)).await;
    let status = proto::staffing_service_client::StaffingServiceClient::new(finance)
        .push_institution(organ("i", &unit, "140100"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("finance"));

    let hr = app.channel(&agency("140100", AgencyKind::Hr)).await;
    let status = proto::finance_service_client::FinanceServiceClient::new(hr)
        .push_payroll_line(payroll("p", &resident(1), &unit, "2024-01"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let discipline = app.channel(&agency("140100", AgencyKind::Discipline)).await;
    let status = proto::personnel_service_client::PersonnelServiceClient::new(discipline)
        .push_personnel_events(tokio_stream::iter(vec![hire(
            "h",
            &resident(1),
            &unit,
            "2021-01-01",
        )]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Nothing was stored by the refused calls.
    let status = app
        .query("140100", AgencyKind::Audit)
        .await
        .get_institution(proto::GetInstitutionRequest {
            uscc: unit,
            as_of: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn a_client_without_an_accepted_certificate_gets_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ca_pem = pki().ca.cert_pem().as_bytes().to_vec();
    let request = || proto::GetInstitutionRequest {
        uscc: uscc("140100", 1),
        as_of: String::new(),
    };

    // No client certificate: the handshake fails, so the call never reaches the hub.
    match quotahub::tls::client_channel_without_identity(&app.endpoint(), &ca_pem).await {
        Err(_) => {}
        Ok(channel) => {
            let status = proto::query_service_client::QueryServiceClient::new(channel)
                .get_institution(request())
                .await
                .unwrap_err();
            assert_refused_in_handshake(&status);
        }
    }

    // A certificate for a real agency, signed by another CA.
    let stranger = DevCa::generate("not the hub's CA").unwrap();
    let forged = stranger
        .issue_agency(
            &agency("140100", AgencyKind::StaffingOffice),
            Validity::default_leaf(),
        )
        .unwrap();
    match quotahub::tls::client_channel(
        &app.endpoint(),
        &ca_pem,
        forged.cert_pem.as_bytes(),
        forged.key_pem.as_bytes(),
    )
    .await
    {
        Err(_) => {}
        Ok(channel) => {
            let status = proto::staffing_service_client::StaffingServiceClient::new(channel)
                .push_institution(organ("i", &uscc("140100", 1), "140100"))
                .await
                .unwrap_err();
            assert_refused_in_handshake(&status);
        }
    }

    // A certificate of the right CA that names no agency: connected, but unauthenticated.
    let anonymous = pki()
        .ca
        .issue_client_with_uris(&["https://example.org/someone"], Validity::default_leaf())
        .unwrap();
    let channel = quotahub::tls::client_channel(
        &app.endpoint(),
        &ca_pem,
        anonymous.cert_pem.as_bytes(),
        anonymous.key_pem.as_bytes(),
    )
    .await
    .unwrap();
    let status = proto::query_service_client::QueryServiceClient::new(channel)
        .get_institution(request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // The hub still serves afterwards, and the forged push stored nothing: the same record is new.
    let result = app
        .staffing("140100")
        .await
        .push_institution(organ("i", &uscc("140100", 1), "140100"))
        .await;
    assert!(!result.unwrap().into_inner().replayed);
}

/// With TLS 1.3 the client learns that the server refused its certificate only when it first
/// uses the connection; tonic reports that as a transport error or a closed connection.
fn assert_refused_in_handshake(status: &tonic::Status) {
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "{status:?}"
    );
}

async fn an_agency_acts_only_within_its_jurisdiction(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let city_unit = uscc("140100", 1);
    let district_unit = uscc("140105", 1);
    let other_city_unit = uscc("140200", 1);
    let mut city = app.staffing("140100").await;
    city.push_institution(organ("c", &city_unit, "140100"))
        .await
        .unwrap();
    // The city registers a unit of its district: below it, so allowed.
    city.push_institution(organ("d", &district_unit, "140105"))
        .await
        .unwrap();
    // The city may not register a unit of another city.
    let status = city
        .push_institution(organ("o", &other_city_unit, "140200"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // The district's staffing office may not take over the city's unit, nor give it quota.
    let mut district = app.staffing("140105").await;
    let status = district
        .push_institution(organ("x", &city_unit, "140105"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = district
        .push_quota(quota("q", &city_unit, 10))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    district
        .push_quota(quota("q", &district_unit, 10))
        .await
        .unwrap();

    // District HR hires into its own unit, not into the city's.
    let mut hr = app.hr("140105").await;
    hr.push_personnel_event(hire("h1", &resident(1), &district_unit, "2021-01-01"))
        .await
        .unwrap();
    let status = hr
        .push_personnel_event(hire("h2", &resident(2), &city_unit, "2021-01-01"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Reads: the district sees its unit, not the city's; the city sees both.
    let mut district_reader = app.query("140105", AgencyKind::Discipline).await;
    let get = |uscc: &str| proto::GetInstitutionRequest {
        uscc: uscc.to_owned(),
        as_of: String::new(),
    };
    district_reader
        .get_institution(get(&district_unit))
        .await
        .unwrap();
    let status = district_reader
        .get_institution(get(&city_unit))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = district_reader
        .list_roll(proto::ListRollRequest {
            uscc: city_unit.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut city_reader = app.query("140100", AgencyKind::Discipline).await;
    city_reader
        .get_institution(get(&district_unit))
        .await
        .unwrap();

    // A person's history shows only what happened within the reader's jurisdiction.
    let other = app.query("140200", AgencyKind::Audit).await;
    let status = { other }
        .get_person_history(proto::GetPersonHistoryRequest {
            resident_id: resident(1),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn health_and_reflection_answer_over_mutual_tls(backend: Backend) {
    use tonic_health::pb::health_check_response::ServingStatus;
    let app = TestApp::spawn(backend).await;
    let channel = app.channel(&agency("140105", AgencyKind::Audit)).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "quotahub.v1.FinanceService"] {
        let response = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status, ServingStatus::Serving as i32);
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a list of services");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "quotahub.v1.StaffingService",
        "quotahub.v1.QueryService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }
}
