//! Secrets the hub makes for itself and shares among its replicas through the database.

use super::codec::column;
use super::{Store, Value, bind_all};
use crate::error::Result;

impl Store {
    /// The secret called `name`: the one stored, or `candidate` if none was (replicas racing to
    /// store one all end up with the first stored).
    pub async fn hub_secret(&self, name: &str, candidate: &str) -> Result<String> {
        let mut tx = self.begin().await?;
        sqlx::query_with(
            "INSERT INTO hub_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            bind_all(vec![Value::from(name), Value::from(candidate)])?,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let row = sqlx::query_with(
            "SELECT value FROM hub_secrets WHERE name = $1",
            bind_all(vec![Value::from(name)])?,
        )
        .fetch_one(self.readers())
        .await?;
        column(&row, "value")
    }
}
