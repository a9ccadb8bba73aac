//! Thin gRPC adapters: convert wire types, call the domain services, map
//! errors to status codes through [`crate::error`].

pub mod codec;
mod compliance;
mod contact_records;

pub use compliance::ComplianceGatewayService;
pub use contact_records::ContactRecordsService;

use crate::error::{ErrorKind, HasKind, grpc_status};

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
