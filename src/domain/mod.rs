//! The staffing domain in plain Rust: no I/O, no gRPC, no SQL. Everything here is tested with plain
//! unit and property tests.

pub mod agency;
pub mod aggregates;
pub mod alerts;
pub mod assignment;
pub mod audit;
pub mod campaign;
pub mod dirty;
pub mod evidence;
mod explain;
pub mod findings;
pub mod freshness;
pub mod ids;
pub mod leadership;
pub mod ledger;
pub mod precheck;
pub mod privacy;
pub mod recheck;
pub mod records;
pub mod roll;
pub mod rules;

pub use agency::{Agency, AgencyKind, Jurisdiction};
pub use ids::{Period, ResidentId, Uscc};
pub use records::*;

/// One field of a pushed record that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the pushed message, e.g. `resident_id`.
    pub field: String,
    /// Why the value was refused.
    pub description: String,
}

impl FieldViolation {
    /// Builds a violation.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> FieldViolation {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// An enum of the domain with a stable upper-case code, used in the database and to match the
/// contract's enum values (`QUOTA_CATEGORY_ADMINISTRATIVE` is `QuotaCategory` code `ADMINISTRATIVE`).
pub trait Coded: Sized + Copy + 'static {
    /// Prefix of the contract's value names for this enum.
    const PROTO_PREFIX: &'static str;
    /// Every value.
    const ALL: &'static [Self];
    /// The stable code.
    fn code(self) -> &'static str;
    /// Reads a value from its code.
    fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|value| value.code() == code)
    }
}

/// Declares a domain enum with its codes.
macro_rules! coded_enum {
    ($(#[$meta:meta])* $name:ident, $prefix:literal {
        $($(#[$vmeta:meta])* $variant:ident = $code:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $crate::domain::Coded for $name {
            const PROTO_PREFIX: &'static str = $prefix;
            const ALL: &'static [$name] = &[$($name::$variant),+];
            fn code(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::domain::Coded::code(*self))
            }
        }
    };
}
pub(crate) use coded_enum;
