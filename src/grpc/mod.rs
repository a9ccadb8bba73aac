//! Thin gRPC adapters: convert wire types, call the domain services, map
//! errors to status codes through [`crate::error`].

pub mod codec;
mod compliance;
mod contact_records;

pub use compliance::ComplianceGatewayService;
pub use contact_records::ContactRecordsService;

use crate::error::{ErrorKind, HasKind, grpc_status};

/// The largest `ComplianceGateway` message read (CheckCall, a ScreenNumbers
/// item): every field is at most 256 characters, so nothing valid comes
/// near it. Larger ones are refused `OUT_OF_RANGE` as they are read.
pub const MAX_GATEWAY_MESSAGE: usize = 16 * 1024;

/// A request field an adapter refuses before the service sees it (an enum
/// value this server does not know, an out-of-range timestamp).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) problem: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl HasKind for FieldError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

impl From<FieldError> for tonic::Status {
    fn from(err: FieldError) -> tonic::Status {
        grpc_status(&err)
    }
}
