//! The integration suite: one binary, the real server over real mutual TLS, each test on SQLite
//! and on PostgreSQL (`QUOTAHUB_TEST_POSTGRES_URL`).

mod access;
mod bulk;
mod campaign;
mod case_levels;
mod city;
mod cli;
mod complexity;
mod console;
mod feed;
mod findings;
mod follow_up_lists;
mod freshness;
mod hardening;
mod helpers;
mod incremental;
mod interop;
mod ledger;
mod ledger_keys;
mod levels;
mod operations;
mod personal;
mod prechecks;
mod push;
mod races;
mod recheck;
mod replicas;
mod report;
mod reserve;
mod roll;
mod storage;
mod telemetry;
mod timeline;
mod transparency;
mod trust;
mod verdicts;
