//! Databases made for one run and removed after it: an SQLite file in a fresh directory, or a fresh
//! database on a PostgreSQL server where the user may create databases.

use std::path::PathBuf;

use anyhow::Context;

/// Where a run's databases live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseServer {
    /// A temporary SQLite file per database.
    Sqlite,
    /// Fresh databases on this PostgreSQL server (the URL names any database the user can reach).
    Postgres {
        /// URL used to create and drop the run's databases.
        admin_url: String,
    },
}

impl DatabaseServer {
    /// Reads the `--database-url` flag: empty or absent means SQLite.
    pub fn from_flag(url: Option<&str>) -> anyhow::Result<DatabaseServer> {
        match url.map(str::trim) {
            None | Some("") => Ok(DatabaseServer::Sqlite),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(DatabaseServer::Postgres {
                    admin_url: url.to_owned(),
                })
            }
            Some(_) => anyhow::bail!(
                "--database-url must be empty (a temporary SQLite file) or a postgres:// URL of a server where the user may create databases"
            ),
        }
    }

    /// `SQLite` or `PostgreSQL`, for the table.
    pub fn name(&self) -> &'static str {
        match self {
            DatabaseServer::Sqlite => "SQLite",
            DatabaseServer::Postgres { .. } => "PostgreSQL",
        }
    }
}

/// One database of a run. Call [`TempDatabase::remove`] when done; an SQLite directory is also
/// removed on drop.
#[derive(Debug)]
pub enum TempDatabase {
    /// An SQLite file in its own directory.
    Sqlite {
        /// The directory (removed with the file).
        dir: PathBuf,
        /// `sqlite://...`.
        url: String,
    },
    /// A PostgreSQL database made for the run.
    Postgres {
        /// Where it was created from (to drop it).
        admin_url: String,
        /// Its name.
        name: String,
        /// Its URL.
        url: String,
    },
}

impl TempDatabase {
    /// Makes an empty database; `label` tells the run's databases apart (`hub`, `baseline`).
    pub async fn create(server: &DatabaseServer, label: &str) -> anyhow::Result<TempDatabase> {
        // Two runs in one process (the tests) may start in the same microsecond: a counter
        // keeps their databases apart.
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = format!(
            "{}_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros(),
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        match server {
            DatabaseServer::Sqlite => {
                let dir = std::env::temp_dir().join(format!("quotahub-bench-{label}-{unique}"));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let url = format!("sqlite://{}", dir.join(format!("{label}.db")).display());
                Ok(TempDatabase::Sqlite { dir, url })
            }
            DatabaseServer::Postgres { admin_url } => {
                let name = format!("quotahub_bench_{label}_{unique}");
                admin_execute(admin_url, &format!("CREATE DATABASE {name}")).await?;
                Ok(TempDatabase::Postgres {
                    admin_url: admin_url.clone(),
                    url: database_url(admin_url, &name),
                    name,
                })
            }
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        match self {
            TempDatabase::Sqlite { url, .. } | TempDatabase::Postgres { url, .. } => url,
        }
    }

    /// Removes the database (the SQLite directory, or `DROP DATABASE ... WITH (FORCE)`).
    pub async fn remove(self) -> anyhow::Result<()> {
        match &self {
            TempDatabase::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
                Ok(())
            }
            TempDatabase::Postgres {
                admin_url, name, ..
            } => {
                admin_execute(
                    admin_url,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await
            }
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if let TempDatabase::Sqlite { dir, .. } = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The URL of database `name` on the server of `admin_url`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let without_db = match base[after_scheme..].rfind('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    format!("{without_db}/{name}{query}")
}

async fn admin_execute(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let mut connection = admin_url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .context("--database-url is not a PostgreSQL URL")?
        .disable_statement_logging()
        .connect()
        .await
        .context("cannot connect to the PostgreSQL server of --database-url")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut connection)
        .await
        .with_context(|| format!("`{sql}` failed"))?;
    let _ = connection.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_database_sits_on_the_same_server() {
        assert_eq!(
            database_url("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(database_url("postgres://u@h", "x"), "postgres://u@h/x");
    }

    #[test]
    fn the_flag_picks_the_backend() {
        assert_eq!(
            DatabaseServer::from_flag(None).unwrap(),
            DatabaseServer::Sqlite
        );
        assert_eq!(
            DatabaseServer::from_flag(Some("")).unwrap(),
            DatabaseServer::Sqlite
        );
        assert!(matches!(
            DatabaseServer::from_flag(Some("postgres://h/db")).unwrap(),
            DatabaseServer::Postgres { .. }
        ));
        assert!(DatabaseServer::from_flag(Some("sqlite://x.db")).is_err());
    }
}
