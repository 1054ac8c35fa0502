//! Who may call what: one table, enforced by one tower layer in front of every service. The layer
//! turns the connection's certificate into a [`Caller`] that handlers read; a call that the table
//! does not allow never reaches a handler. Jurisdiction (an agency acts on its own division and
//! those below it) is checked by the store and the handlers, which know the records involved.

use std::task::{Context, Poll};

use tonic::Status;
use tower::{Layer, Service};

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
        prefix: "/quotahub.v1.ReconciliationService/VerifyFunding",
        kinds: &[Finance, StaffingOffice],
    },
    Rule {
        prefix: "/quotahub.v1.ReconciliationService/Reconcile",
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
    Rule {
        prefix: "/quotahub.v1.ApplicationService/",
        kinds: &[StaffingOffice, Organization, Hr],
    },
    Rule {
        prefix: "/quotahub.v1.ApplicationService/Decide",
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
        prefix: "/quotahub.v1.CaseService/AcknowledgeReceipt",
        kinds: &[Discipline, Audit, Organization, Finance],
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
            "a {} agency may not call {path}",
            agency.kind
        )));
    }
    Ok(Caller {
        agency,
        cert_fingerprint: peer.cert_fingerprint.clone(),
    })
}

/// Tower layer that applies [`POLICY`] to every call.
#[derive(Debug, Clone, Default)]
pub struct AuthLayer;

impl<S> Layer<S> for AuthLayer {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Authorized<S> {
        Authorized { inner }
    }
}

/// The service behind [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for Authorized<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, std::future::Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        match authorize(&path, request.extensions().get::<PeerIdentity>()) {
            Ok(caller) => {
                tracing::debug!(agency = %caller.agency, %path, "call allowed");
                request.extensions_mut().insert(caller);
                futures::future::Either::Left(self.inner.call(request))
            }
            Err(error) => {
                tracing::warn!(%path, %error, "call refused");
                let response = Status::from(error).into_http();
                futures::future::Either::Right(std::future::ready(Ok(response)))
            }
        }
    }
}

/// The caller of a request that passed [`AuthLayer`].
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Error> {
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
        let cases: [(&str, &[AgencyKind]); 6] = [
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
