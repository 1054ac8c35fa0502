//! The report as one self-contained HTML page: styles inline, charts as inline SVG from
//! [`crate::chart`]'s geometry, nothing fetched. Escaped by askama.

use askama::Template;

use super::{Document, Figure, Section};
use crate::chart::{Chart, CountChart, Lang};
use crate::error::{Error, Result};

/// The page's template (`templates/report/leadership.html`).
#[derive(Template)]
#[template(path = "report/leadership.html")]
struct LeadershipPage<'a> {
    doc: &'a Document,
}

impl Section {
    /// The balance chart, if the section has one.
    pub fn balance(&self) -> Option<&Chart> {
        match &self.figure {
            Some(Figure::Balance(chart)) => Some(chart),
            _ => None,
        }
    }

    /// The count chart, if the section has one.
    pub fn counts(&self) -> Option<&CountChart> {
        match &self.figure {
            Some(Figure::Counts(chart)) => Some(chart),
            _ => None,
        }
    }

    /// Whether column `index` holds numbers.
    pub fn numeric(&self, index: &usize) -> bool {
        self.table.numeric.get(*index).copied().unwrap_or(false)
    }

    /// Whether `cell` in column `index` is a negative number (a shortfall), shown in red.
    pub fn negative(&self, cell: &str, index: &usize) -> bool {
        self.numeric(index) && cell.starts_with('-')
    }
}

/// The page, as UTF-8.
pub fn render(document: &Document) -> Result<String> {
    LeadershipPage { doc: document }
        .render()
        .map_err(|error| Error::Internal(format!("cannot render the report: {error}")))
}
