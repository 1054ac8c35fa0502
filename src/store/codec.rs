//! Reading stored rows back: columns, and values that were validated before they were stored.
//! Every store module decodes through these, so none of them needs another for it.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::Coded;
use crate::error::{Error, Result};

/// Reads the columns of a row; an error here means the schema and the code disagree.
pub(crate) fn column<T>(row: &AnyRow, name: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name).map_err(Error::from)
}

/// Turns a parse error of a stored value into an internal error: stored values were validated.
pub(crate) fn stored<T>(parsed: Result<T, String>) -> Result<T> {
    parsed.map_err(|reason| Error::Internal(format!("stored value no longer parses: {reason}")))
}

/// Reads a stored enum code.
pub(crate) fn stored_code<T: Coded>(code: &str) -> Result<T> {
    T::from_code(code).ok_or_else(|| Error::Internal(format!("unknown stored code `{code}`")))
}
