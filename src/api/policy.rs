//! Who may call what: one table, enforced by one tower layer in front of every service. The layer
//! turns the connection's certificate into a [`Caller`] that handlers read; a call that the table
//! does not allow never reaches a handler. Jurisdiction (an agency acts on its own division and
//! those below it) is checked by the store and the handlers, which know the records involved.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;
use tower::{Layer, Service};

use super::guard::{AuditNote, Guard};
use super::status::{code, grpc_code_name};
use crate::domain::audit::AuditEntry;
use crate::domain::privacy::Visibility;
use crate::domain::{Agency, AgencyKind};
use crate::error::Error;
use crate::tls::PeerIdentity;

/// Agency kinds that may call the methods under a path prefix.
pub struct Rule {
    /// gRPC path prefix: a whole service (`/quotahub.v1.StaffingService/`) or one method.
    pub prefix: &'static str,
    /// Kinds allowed.
    pub kinds: &'static [AgencyKind],
}

use AgencyKind::{Audit, Discipline, Finance, Hr, Organization, StaffingOffice};

const EVERY_AGENCY: &[AgencyKind] = &AgencyKind::ALL;

/// The authorization policy. The longest matching prefix decides; a path that matches none is
/// refused, so a new service is closed until it is added here.
pub const POLICY: &[Rule] = &[
    Rule {
        prefix: "/quotahub.v1.StaffingService/",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.PersonnelService/",
        kinds: &[Hr],
    },
    Rule {
        prefix: "/quotahub.v1.OrganizationService/",
        kinds: &[Organization],
    },
    Rule {
        prefix: "/quotahub.v1.FinanceService/",
        kinds: &[Finance],
    },
    Rule {
        prefix: "/quotahub.v1.QueryService/",
        kinds: &[StaffingOffice, Organization, Hr, Finance, Discipline, Audit],
    },
    Rule {
        prefix: "/quotahub.v1.ReconciliationService/",
        kinds: EVERY_AGENCY,
    },
    Rule {
        prefix: "/quotahub.v1.ReconciliationService/CheckHire",
        kinds: &[Hr, Organization, StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.ReconciliationService/FreshnessReport",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.ReconciliationService/VerifyFunding",
        kinds: &[Finance, StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.ReconciliationService/Reconcile",
        kinds: &[StaffingOffice, Discipline, Audit],
    },
    // The re-check jobs are seen and stopped by those who may start them.
    Rule {
        prefix: "/quotahub.v1.ReconciliationService/GetOperation",
        kinds: &[StaffingOffice, Discipline, Audit],
    },
    Rule {
        prefix: "/quotahub.v1.ReconciliationService/CancelOperation",
        kinds: &[StaffingOffice, Discipline, Audit],
    },
    Rule {
        prefix: "/quotahub.v1.ReconciliationService/ListOperations",
        kinds: &[StaffingOffice, Discipline, Audit],
    },
    Rule {
        prefix: "/quotahub.v1.FeedService/",
        kinds: EVERY_AGENCY,
    },
    Rule {
        prefix: "/quotahub.v1.FeedService/TransitionAlert",
        kinds: &[StaffingOffice, Discipline],
    },
    // The agency registry has no operator identity above the agencies: it is kept by the staffing
    // office of a province-level division (checked by the handlers), for the agencies below it.
    Rule {
        prefix: "/quotahub.v1.AdminService/",
        kinds: &[StaffingOffice],
    },
    // The audit trail is read by those who audit and inspect, for their jurisdiction.
    Rule {
        prefix: "/quotahub.v1.AuditService/",
        kinds: &[Audit, Discipline],
    },
    Rule {
        prefix: "/quotahub.v1.LedgerService/",
        kinds: EVERY_AGENCY,
    },
    Rule {
        prefix: "/quotahub.v1.LedgerService/OpenItem",
        kinds: &[StaffingOffice],
    },
    // The department's side and the staffing office; which move each may make is the domain's.
    Rule {
        prefix: "/quotahub.v1.LedgerService/MoveItem",
        kinds: &[StaffingOffice, Organization, Hr, Finance],
    },
    Rule {
        prefix: "/quotahub.v1.LedgerService/ImposePenalty",
        kinds: &[StaffingOffice],
    },
    // Assignment down the levels and closure level by level are the staffing offices' own
    // (交办, 上报, 销号); which office may make which is the domain's (`domain::assignment`).
    Rule {
        prefix: "/quotahub.v1.LedgerService/AssignItem",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.LedgerService/ConfirmLevel",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.ApplicationService/",
        kinds: &[StaffingOffice, Organization, Hr],
    },
    Rule {
        prefix: "/quotahub.v1.ApplicationService/Decide",
        kinds: &[StaffingOffice],
    },
    // Those who audit and inspect read applications too: whether the gate was overridden, why.
    Rule {
        prefix: "/quotahub.v1.ApplicationService/GetApplication",
        kinds: &[StaffingOffice, Organization, Hr, Discipline, Audit],
    },
    Rule {
        prefix: "/quotahub.v1.ApplicationService/ListApplications",
        kinds: &[StaffingOffice, Organization, Hr, Discipline, Audit],
    },
    // The review before approval (关口前移): the supervision division's, and those who inspect it.
    Rule {
        prefix: "/quotahub.v1.ApplicationService/ReviewApplication",
        kinds: &[StaffingOffice, Discipline, Audit],
    },
    // Special inspections: staffing offices open, close and follow them up; the HR or organization
    // agency whose jurisdiction covers an institution declares for it; discipline and audit read.
    Rule {
        prefix: "/quotahub.v1.CampaignService/",
        kinds: &[StaffingOffice, Organization, Hr, Discipline, Audit],
    },
    Rule {
        prefix: "/quotahub.v1.CampaignService/OpenCampaign",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.CampaignService/Declare",
        kinds: &[Hr, Organization],
    },
    Rule {
        prefix: "/quotahub.v1.CampaignService/OpenUndeclaredItems",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.CampaignService/CloseCampaign",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.CaseService/",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.CaseService/GetCase",
        kinds: &[StaffingOffice, Discipline, Audit],
    },
    Rule {
        prefix: "/quotahub.v1.CaseService/ListCases",
        kinds: &[StaffingOffice, Discipline, Audit],
    },
    // Cases go down the levels and back up as items do (交办, 上报, 销号, 退回): the staffing
    // offices' own; which office may make which move is the domain's (`domain::assignment`).
    Rule {
        prefix: "/quotahub.v1.CaseService/AssignCase",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.CaseService/ConfirmCaseLevel",
        kinds: &[StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.CaseService/SendBackCase",
        kinds: &[StaffingOffice],
    },
    // Those a transfer can reach; the handlers show each only the transfers that reach its kind.
    Rule {
        prefix: "/quotahub.v1.CaseService/GetTransfer",
        kinds: &[StaffingOffice, Discipline, Audit, Organization, Finance],
    },
    Rule {
        prefix: "/quotahub.v1.CaseService/ListTransfers",
        kinds: &[StaffingOffice, Discipline, Audit, Organization, Finance],
    },
    Rule {
        prefix: "/quotahub.v1.CaseService/AcknowledgeReceipt",
        kinds: &[Discipline, Audit, Organization, Finance],
    },
    // The report to the leadership (向编委领导报告): prepared by the staffing office, the 编委's
    // own office, and read by those who sit with the leadership in supervision, discipline
    // inspection and audit; each for its own jurisdiction. The departments it reports on do not
    // read it.
    Rule {
        prefix: "/quotahub.v1.ReportService/",
        kinds: &[StaffingOffice, Discipline, Audit],
    },
    Rule {
        prefix: "/grpc.health.v1.Health/",
        kinds: EVERY_AGENCY,
    },
    Rule {
        prefix: "/grpc.reflection.v1.ServerReflection/",
        kinds: EVERY_AGENCY,
    },
    Rule {
        prefix: "/grpc.reflection.v1alpha.ServerReflection/",
        kinds: EVERY_AGENCY,
    },
];

/// What of a person each agency kind sees whole (personal data on a need-to-know basis); the rest
/// it reads masked, in every read and on the feed (`api::personal`). A kind missing here sees
/// everything masked.
///
/// - The staffing office, the organization department and HR keep the real-name roll, appoint and
///   hire: they need to know who a person is, not what the person is paid.
/// - Finance pays: it needs the amounts, and refers to people by the ids of its own payroll lines
///   or by opaque person tokens.
/// - Discipline inspection and audit investigate: they see everything.
pub const PERSONAL_DATA: &[(AgencyKind, Visibility)] = &[
    (StaffingOffice, KNOWS_WHO),
    (Organization, KNOWS_WHO),
    (Hr, KNOWS_WHO),
    (
        Finance,
        Visibility {
            resident_ids: false,
            names: false,
            pay: true,
        },
    ),
    (Discipline, Visibility::WHOLE),
    (Audit, Visibility::WHOLE),
];

const KNOWS_WHO: Visibility = Visibility {
    resident_ids: true,
    names: true,
    pay: false,
};

/// What of a person an agency kind sees whole, from [`PERSONAL_DATA`].
pub fn personal_data(kind: AgencyKind) -> Visibility {
    PERSONAL_DATA
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(Visibility::MASKED, |(_, sight)| *sight)
}

/// [`POLICY`] as the Markdown table README.md shows (a unit test keeps the two equal).
pub fn markdown_table() -> String {
    let mut table =
        String::from("| gRPC path (longest prefix decides) | agency kinds |\n|---|---|\n");
    for rule in POLICY {
        let kinds = if rule.kinds == EVERY_AGENCY {
            "every kind".to_owned()
        } else {
            rule.kinds
                .iter()
                .map(|kind| format!("`{kind}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.push_str(&format!("| `{}` | {kinds} |\n", rule.prefix));
    }
    table
}

/// The authenticated agency of a call, put in the request's extensions by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// The agency.
    pub agency: Agency,
    /// SHA-256 of its certificate, for the log.
    pub cert_fingerprint: String,
}

/// Decides a call from its path and the connection's identity.
pub fn authorize(path: &str, peer: Option<&PeerIdentity>) -> Result<Caller, Error> {
    let peer = peer.ok_or_else(|| Error::Unauthenticated("no client certificate".into()))?;
    let agency = peer.agency.clone().map_err(|reason| {
        Error::Unauthenticated(format!(
            "the client certificate names no quotahub agency: {reason}"
        ))
    })?;
    let rule = POLICY
        .iter()
        .filter(|rule| path.starts_with(rule.prefix))
        .max_by_key(|rule| rule.prefix.len())
        .ok_or_else(|| Error::PermissionDenied(format!("{path} is not open to any agency")))?;
    if !rule.kinds.contains(&agency.kind) {
        return Err(Error::PermissionDenied(format!(
            "{} agency may not call {path}",
            agency.kind.with_article()
        )));
    }
    Ok(Caller {
        agency,
        cert_fingerprint: peer.cert_fingerprint.clone(),
    })
}

/// Tower layer that applies [`POLICY`] and the [`Guard`] (registry, rate limit, deadline, audit)
/// to every call.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    guard: Arc<Guard>,
}

impl AuthLayer {
    /// A layer that consults `guard`.
    pub fn new(guard: Arc<Guard>) -> AuthLayer {
        AuthLayer { guard }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Authorized<S> {
        Authorized {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The gRPC health service's path prefix.
const HEALTH: &str = "/grpc.health.v1.Health/";

/// The service behind [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    inner: S,
    guard: Arc<Guard>,
}

/// Decides a call: who it is (the registry), what it may do (the policy table), then whether the
/// agency is within its rate limit.
pub(crate) async fn admit(
    guard: &Guard,
    path: &str,
    peer: Option<&PeerIdentity>,
) -> Result<Caller, Error> {
    if let Some(PeerIdentity {
        agency: Ok(agency),
        cert_fingerprint,
        ..
    }) = peer
    {
        match guard.registry.check(agency, cert_fingerprint).await {
            Ok(()) => {}
            // Health must be answerable while the database (and so the registry) is away: that
            // is when it says NOT_SERVING. The certificate still chained to the hub's CA.
            Err(Error::Unavailable(_)) if path.starts_with(HEALTH) => {}
            Err(error) => return Err(error),
        }
    }
    let caller = authorize(path, peer)?;
    guard
        .limiter
        .take(&caller.agency.id())
        .map_err(|retry_after| Error::RateLimited { retry_after })?;
    Ok(caller)
}

/// The gRPC outcome of an answer: its `grpc-status` when it came at once (every refusal and error
/// of a unary call does), otherwise OK as the answer began.
fn outcome<R>(response: &http::Response<R>) -> &'static str {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from);
    grpc_code_name(code)
}

impl<S, B, R> Service<http::Request<B>> for Authorized<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let peer = request.extensions().get::<PeerIdentity>().cloned();
            let note = AuditNote::default();
            request.extensions_mut().insert(note.clone());
            let decision = admit(&guard, &path, peer.as_ref()).await;
            let (response, outcome, agency) = match decision {
                Ok(caller) => {
                    tracing::debug!(agency = %caller.agency, %path, "call allowed");
                    let agency = Some(caller.agency.clone());
                    request.extensions_mut().insert(caller);
                    let call = inner.call(request);
                    let response = match guard.deadlines.of(&path) {
                        Some(deadline) => match tokio::time::timeout(deadline, call).await {
                            Ok(response) => response,
                            Err(_) => Ok(Status::from(Error::DeadlineExceeded(format!(
                                "{path} did not finish within {deadline:?}"
                            )))
                            .into_http()),
                        },
                        None => call.await,
                    };
                    match response {
                        Ok(response) => {
                            let outcome = outcome(&response);
                            (Ok(response), outcome, agency)
                        }
                        Err(error) => (Err(error), "INTERNAL", agency),
                    }
                }
                Err(error) => {
                    tracing::warn!(%path, %error, "call refused");
                    let outcome = grpc_code_name(code(&error));
                    let agency = peer.as_ref().and_then(|peer| peer.agency.clone().ok());
                    (Ok(Status::from(error).into_http()), outcome, agency)
                }
            };
            // Answered only once the entry is durable (全程留痕): a crash after the answer
            // cannot lose it. A refusal or error, and health (NOT_SERVING), carry nothing from the
            // database and are answered while it is away, their entries queued until it is back.
            let entry = AuditEntry {
                at: crate::store::now_micros(),
                agency_id: agency.as_ref().map(Agency::id).unwrap_or_default(),
                jurisdiction: agency
                    .as_ref()
                    .map(|agency| agency.jurisdiction.to_string())
                    .unwrap_or_default(),
                fingerprint: peer
                    .as_ref()
                    .map(|peer| peer.cert_fingerprint.clone())
                    .unwrap_or_default(),
                peer: peer
                    .as_ref()
                    .map(|peer| peer.remote_addr.to_string())
                    .unwrap_or_default(),
                method: path,
                touched: note.text(),
                outcome: outcome.to_owned(),
            };
            let recorded = if outcome == "OK" && !entry.method.starts_with(HEALTH) {
                guard.audit.record(entry).await
            } else {
                guard.audit.record_unless_database_away(entry).await
            };
            match recorded {
                Ok(()) => response,
                Err(error) => Ok(Status::from(error).into_http()),
            }
        })
    }
}

/// The caller of a request that passed [`AuthLayer`]. Notes the request (a read's filter, a
/// pushed record's id) for the audit trail unless the handler notes something more telling.
pub fn caller<T: std::fmt::Debug>(request: &tonic::Request<T>) -> Result<Caller, Error> {
    if let Some(note) = request.extensions().get::<AuditNote>() {
        note.set_if_empty(|| format!("{:?}", request.get_ref()));
    }
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("the call did not pass authentication".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Jurisdiction;

    fn peer(kind: AgencyKind) -> PeerIdentity {
        PeerIdentity {
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            cert_fingerprint: "ab".into(),
            agency: Ok(Agency::new(Jurisdiction::parse("140100").unwrap(), kind)),
        }
    }

    #[test]
    fn each_push_service_is_open_to_its_agency_kind_only() {
        let cases = [
            ("/quotahub.v1.StaffingService/PushQuota", StaffingOffice),
            ("/quotahub.v1.PersonnelService/PushPersonnelEvents", Hr),
            (
                "/quotahub.v1.OrganizationService/PushAppointment",
                Organization,
            ),
            ("/quotahub.v1.FinanceService/PushPayrollLines", Finance),
        ];
        for (path, allowed) in cases {
            for kind in AgencyKind::ALL {
                let decision = authorize(path, Some(&peer(kind)));
                assert_eq!(decision.is_ok(), kind == allowed, "{kind} on {path}");
            }
        }
        for kind in AgencyKind::ALL {
            assert!(authorize("/quotahub.v1.QueryService/ListRoll", Some(&peer(kind))).is_ok());
        }
    }

    #[test]
    fn every_agency_kind_has_one_row_of_personal_data() {
        for kind in AgencyKind::ALL {
            let rows = PERSONAL_DATA.iter().filter(|(k, _)| *k == kind).count();
            assert_eq!(rows, 1, "{kind}");
        }
        assert!(personal_data(Audit).is_whole());
        assert!(!personal_data(Finance).resident_ids && personal_data(Finance).pay);
        assert!(personal_data(Hr).resident_ids && !personal_data(Hr).pay);
    }

    #[test]
    fn follow_through_is_open_to_the_kinds_that_take_part() {
        let cases: [(&str, &[AgencyKind]); 9] = [
            ("/quotahub.v1.LedgerService/GetItem", &AgencyKind::ALL),
            ("/quotahub.v1.LedgerService/OpenItem", &[StaffingOffice]),
            (
                "/quotahub.v1.LedgerService/MoveItem",
                &[StaffingOffice, Organization, Hr, Finance],
            ),
            ("/quotahub.v1.ApplicationService/Decide", &[StaffingOffice]),
            (
                "/quotahub.v1.CaseService/GetCase",
                &[StaffingOffice, Discipline, Audit],
            ),
            (
                "/quotahub.v1.CaseService/AcknowledgeReceipt",
                &[Discipline, Audit, Organization, Finance],
            ),
            ("/quotahub.v1.CaseService/AssignCase", &[StaffingOffice]),
            (
                "/quotahub.v1.CaseService/ConfirmCaseLevel",
                &[StaffingOffice],
            ),
            ("/quotahub.v1.CaseService/SendBackCase", &[StaffingOffice]),
        ];
        for (path, allowed) in cases {
            for kind in AgencyKind::ALL {
                let decision = authorize(path, Some(&peer(kind)));
                assert_eq!(
                    decision.is_ok(),
                    allowed.contains(&kind),
                    "{kind} on {path}"
                );
            }
        }
    }

    #[test]
    fn the_readme_shows_the_policy_table_as_it_is() {
        let readme = include_str!("../../README.md");
        let begin = "<!-- policy table: generated from src/api/policy.rs -->\n";
        let end = "<!-- end of policy table -->";
        let start = readme
            .find(begin)
            .expect("the README marks the policy table")
            + begin.len();
        let stop = start
            + readme[start..]
                .find(end)
                .expect("the table's end is marked");
        assert_eq!(
            &readme[start..stop],
            markdown_table(),
            "README.md's policy table differs from POLICY; paste this table there:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn unknown_paths_and_anonymous_callers_are_refused() {
        assert!(matches!(
            authorize("/quotahub.v1.SecretService/Do", Some(&peer(StaffingOffice))),
            Err(Error::PermissionDenied(_))
        ));
        assert!(matches!(
            authorize("/quotahub.v1.QueryService/ListRoll", None),
            Err(Error::Unauthenticated(_))
        ));
        let mut foreign = peer(Hr);
        foreign.agency = Err("no agency URI".into());
        assert!(matches!(
            authorize("/quotahub.v1.QueryService/ListRoll", Some(&foreign)),
            Err(Error::Unauthenticated(_))
        ));
    }
}
