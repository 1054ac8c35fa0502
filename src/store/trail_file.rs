//! Where an SQLite file's audit trail is kept: a file of its own beside the data's, attached to
//! every connection (the pools', the native writer's and readers', the checkpointer's) as the
//! schema `trail` (`store::sqlite` says why).

use std::path::{Path, PathBuf};

/// The file the audit trail of the SQLite file `file` is kept in: `quotahub.db-audit` beside
/// `quotahub.db` (and its own `-wal` and `-shm` beside it). A copy of the database is a copy of
/// both.
pub(crate) fn trail_file(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push("-audit");
    PathBuf::from(name)
}

/// What a connection to the SQLite file `file` runs first: the trail's file attached as `trail`,
/// created when missing, and its commits as durable as the data's (`synchronous` is set per
/// database). Tables are named without their schema everywhere: SQLite finds each in the one
/// database that has it.
pub(crate) fn attach_trail(file: &Path) -> String {
    let trail = trail_file(file).display().to_string().replace('\'', "''");
    format!("ATTACH DATABASE '{trail}' AS trail; PRAGMA trail.synchronous = NORMAL; ")
}

/// The audit trail's tables, which live in the trail's file.
pub(crate) const TRAIL_TABLES: [&str; 4] =
    ["audit_log", "audit_head", "audit_tree", "audit_checkpoints"];
