//! Thin gRPC adapters: convert wire types, call the domain services, map
//! errors to status codes once.

pub mod codec;
mod compliance;
mod contact_records;

pub use compliance::ComplianceGatewayService;
pub use contact_records::ContactRecordsService;

use crate::decision_log::LogError;
use crate::records::RecordsError;

/// Maps a CheckCall failure: no decision the dialer may act on.
pub(crate) fn check_error_status(err: crate::gateway::CheckError) -> tonic::Status {
    use crate::gateway::CheckError;
    match err {
        CheckError::InvalidArgument { .. } => tonic::Status::invalid_argument(err.to_string()),
        CheckError::RequestIdReused { .. } | CheckError::AllowExpired { .. } => {
            tonic::Status::already_exists(err.to_string())
        }
        CheckError::Log(err) => log_error_status(err),
    }
}

/// Maps a log failure: the decision is not durable, the dialer must not dial.
pub(crate) fn log_error_status(err: LogError) -> tonic::Status {
    match err {
        LogError::Backlog => {
            tonic::Status::resource_exhausted(format!("{err}: do not dial, retry later"))
        }
        _ => tonic::Status::unavailable(format!("{err}: do not dial")),
    }
}

/// Maps a contact-records failure.
pub(crate) fn records_error_status(err: RecordsError) -> tonic::Status {
    match err {
        RecordsError::InvalidArgument { .. } => tonic::Status::invalid_argument(err.to_string()),
        RecordsError::Store(_) | RecordsError::Audit(_) => {
            tracing::error!(error = %err, "contact store failure");
            tonic::Status::unavailable(err.to_string())
        }
    }
}
