//! The supervision console: the monitoring platform in a browser, served by the hub itself on its
//! own HTTPS port (`console.listen`). Pages are rendered on the server (askama templates, charts
//! as inline SVG, no script); every asset is embedded in the binary.
//!
//! The login is the agency's client certificate, read by the same TLS accept loop as gRPC (the
//! console's configuration requests a certificate instead of requiring one, so that a browser
//! without one gets a refusal page rather than a TLS error). Pages get their data only by calling
//! the gRPC handlers on [`Hub`], through [`Visit::call`]: it admits each call exactly as
//! [`crate::api::policy::AuthLayer`] does (registry, [`crate::api::policy::POLICY`], rate limit)
//! and hands the handler a request carrying the [`crate::api::policy::Caller`], so that
//! jurisdiction scoping and the masking of personal data are the handlers' own. Every page
//! request, allowed or refused, is one entry of the audit trail.

mod board;
mod campaigns;
mod institution;
mod lists;
mod live;
mod matters;
mod pages;
mod trail;
mod views;

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use tonic::{Code, Status};

use crate::api::Hub;
use crate::api::admin::AdminApi;
use crate::api::guard::{AuditNote, Guard};
use crate::api::status::grpc_code_name;
use crate::domain::Agency;
use crate::domain::audit::AuditEntry;
use crate::error::Error;
use crate::tls::{AuthenticatedStream, PeerIdentity, TlsIncoming};

pub use pages::{ListQuery, TransitionForm};
pub use views::FindingQuery;

/// What the console's pages share: the handlers they call and the guard that admits each call.
pub struct Console {
    /// The gRPC handlers, called in process.
    hub: Hub,
    /// AuditService's handlers (the registry's and the trail's service, apart from `Hub`).
    auditor: Arc<AdminApi>,
    /// Registry, rate limits, deadlines and the audit trail, as for gRPC calls.
    guard: Arc<Guard>,
    /// Key of the per-certificate form tokens (made at start; a restart invalidates open forms).
    form_key: ring::hmac::Key,
}

impl Console {
    /// A console over the hub's handlers and guard.
    pub fn new(hub: Hub, guard: Arc<Guard>) -> Console {
        let random = ring::rand::SystemRandom::new();
        let form_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &random)
            .expect("the system's random source works");
        Console {
            auditor: Arc::new(AdminApi::new(hub.store.clone(), guard.clone())),
            hub,
            guard,
            form_key,
        }
    }

    /// The form token of a certificate: what a page's forms carry and a POST must give back.
    fn form_token(&self, peer: &PeerIdentity) -> String {
        hex::encode(ring::hmac::sign(&self.form_key, peer.cert_fingerprint.as_bytes()).as_ref())
    }

    fn form_token_is_valid(&self, peer: &PeerIdentity, token: &str) -> bool {
        hex::decode(token).is_ok_and(|tag| {
            ring::hmac::verify(&self.form_key, peer.cert_fingerprint.as_bytes(), &tag).is_ok()
        })
    }
}

/// Serves the console on `incoming` until `shutdown` completes.
pub async fn serve(
    incoming: TlsIncoming,
    console: Console,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(
        Incoming(incoming),
        router(Arc::new(console)).into_make_service_with_connect_info::<PeerIdentity>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/findings", get(findings))
        .route("/findings.csv", get(findings_csv))
        .route("/finding", get(finding))
        .route("/finding/transition", post(transition))
        .route("/institution", get(institution_page))
        .route("/institution/roll.csv", get(roll_csv))
        .route("/ledger", get(ledger_board))
        .route("/ledger.csv", get(ledger_csv))
        .route("/ledger/item", get(ledger_item))
        .route("/ledger/report", get(ledger_report))
        .route("/ledger/report.csv", get(ledger_report_csv))
        .route("/case", get(case_page))
        .route("/case/move", post(case_move))
        .route("/application", get(application_page))
        .route("/matters", get(matters_first))
        .route("/cases", get(cases_page))
        .route("/cases.csv", get(cases_csv))
        .route("/transfers", get(transfers_page))
        .route("/transfers.csv", get(transfers_csv))
        .route("/transfer", get(transfer_page))
        .route("/applications", get(applications_page))
        .route("/applications.csv", get(applications_csv))
        .route("/campaigns", get(campaigns_page))
        .route("/campaign", get(campaign_page))
        .route("/audit", get(audit_trail))
        .route("/audit.csv", get(audit_csv))
        .route("/live", get(live_page))
        .route("/live/events", get(live_events))
        .route("/assets/live.js", get(live_script))
        .route("/assets/console.css", get(stylesheet))
        .route("/assets/icon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .fallback(not_found)
        .with_state(console)
}

/// The authenticated connections of the console's port, as axum accepts them; each carries the
/// identity its certificate established (or why there is none).
struct Incoming(TlsIncoming);

impl axum::serve::Listener for Incoming {
    type Io = AuthenticatedStream;
    type Addr = PeerIdentity;

    async fn accept(&mut self) -> (AuthenticatedStream, PeerIdentity) {
        match self.0.next().await {
            Some(Ok(stream)) => {
                let identity = stream.identity().clone();
                (stream, identity)
            }
            Some(Err(never)) => match never {},
            // The accept loop ended: the console is stopping.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<PeerIdentity> {
        Err(io::Error::other(
            "the console's listener has no identity of its own",
        ))
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Incoming>>
    for PeerIdentity
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> PeerIdentity {
        stream.remote_addr().clone()
    }
}

/// The language of a page: Chinese unless the link says `lang=en`, so links are shareable.
pub use crate::lang::Lang;

impl Lang {
    fn from_query(lang: Option<&str>) -> Lang {
        if lang == Some("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }
}

/// One page request: who asks, and what the calls made for it touched, for its audit entry.
pub struct Visit {
    console: Arc<Console>,
    peer: PeerIdentity,
    /// `console GET /findings`: what the audit entry's method says.
    method: String,
    /// The query string, then what each call noted.
    touched: Vec<String>,
    /// The page's language.
    pub lang: Lang,
}

impl Visit {
    fn start(
        console: Arc<Console>,
        peer: PeerIdentity,
        method: &str,
        query: &str,
        lang: Lang,
    ) -> Visit {
        let mut touched = Vec::new();
        if !query.is_empty() {
            touched.push(query.to_owned());
        }
        Visit {
            console,
            peer,
            method: format!("console {method}"),
            touched,
            lang,
        }
    }

    /// The viewing agency: the certificate must name one, be registered for it and the agency be
    /// enabled (the registry, as for every gRPC call).
    pub async fn viewer(&self) -> Result<Agency, Status> {
        let agency = self
            .peer
            .agency
            .clone()
            .map_err(|reason| Status::from(Error::Unauthenticated(reason)))?;
        self.console
            .guard
            .registry
            .check(&agency, &self.peer.cert_fingerprint)
            .await?;
        Ok(agency)
    }

    /// Another visit of the same viewer, for work that outlives the request (a page's event
    /// stream): its own audit entry, under `method`.
    fn fork(&self, method: &str) -> Visit {
        Visit::start(
            self.console.clone(),
            self.peer.clone(),
            method,
            "",
            self.lang,
        )
    }

    /// Whether the policy table lets the viewer call `path` (to offer only the forms it may use;
    /// the call itself is still admitted on its own when made).
    pub fn may_call(&self, path: &str) -> bool {
        crate::api::policy::authorize(path, Some(&self.peer)).is_ok()
    }

    /// The form token of the viewer's certificate.
    pub fn form_token(&self) -> String {
        self.console.form_token(&self.peer)
    }

    /// Calls a gRPC handler as the viewer: admitted as the authorization layer admits a call
    /// to `path` (registry, policy, rate limit), with the [`crate::api::policy::Caller`] and an
    /// audit note in the request's extensions, under the method's deadline.
    pub async fn call<M, R, F, Fut>(
        &mut self,
        path: &'static str,
        message: M,
        handler: F,
    ) -> Result<R, Status>
    where
        F: FnOnce(Hub, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let hub = self.console.hub.clone();
        self.call_on(hub, path, message, handler).await
    }

    /// [`Visit::call`] of an AuditService handler.
    pub async fn call_auditor<M, R, F, Fut>(
        &mut self,
        path: &'static str,
        message: M,
        handler: F,
    ) -> Result<R, Status>
    where
        F: FnOnce(Arc<AdminApi>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let auditor = self.console.auditor.clone();
        self.call_on(auditor, path, message, handler).await
    }

    async fn call_on<S, M, R, F, Fut>(
        &mut self,
        service: S,
        path: &'static str,
        message: M,
        handler: F,
    ) -> Result<R, Status>
    where
        F: FnOnce(S, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let guard = &self.console.guard;
        let caller = crate::api::policy::admit(guard, path, Some(&self.peer)).await?;
        let note = AuditNote::default();
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(caller);
        request.extensions_mut().insert(note.clone());
        let call = handler(service, request);
        let answer = match guard.deadlines.of(path) {
            Some(deadline) => match tokio::time::timeout(deadline, call).await {
                Ok(answer) => answer,
                Err(_) => Err(Status::from(Error::DeadlineExceeded(format!(
                    "{path} did not finish within {deadline:?}"
                )))),
            },
            None => call.await,
        };
        self.touched.push(format!("{path} {}", note.text()));
        answer.map(tonic::Response::into_inner)
    }

    /// Appends the page's entry to the audit trail, then answers: the page, or the refusal or
    /// error page of `Status`. As for a call, an allowed page is answered only once its entry is
    /// durable.
    async fn answer(self, page: Result<Response, Status>) -> Response {
        let outcome = match &page {
            Ok(_) => "OK",
            Err(status) => grpc_code_name(status.code()),
        };
        let agency = self.peer.agency.as_ref().ok();
        let entry = AuditEntry {
            at: crate::store::now_micros(),
            agency_id: agency.map(Agency::id).unwrap_or_default(),
            jurisdiction: agency
                .map(|agency| agency.jurisdiction.to_string())
                .unwrap_or_default(),
            fingerprint: self.peer.cert_fingerprint.clone(),
            peer: self.peer.remote_addr.to_string(),
            method: self.method.clone(),
            touched: self.touched.join("; ").chars().take(480).collect(),
            outcome: outcome.to_owned(),
        };
        let audit = &self.console.guard.audit;
        let recorded = if page.is_ok() {
            audit.record(entry).await
        } else {
            audit.record_unless_database_away(entry).await
        };
        match (page, recorded) {
            (Ok(page), Ok(())) => page,
            (Err(status), _) => self.failure(&status),
            (Ok(_), Err(error)) => self.failure(&Status::from(error)),
        }
    }

    fn failure(&self, status: &Status) -> Response {
        if matches!(
            status.code(),
            Code::Unauthenticated | Code::PermissionDenied
        ) {
            tracing::warn!(peer = %self.peer.remote_addr, method = %self.method, reason = %status.message(), "console page refused");
            return (StatusCode::FORBIDDEN, views::refused(status)).into_response();
        }
        let http = match status.code() {
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Aborted | Code::FailedPrecondition | Code::AlreadyExists => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (http, views::error_page(self.lang, status)).into_response()
    }
}

type Shared = State<Arc<Console>>;
type Peer = ConnectInfo<PeerIdentity>;

async fn overview(
    State(console): Shared,
    ConnectInfo(peer): Peer,
    Query(query): Query<pages::LangQuery>,
) -> Response {
    let lang = Lang::from_query(query.lang.as_deref());
    let mut visit = Visit::start(console, peer, "GET /", "", lang);
    let page = pages::overview(&mut visit).await;
    visit.answer(page).await
}

async fn findings(
    State(console): Shared,
    ConnectInfo(peer): Peer,
    Query(query): Query<ListQuery>,
) -> Response {
    let lang = Lang::from_query(query.lang.as_deref());
    let mut visit = Visit::start(console, peer, "GET /findings", &query.summary(), lang);
    let page = pages::findings(&mut visit, &query).await;
    visit.answer(page).await
}

async fn findings_csv(
    State(console): Shared,
    ConnectInfo(peer): Peer,
    Query(query): Query<ListQuery>,
) -> Response {
    let lang = Lang::from_query(query.lang.as_deref());
    let mut visit = Visit::start(console, peer, "GET /findings.csv", &query.summary(), lang);
    let page = pages::findings_csv(&mut visit, &query).await;
    visit.answer(page).await
}

async fn finding(
    State(console): Shared,
    ConnectInfo(peer): Peer,
    Query(query): Query<FindingQuery>,
) -> Response {
    let lang = Lang::from_query(query.lang.as_deref());
    let mut visit = Visit::start(console, peer, "GET /finding", &query.summary(), lang);
    let page = pages::finding(&mut visit, &query).await;
    visit.answer(page).await
}

/// A page whose link is a query of type `Q`: the language from the link, one visit, one audit
/// entry naming the query.
macro_rules! query_page {
    ($name:ident, $query:ty, $method:literal, $summary:expr, $page:path) => {
        async fn $name(
            State(console): Shared,
            ConnectInfo(peer): Peer,
            Query(query): Query<$query>,
        ) -> Response {
            let lang = Lang::from_query(query.lang.as_deref());
            let summary: fn(&$query) -> String = $summary;
            let mut visit = Visit::start(console, peer, $method, &summary(&query), lang);
            let page = $page(&mut visit, &query).await;
            visit.answer(page).await
        }
    };
}

query_page!(
    institution_page,
    institution::InstitutionQuery,
    "GET /institution",
    institution::InstitutionQuery::summary,
    institution::page
);
query_page!(
    roll_csv,
    institution::InstitutionQuery,
    "GET /institution/roll.csv",
    institution::InstitutionQuery::summary,
    institution::roll_csv
);
query_page!(
    ledger_board,
    board::BoardQuery,
    "GET /ledger",
    board::BoardQuery::summary,
    board::board
);
query_page!(
    ledger_csv,
    board::BoardQuery,
    "GET /ledger.csv",
    board::BoardQuery::summary,
    board::board_csv
);
query_page!(
    ledger_item,
    board::IdQuery,
    "GET /ledger/item",
    |q| format!("id={}", q.id),
    board::item
);
query_page!(
    ledger_report,
    board::ReportQuery,
    "GET /ledger/report",
    board::ReportQuery::query_string,
    board::report
);
query_page!(
    ledger_report_csv,
    board::ReportQuery,
    "GET /ledger/report.csv",
    board::ReportQuery::query_string,
    board::report_csv
);
query_page!(
    case_page,
    board::IdQuery,
    "GET /case",
    |q| format!("id={}", q.id),
    matters::case
);
query_page!(
    application_page,
    board::IdQuery,
    "GET /application",
    |q| format!("id={}", q.id),
    board::application
);
query_page!(
    matters_first,
    matters::MatterQuery,
    "GET /matters",
    matters::MatterQuery::summary,
    matters::first_list
);
query_page!(
    cases_page,
    matters::MatterQuery,
    "GET /cases",
    matters::MatterQuery::summary,
    matters::cases_page
);
query_page!(
    cases_csv,
    matters::MatterQuery,
    "GET /cases.csv",
    matters::MatterQuery::summary,
    matters::cases_csv
);
query_page!(
    transfers_page,
    matters::MatterQuery,
    "GET /transfers",
    matters::MatterQuery::summary,
    matters::transfers_page
);
query_page!(
    transfers_csv,
    matters::MatterQuery,
    "GET /transfers.csv",
    matters::MatterQuery::summary,
    matters::transfers_csv
);
query_page!(
    transfer_page,
    board::IdQuery,
    "GET /transfer",
    |q| format!("id={}", q.id),
    matters::transfer
);
query_page!(
    applications_page,
    matters::MatterQuery,
    "GET /applications",
    matters::MatterQuery::summary,
    matters::applications_page
);
query_page!(
    applications_csv,
    matters::MatterQuery,
    "GET /applications.csv",
    matters::MatterQuery::summary,
    matters::applications_csv
);
query_page!(
    audit_trail,
    trail::TrailQuery,
    "GET /audit",
    trail::TrailQuery::summary,
    trail::page
);
query_page!(
    campaigns_page,
    campaigns::ListQuery,
    "GET /campaigns",
    campaigns::ListQuery::summary,
    campaigns::list
);
query_page!(
    campaign_page,
    campaigns::CampaignQuery,
    "GET /campaign",
    campaigns::CampaignQuery::summary,
    campaigns::report
);
query_page!(
    audit_csv,
    trail::TrailQuery,
    "GET /audit.csv",
    trail::TrailQuery::summary,
    trail::csv
);

async fn live_page(
    State(console): Shared,
    ConnectInfo(peer): Peer,
    Query(query): Query<pages::LangQuery>,
) -> Response {
    let lang = Lang::from_query(query.lang.as_deref());
    let mut visit = Visit::start(console, peer, "GET /live", "", lang);
    let page = live::page(&mut visit).await;
    visit.answer(page).await
}

/// The live page's event stream. `Last-Event-ID` is what the browser sends when it reconnects.
async fn live_events(
    State(console): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Query(query): Query<pages::LangQuery>,
) -> Response {
    let lang = Lang::from_query(query.lang.as_deref());
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let summary = last_event_id.map_or_else(String::new, |seq| format!("last-event-id={seq}"));
    let mut visit = Visit::start(console, peer, "GET /live/events", &summary, lang);
    let page = live::events(&mut visit, last_event_id).await;
    visit.answer(page).await
}

/// A transition posted from a finding's page. Forms are protected against cross-site requests
/// twice: the browser's `Origin` (and `Sec-Fetch-Site`) must be this console's, and the form
/// must carry the token of the viewer's certificate, which only a page of this origin can read.
/// A cookie's `SameSite` would not do: the credential here is the client certificate, which a
/// browser presents to any request, whatever site made it.
async fn transition(
    State(console): Shared,
    ConnectInfo(peer): Peer,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Form(form): Form<TransitionForm>,
) -> Response {
    let lang = Lang::from_query(form.finding.lang.as_deref());
    let checked = form_check(&console, &peer, &uri, &headers, &form.form_token);
    let mut visit = Visit::start(
        console,
        peer,
        "POST /finding/transition",
        &form.summary(),
        lang,
    );
    let page = match checked {
        Ok(()) => pages::transition(&mut visit, &form).await,
        Err(refusal) => Err(refusal),
    };
    visit.answer(page).await
}

/// A move posted from a case's page, protected as a transition is.
async fn case_move(
    State(console): Shared,
    ConnectInfo(peer): Peer,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Form(form): Form<matters::CaseMoveForm>,
) -> Response {
    let lang = Lang::from_query(form.lang.as_deref());
    let checked = form_check(&console, &peer, &uri, &headers, &form.form_token);
    let mut visit = Visit::start(console, peer, "POST /case/move", &form.summary(), lang);
    let page = match checked {
        Ok(()) => matters::case_move(&mut visit, &form).await,
        Err(refusal) => Err(refusal),
    };
    visit.answer(page).await
}

/// Whether a posted form may be acted on: sent from a page of this console, with the token of
/// the viewer's certificate (see [`transition`]).
fn form_check(
    console: &Console,
    peer: &PeerIdentity,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    token: &str,
) -> Result<(), Status> {
    if !same_origin(uri, headers) {
        Err(Status::permission_denied(
            "the form was not posted from this console (Origin)",
        ))
    } else if !console.form_token_is_valid(peer, token) {
        Err(Status::permission_denied(
            "the form's token is not this certificate's",
        ))
    } else {
        Ok(())
    }
}

/// Whether a request came from a page of this console: its `Origin` names the host it was sent
/// to (browsers send `Origin` with every POST), and `Sec-Fetch-Site`, when sent, says same-origin.
fn same_origin(uri: &axum::http::Uri, headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &header::HeaderValue| value.to_str().ok())
    };
    // HTTP/2 carries the host in `:authority`, which hyper puts in the URI; HTTP/1 in `Host`.
    let host = uri
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| text(header::HOST).map(str::to_owned));
    let Some(origin) = text(header::ORIGIN) else {
        return false;
    };
    if text(header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|site| site != "same-origin")
    {
        return false;
    }
    host.is_some_and(|host| origin == format!("https://{host}"))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("assets/console.css"),
    )
        .into_response()
}

async fn live_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("assets/live.js"),
    )
        .into_response()
}

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("assets/icon.svg"),
    )
        .into_response()
}

async fn not_found(
    State(console): Shared,
    ConnectInfo(peer): Peer,
    uri: axum::http::Uri,
) -> Response {
    let mut visit = Visit::start(console, peer, &format!("GET {}", uri.path()), "", Lang::Zh);
    let page = match visit.viewer().await {
        Ok(_) => Err(Status::not_found("no such page")),
        Err(refused) => Err(refused),
    };
    visit.touched.clear();
    visit.answer(page).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, Uri};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_form_must_come_from_the_consoles_own_origin() {
        let h2: Uri = "https://127.0.0.1:50052/finding/transition"
            .parse()
            .unwrap();
        let h1: Uri = "/finding/transition".parse().unwrap();
        let ours = [("origin", "https://127.0.0.1:50052")];
        assert!(same_origin(&h2, &headers(&ours)));
        assert!(same_origin(
            &h1,
            &headers(&[
                ("origin", "https://127.0.0.1:50052"),
                ("host", "127.0.0.1:50052")
            ])
        ));
        // No Origin, another origin, another port, or a browser that says cross-site.
        assert!(!same_origin(&h2, &headers(&[])));
        assert!(!same_origin(
            &h2,
            &headers(&[("origin", "https://evil.example")])
        ));
        assert!(!same_origin(
            &h2,
            &headers(&[("origin", "https://127.0.0.1:50053")])
        ));
        assert!(!same_origin(
            &h2,
            &headers(&[("origin", "http://127.0.0.1:50052")])
        ));
        assert!(!same_origin(
            &h2,
            &headers(&[
                ("origin", "https://127.0.0.1:50052"),
                ("sec-fetch-site", "cross-site")
            ])
        ));
        assert!(
            !same_origin(&h1, &headers(&ours)),
            "no host to compare with"
        );
    }

    #[test]
    fn languages_come_from_the_link() {
        assert_eq!(Lang::from_query(None), Lang::Zh);
        assert_eq!(Lang::from_query(Some("en")), Lang::En);
        assert_eq!(Lang::from_query(Some("fr")), Lang::Zh);
    }
}
