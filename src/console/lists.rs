//! What several pages share to read whole lists through the handlers: how many rows a call asks
//! for and how many calls a page may make, every ledger item of a filter, and the CSV answer.
//! Below the pages, so that they need not import each other.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::Status;

use super::Visit;
use crate::proto;
use crate::proto::ledger_service_server::LedgerService as _;

/// Rows per call when a page or export reads every finding.
pub const BULK_PAGE_SIZE: u32 = 5_000;
/// Most calls a page or export makes to read every finding (so at most 100,000 findings).
pub const MAX_BULK_PAGES: usize = 20;
/// The audit trail's query, which the navigation offers to whom it admits.
pub const QUERY_AUDIT: &str = "/quotahub.v1.AuditService/QueryAudit";
/// The campaigns' list, which the navigation offers to whom it admits.
pub const LIST_CAMPAIGNS: &str = "/quotahub.v1.CampaignService/ListCampaigns";

/// See [`super::pages::LIST_FINDINGS`].
pub const LIST_ITEMS: &str = "/quotahub.v1.LedgerService/ListItems";

/// Every ledger item of the viewer's jurisdiction that the department and overdue filters select.
pub async fn every_item(
    visit: &mut Visit,
    department: &str,
    overdue_only: bool,
) -> Result<Vec<proto::LedgerItem>, Status> {
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..MAX_BULK_PAGES {
        let page = visit
            .call(
                LIST_ITEMS,
                proto::ListItemsRequest {
                    jurisdiction: String::new(),
                    department_uscc: department.trim().to_owned(),
                    overdue_only,
                    page_size: BULK_PAGE_SIZE,
                    page_token: token,
                },
                |hub, request| async move { hub.list_items(request).await },
            )
            .await?;
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return Ok(items);
        }
        token = page.next_page_token;
    }
    Err(Status::resource_exhausted(
        "too many ledger items for one page; narrow the filters",
    ))
}

/// A CSV answer.
pub fn csv_response(out: csv::Writer<Vec<u8>>, name: &str) -> Result<Response, Status> {
    let body = out
        .into_inner()
        .map_err(|error| Status::internal(error.to_string()))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}
