//! dialgate: an outbound-call compliance gateway.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, validated once.
//! - [`statutes`]: the law as dated, sourced data, per destination.
//! - [`policy`]: statutes, overrides and campaigns compiled into the
//!   effective rules per campaign, destination and period.
//! - [`number`]: phone-number normalisation to E.164 and lookup keys.
//! - [`model`]: verdicts, reason codes, purposes.
//! - [`rules`]: the compliance rules, pure functions of request, data and `now`.
//! - [`registry`]: registry snapshots, files, imports, hot swap.
//! - [`contacts`]: consents and opt-outs (SQLite + in-memory index).
//! - [`decision_log`]: the durable, hash-chained decision log; export and verify.
//! - [`store`]: the backend (SQLite, or PostgreSQL shared by several replicas).
//! - `gateway`, [`records`]: the domain services the adapters call.
//! - `grpc`, `http`, `http_decision`: thin adapters; [`proto`]: generated
//!   wire types; [`error`]: the kinds of failure and their gRPC codes and
//!   HTTP statuses.
//! - `server`: wiring, health, reflection, graceful shutdown; [`cli`]: the commands.
//!
//! The modules in plain type are internal to the crate (the others are used
//! by the binary, the integration tests, the benchmarks or the fuzz targets,
//! or appear in what those use). A map of every file is in
//! `docs/architecture.md`.

pub mod at_rest;
pub(crate) mod attempts;
pub mod auth;
pub mod calling;
pub mod cli;
pub(crate) mod clock;
pub mod clock_guard;
pub mod config;
pub mod contacts;
pub mod decision;
pub mod decision_log;
pub mod error;
pub(crate) mod gateway;
pub(crate) mod grpc;
pub mod histogram;
pub mod history;
pub(crate) mod http;
pub(crate) mod http_decision;
pub(crate) mod http_origin;
pub(crate) mod huge_pages;
pub(crate) mod idempotency;
pub mod line_file;
pub(crate) mod listen;
pub mod model;
pub mod number;
pub mod policy;
pub(crate) mod private;
pub mod proto;
pub mod registry;
pub mod restore;
pub mod retention;
pub mod rules;
pub mod serve_lock;
pub(crate) mod server;
pub(crate) mod shared;
pub mod stats;
pub mod statutes;
pub mod store;
pub mod tls;
pub mod tz_data;
