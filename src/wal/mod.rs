//! The write-ahead spool between collections and remote_write senders
//! (issue #3): a CRC-framed segment log by default, sled behind the same
//! trait. Only this module will write samples to disk.
//!
//! Not implemented yet: the `[wal]` configuration is parsed and validated by
//! `config`, and nothing is written.
