//! edgebuf: a durable on-device buffer that delivers ML inference records to a cloud HTTP
//! endpoint. README.md says how to use it; docs/reference.md is the reference.
//!
//! The Rust API is [`Buffer`] with a [`Config`]; the C API in [`ffi`] is a thin skin over it.

pub mod clock;
pub mod config;
mod delivery;
mod engine;
pub mod error;
pub mod events;
pub mod ffi;
pub(crate) mod http;
pub mod record;
pub mod status;
pub mod store;
mod sys;

pub use config::Config;
pub use engine::Buffer;
pub use error::{Code, Error, Result};
pub use events::{Callback, Event};
pub use status::Status;

/// The record envelope as edgebuf sends it, for tools that write records in the same form
/// (the CLI's `export`).
pub mod envelope {
    pub use crate::clock::ClockMark;
    pub use crate::http::{push_envelope_fields, RecordRef};
}

/// Reading a buffer file without opening the buffer (the `edgebuf` tool's `status`, `export`
/// and `check`).
pub use store::inspect;
