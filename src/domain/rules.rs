//! The rules (being written).
