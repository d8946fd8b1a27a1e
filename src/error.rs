//! Result codes and the error type shared by the Rust API and the C boundary.

use std::ffi::CStr;
use std::fmt;

/// The result codes of docs/reference.md, C API. Values are fixed forever.
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
    /// Every result code: the one table of them. The C header's `EDGEBUF_OK` /
    /// `EDGEBUF_ERR_*` constants are checked against it (tests/header.rs), and
    /// `edgebuf_result_name` reads its names from here.
    pub const ALL: [Code; 12] = [
        Code::Ok,
        Code::InvalidArgument,
        Code::InvalidConfig,
        Code::InvalidRecord,
        Code::Full,
        Code::Timeout,
        Code::Closed,
        Code::Storage,
        Code::Locked,
        Code::Corrupt,
        Code::BufferTooSmall,
        Code::Internal,
    ];

    /// The value as the C API returns it.
    pub fn value(self) -> i32 {
        self as i32
    }

    /// The code of a value, if it is one.
    pub fn from_value(value: i32) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.value() == value)
    }

    /// The static `EDGEBUF_*` name, NUL-terminated for the C API.
    pub fn c_name(self) -> &'static CStr {
        match self {
            Code::Ok => c"EDGEBUF_OK",
            Code::InvalidArgument => c"EDGEBUF_ERR_INVALID_ARGUMENT",
            Code::InvalidConfig => c"EDGEBUF_ERR_INVALID_CONFIG",
            Code::InvalidRecord => c"EDGEBUF_ERR_INVALID_RECORD",
            Code::Full => c"EDGEBUF_ERR_FULL",
            Code::Timeout => c"EDGEBUF_ERR_TIMEOUT",
            Code::Closed => c"EDGEBUF_ERR_CLOSED",
            Code::Storage => c"EDGEBUF_ERR_STORAGE",
            Code::Locked => c"EDGEBUF_ERR_LOCKED",
            Code::Corrupt => c"EDGEBUF_ERR_CORRUPT",
            Code::BufferTooSmall => c"EDGEBUF_ERR_BUFFER_TOO_SMALL",
            Code::Internal => c"EDGEBUF_ERR_INTERNAL",
        }
    }

    /// The static `EDGEBUF_*` name of a code value; unknown values give `EDGEBUF_UNKNOWN`.
    pub fn name_of(value: i32) -> &'static str {
        Code::from_value(value).map_or(UNKNOWN_NAME, Code::name)
    }

    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or(UNKNOWN_NAME)
    }
}

/// The name of a value that is no result code.
pub const UNKNOWN_NAME: &str = "EDGEBUF_UNKNOWN";

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
