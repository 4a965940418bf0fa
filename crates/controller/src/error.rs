//! What the controller answers when it refuses or fails a request. Each carries the HTTP
//! status the API reports and a message that names the field and value at fault.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    Timeout,
    Internal,
}

impl Code {
    pub fn http_status(self) -> u16 {
        match self {
            Code::BadRequest => 400,
            Code::Unauthorized => 401,
            Code::Forbidden => 403,
            Code::NotFound => 404,
            Code::Conflict => 409,
            Code::Timeout => 408,
            Code::Internal => 500,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Code::Conflict, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// A failed step of an operation: the message says which step and why.
    pub fn step(step: &str, cause: impl fmt::Display) -> Self {
        Self::internal(format!("{step} failed: {cause}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<weft_store::StoreError> for Error {
    fn from(err: weft_store::StoreError) -> Self {
        match err {
            weft_store::StoreError::Conflict { what } => {
                Error::conflict(format!("{what} is already in use"))
            }
            other => Error::step("store", other),
        }
    }
}

/// The exact texts of the custom network configuration rules (as Unikraft Cloud words them).
pub mod texts {
    pub const LICENSE: &str = "Insufficient license. Please make sure your license is valid \
                               and includes custom network configurations";
    pub const IP_AND_TAP: &str = "Network interface must specify an IP address when a TAP \
                                  device is provided and vice versa";
    pub const IP_FROM_POOL: &str =
        "Network interface IP address cannot be from the platform's address pool";
    pub const TAP_FROM_POOL: &str =
        "Network interface TAP device cannot be from the platform's device pool";

    pub fn unknown_member(key: &str) -> String {
        format!("Unknown member '{key}'")
    }
}
