//! Prometheus remote_write 1.0 senders (issue #3): one per `[[remote_write]]`,
//! each reading the WAL from its own durable cursor, in per-series timestamp
//! order, with backoff and jitter.
//!
//! Not implemented yet: the `[[remote_write]]` configuration is parsed and
//! validated by `config`, and nothing is sent.
