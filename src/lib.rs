//! edgebuf: a durable on-device buffer that delivers ML inference records to a cloud HTTP
//! endpoint. See README.md and SPEC.md for the contract.
//!
//! The Rust API is [`Buffer`] with a [`Config`]; the C API in [`ffi`] is a thin skin over it.

pub mod buffer;
pub mod config;
pub mod error;
pub mod events;
pub mod ffi;
mod prefetch;
pub mod record;
pub mod retry;
pub mod sender;
mod shared;
pub mod status;
pub mod store;
mod sys;
mod worker;
mod writer;

pub use buffer::Buffer;
pub use config::Config;
pub use error::{Code, Error, Result};
pub use events::{Callback, Event};
pub use status::Status;

/// The record envelope as edgebuf sends it, for tools that write records in the same form
/// (the CLI's `export`).
pub mod envelope {
    pub use crate::sender::{push_envelope_fields, RecordRef};
}

/// Reading a buffer file without opening the buffer (the `edgebuf` tool's `status`, `export`
/// and `check`).
pub use store::inspect;
