//! The language of what the hub renders for people (the console's pages, the leadership report):
//! Chinese first, English on request.

/// A rendering's language: Chinese unless English is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// 中文.
    #[default]
    Zh,
    /// English.
    En,
}
