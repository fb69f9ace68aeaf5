//! cairn: node_exporter-compatible host metrics in one small binary.
//!
//! The crate is a library so integration tests and benchmarks can drive the
//! same code the binary runs; `main.rs` only parses arguments and dispatches,
//! `agent.rs` wires the running agent together. See
//! ARCHITECTURE.md for the data flow and the invariants each module keeps.

// Collectors are built through the registry's `new()` constructors; a
// `Default` beside each would be a second way to build them.
#![allow(clippy::new_without_default)]

pub mod agent;
pub mod cli;
pub mod clock;
pub mod collect;
pub mod collector;
pub mod config;
pub mod http;
pub mod metrics;
pub mod relabel;
pub mod remote_write;
pub mod scheduler;
pub mod scrape;
pub mod secret;
pub mod self_metrics;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
pub mod tls_client;
pub mod wal;
