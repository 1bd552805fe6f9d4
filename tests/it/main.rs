//! The integration tests, as one test binary: each module is one area of
//! gallra driven from outside (most through the `gallra` command line, a few
//! through the library), and `common` holds what they share. One binary
//! links once, where a test file each linked the library and its
//! dependencies once per file.

mod common;

mod cli_agent;
mod cli_bad_input;
mod cli_command_sources;
mod cli_concurrency;
mod cli_dedup;
mod cli_drill;
mod cli_keys_and_safety;
mod cli_lifecycle;
mod cli_no_plaintext;
mod cli_ops;
mod cli_remote_ship;
mod cli_remote_targets;
mod cli_roundtrip;
mod cli_ship;
mod cli_small_truths;
mod cli_survival;
mod cli_tamper;
mod cli_tenant_attacks;
mod cli_tenant_names;
mod conformance;
mod erasure_holds;
mod fixture_repo;
mod immutable;
mod metrics_alerts;
mod prune_plan_bugs;
mod versioned_stores;
