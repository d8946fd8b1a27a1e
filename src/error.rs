//! Result codes and the error type shared by the Rust API and the C boundary.

use std::fmt;

/// The result codes of SPEC section 1. Values are fixed forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    InvalidArgument = 1,
    InvalidConfig = 2,
    InvalidRecord = 3,
    Full = 4,
    Timeout = 5,
    Closed = 6,
    Storage = 7,
    Locked = 8,
    Corrupt = 9,
    BufferTooSmall = 10,
    Internal = 99,
}

impl Code {
    /// The value as the C API returns it.
    pub fn value(self) -> i32 {
        self as i32
    }

    /// The static `EDGEBUF_*` name of a code value; unknown values give `EDGEBUF_UNKNOWN`.
    pub fn name_of(value: i32) -> &'static str {
        match value {
            0 => "EDGEBUF_OK",
            1 => "EDGEBUF_ERR_INVALID_ARGUMENT",
            2 => "EDGEBUF_ERR_INVALID_CONFIG",
            3 => "EDGEBUF_ERR_INVALID_RECORD",
            4 => "EDGEBUF_ERR_FULL",
            5 => "EDGEBUF_ERR_TIMEOUT",
            6 => "EDGEBUF_ERR_CLOSED",
            7 => "EDGEBUF_ERR_STORAGE",
            8 => "EDGEBUF_ERR_LOCKED",
            9 => "EDGEBUF_ERR_CORRUPT",
            10 => "EDGEBUF_ERR_BUFFER_TOO_SMALL",
            99 => "EDGEBUF_ERR_INTERNAL",
            _ => "EDGEBUF_UNKNOWN",
        }
    }

    pub fn name(self) -> &'static str {
        Code::name_of(self.value())
    }
}

/// An error: a result code and one readable sentence. The message never carries header values,
/// URL credentials or query strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: Code,
    message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(Code::InvalidArgument, message)
    }
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Error::new(Code::InvalidConfig, message)
    }
    pub fn invalid_record(message: impl Into<String>) -> Self {
        Error::new(Code::InvalidRecord, message)
    }
    pub fn storage(message: impl Into<String>) -> Self {
        Error::new(Code::Storage, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(Code::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
