//! One error scheme for every adapter. Each error type says what kind of
//! failure it is ([`HasKind`]); each kind maps to one gRPC code and one HTTP
//! status, here and nowhere else, so the gRPC and HTTP faces of the same
//! failure cannot drift apart.
//!
//! Store failures are split: what may clear by itself (a busy or locked
//! database, an I/O error, a full disk, a database that cannot be opened)
//! is [`ErrorKind::Unavailable`], so the client retries; anything else (a
//! corrupt row, a schema this code does not know, a bug) is
//! [`ErrorKind::Internal`] and logged, since a retry will not help and an
//! operator has to look.

use axum::http::StatusCode;

use crate::auth::AuthError;
use crate::contacts::StoreError;
use crate::contacts::service::RecordsError;
use crate::decision_log::LogError;
use crate::decision_log::audit::AuditError;
use crate::gateway::CheckError;
use crate::number::NumberError;

/// What kind of failure an error is, as far as a client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed; nothing was changed.
    InvalidArgument,
    /// The request body is larger than accepted.
    TooLarge,
    /// What the request names does not exist.
    NotFound,
    /// The request collides with an earlier one (a reused request id).
    AlreadyExists,
    /// The caller is known but lacks the role.
    PermissionDenied,
    /// No key, or a key that is not configured.
    Unauthenticated,
    /// The request is well formed but the system is not in a state to run it.
    FailedPrecondition,
    /// Too much work queued: retry later. No decision was made.
    ResourceExhausted,
    /// A failure that may clear by itself (busy, I/O, full disk, closed log):
    /// retry later. For a call check: no decision, do not dial.
    Unavailable,
    /// A failure a retry will not fix; always logged.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidArgument,
        ErrorKind::TooLarge,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::PermissionDenied,
        ErrorKind::Unauthenticated,
        ErrorKind::FailedPrecondition,
        ErrorKind::ResourceExhausted,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The gRPC status code of this kind.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorKind::InvalidArgument | ErrorKind::TooLarge => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorKind::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorKind::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorKind::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status of this kind.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidArgument | ErrorKind::FailedPrecondition => StatusCode::BAD_REQUEST,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::AlreadyExists => StatusCode::CONFLICT,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            // Not 429: the HTTP decision API promises 503 for every check
            // that was not logged, and a PBX dialplan branches on that alone.
            ErrorKind::ResourceExhausted | ErrorKind::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error that knows its [`ErrorKind`].
pub trait HasKind: std::fmt::Display {
    /// What kind of failure this is.
    fn kind(&self) -> ErrorKind;

    /// The text a client is shown; by default the error's own.
    fn client_message(&self) -> String {
        self.to_string()
    }

    /// Whether mapping this error logs it. By default only internal
    /// failures are: the client's own mistakes need no operator, and a
    /// component that fails by itself (the decision log's writer) logs its
    /// failure where it happens, not once per refused request.
    fn logged_here(&self) -> bool {
        self.kind() == ErrorKind::Internal
    }
}

/// Logs what needs an operator, once per failed request: see
/// [`HasKind::logged_here`].
fn log(err: &(impl HasKind + ?Sized)) {
    if !err.logged_here() {
        return;
    }
    match err.kind() {
        ErrorKind::Internal => tracing::error!(error = %err, "internal error"),
        kind => tracing::warn!(error = %err, ?kind, "request failed"),
    }
}

/// The gRPC status of an error.
pub fn grpc_status(err: &(impl HasKind + ?Sized)) -> tonic::Status {
    log(err);
    tonic::Status::new(err.kind().grpc_code(), err.client_message())
}

/// The HTTP status and the client message of an error (each HTTP surface
/// renders the message in its own body format).
pub fn http_parts(err: &(impl HasKind + ?Sized)) -> (StatusCode, String) {
    log(err);
    (err.kind().http_status(), err.client_message())
}

/// The kind of an SQLite failure: busy, locked, I/O, full-disk and
/// cannot-open failures (a database on a volume not mounted yet) may clear
/// by themselves; anything else (corruption, a constraint, a schema or value
/// this version does not know) will not.
pub fn sqlite_kind(err: &rusqlite::Error) -> ErrorKind {
    use rusqlite::ffi::ErrorCode;
    match err.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen,
        ) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

impl HasKind for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Unauthenticated => ErrorKind::Unauthenticated,
            AuthError::Forbidden => ErrorKind::PermissionDenied,
        }
    }
}

impl HasKind for crate::auth::OutOfScope {
    fn kind(&self) -> ErrorKind {
        ErrorKind::PermissionDenied
    }
}

impl HasKind for LogError {
    fn kind(&self) -> ErrorKind {
        match self {
            LogError::Backlog => ErrorKind::ResourceExhausted,
            // Whatever the cause, a decision that is not durable is not
            // answered: the dialer retries later or not at all.
            LogError::Write(_) | LogError::Timeout | LogError::Closed | LogError::Shared(_) => {
                ErrorKind::Unavailable
            }
        }
    }

    fn client_message(&self) -> String {
        match self {
            LogError::Backlog => format!("{self}: do not dial, retry later"),
            _ => format!("{self}: do not dial"),
        }
    }
}

impl HasKind for CheckError {
    fn kind(&self) -> ErrorKind {
        match self {
            CheckError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            CheckError::RequestIdReused { .. }
            | CheckError::AllowExpired { .. }
            | CheckError::AllowWithdrawn { .. } => ErrorKind::AlreadyExists,
            CheckError::Log(err) => err.kind(),
            CheckError::ContactsBehind { .. }
            | CheckError::ClockBehind { .. }
            | CheckError::ClockStepped { .. } => ErrorKind::Unavailable,
            CheckError::OutOfScope(err) => err.kind(),
        }
    }

    fn client_message(&self) -> String {
        match self {
            CheckError::Log(err) => err.client_message(),
            _ => self.to_string(),
        }
    }
}

impl HasKind for NumberError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

impl HasKind for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Sqlite(cause) => sqlite_kind(cause),
            StoreError::Unreadable(_) => ErrorKind::Unavailable,
            StoreError::Index(_) | StoreError::Corrupt(_) => ErrorKind::Internal,
            StoreError::ReusedIds(_) | StoreError::ReusedConsentIds(_) => {
                ErrorKind::InvalidArgument
            }
            StoreError::Changed(_) => ErrorKind::FailedPrecondition,
        }
    }

    /// The store logs nothing itself: a busy or failing store is logged here.
    fn logged_here(&self) -> bool {
        true
    }
}

impl HasKind for AuditError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuditError::Open { cause, .. } => sqlite_kind(cause),
            AuditError::Read(cause) => sqlite_kind(cause),
            AuditError::Write(_) | AuditError::Corrupt(_) => ErrorKind::Internal,
            AuditError::InsideKept { .. } => ErrorKind::FailedPrecondition,
        }
    }

    fn logged_here(&self) -> bool {
        true
    }
}

impl HasKind for crate::contacts::journal::JournalError {
    fn kind(&self) -> ErrorKind {
        use crate::contacts::journal::JournalError;
        match self {
            // The shared database unreachable or a replica that cannot
            // apply: the change was not acknowledged; retry later.
            JournalError::Pg(_) | JournalError::Corrupt { .. } => ErrorKind::Unavailable,
            JournalError::Store(err) => err.kind(),
            JournalError::Refused(_) => ErrorKind::FailedPrecondition,
        }
    }

    fn logged_here(&self) -> bool {
        true
    }
}

impl HasKind for RecordsError {
    fn kind(&self) -> ErrorKind {
        match self {
            RecordsError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            RecordsError::NotFound { .. } => ErrorKind::NotFound,
            RecordsError::Store(err) => err.kind(),
            RecordsError::Audit(err) => err.kind(),
            // The entry must be durable before the change: a disk to fix.
            RecordsError::Ledger(_) => ErrorKind::Unavailable,
            RecordsError::Journal(err) => err.kind(),
            RecordsError::SharedLog(_) => ErrorKind::Unavailable,
        }
    }

    fn logged_here(&self) -> bool {
        !matches!(
            self,
            RecordsError::InvalidArgument { .. } | RecordsError::NotFound { .. }
        )
    }
}

/// A blocking task that panicked or was cancelled: a bug, not a state that
/// clears by itself.
impl HasKind for tokio::task::JoinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }

    fn client_message(&self) -> String {
        format!("task failed: {self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one table of what a client sees for each kind: a change here is a
    /// change of the public interface (CONTRACT.md sections 3 and 6).
    #[test]
    fn test_each_kind_maps_to_its_code_and_status() {
        let expected = [
            (
                ErrorKind::InvalidArgument,
                tonic::Code::InvalidArgument,
                400,
            ),
            (ErrorKind::TooLarge, tonic::Code::InvalidArgument, 413),
            (ErrorKind::NotFound, tonic::Code::NotFound, 404),
            (ErrorKind::AlreadyExists, tonic::Code::AlreadyExists, 409),
            (
                ErrorKind::PermissionDenied,
                tonic::Code::PermissionDenied,
                403,
            ),
            (
                ErrorKind::Unauthenticated,
                tonic::Code::Unauthenticated,
                401,
            ),
            (
                ErrorKind::FailedPrecondition,
                tonic::Code::FailedPrecondition,
                400,
            ),
            (
                ErrorKind::ResourceExhausted,
                tonic::Code::ResourceExhausted,
                503,
            ),
            (ErrorKind::Unavailable, tonic::Code::Unavailable, 503),
            (ErrorKind::Internal, tonic::Code::Internal, 500),
        ];
        assert_eq!(expected.len(), ErrorKind::ALL.len());
        for (kind, code, status) in expected {
            assert_eq!(kind.grpc_code(), code, "{kind:?}");
            assert_eq!(kind.http_status().as_u16(), status, "{kind:?}");
        }
        for kind in ErrorKind::ALL {
            assert!(expected.iter().any(|(k, _, _)| *k == kind), "{kind:?}");
        }
    }

    #[test]
    fn test_auth_errors_are_401_and_403() {
        assert_eq!(
            AuthError::Unauthenticated.kind().grpc_code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            AuthError::Forbidden.kind().http_status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn test_a_log_failure_is_never_answered_as_a_decision() {
        let full = CheckError::Log(LogError::Backlog);
        assert_eq!(full.kind(), ErrorKind::ResourceExhausted);
        assert_eq!(full.kind().http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(full.client_message().contains("do not dial, retry later"));
        for err in [LogError::Timeout, LogError::Closed] {
            let check = CheckError::Log(err);
            assert_eq!(check.kind(), ErrorKind::Unavailable);
            assert!(check.client_message().ends_with("do not dial"));
        }
        let reused = CheckError::RequestIdReused {
            request_id: "r".into(),
            problem: "with other fields",
        };
        assert_eq!(reused.kind().grpc_code(), tonic::Code::AlreadyExists);
        assert_eq!(reused.kind().http_status(), StatusCode::CONFLICT);
    }

    fn sqlite_failure(code: rusqlite::ffi::ErrorCode) -> rusqlite::Error {
        let extended = match code {
            rusqlite::ffi::ErrorCode::DatabaseBusy => rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::ErrorCode::DatabaseLocked => rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::ErrorCode::SystemIoFailure => rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::ErrorCode::DiskFull => rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::ErrorCode::DatabaseCorrupt => rusqlite::ffi::SQLITE_CORRUPT,
            _ => rusqlite::ffi::SQLITE_ERROR,
        };
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(extended), None)
    }

    /// A real lock held by another connection, not a constructed code: what
    /// SQLite answers a writer that finds the database locked.
    #[test]
    fn test_a_locked_database_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder
            .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE;")
            .unwrap();
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.busy_timeout(std::time::Duration::ZERO).unwrap();
        let err = writer.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        assert_eq!(sqlite_kind(&err), ErrorKind::Unavailable, "{err}");
        holder.execute_batch("COMMIT").unwrap();
        let err = writer
            .execute("INSERT INTO missing VALUES (1)", [])
            .unwrap_err();
        assert_eq!(sqlite_kind(&err), ErrorKind::Internal, "{err}");
    }

    #[test]
    fn test_store_failures_split_into_unavailable_and_internal() {
        use rusqlite::ffi::ErrorCode;
        for code in [
            ErrorCode::DatabaseBusy,
            ErrorCode::DatabaseLocked,
            ErrorCode::SystemIoFailure,
            ErrorCode::DiskFull,
        ] {
            let err = RecordsError::Store(StoreError::from(sqlite_failure(code)));
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{code:?}");
            assert_eq!(grpc_status(&err).code(), tonic::Code::Unavailable);
        }
        for code in [ErrorCode::DatabaseCorrupt, ErrorCode::Unknown] {
            let err = RecordsError::Store(StoreError::from(sqlite_failure(code)));
            assert_eq!(err.kind(), ErrorKind::Internal, "{code:?}");
            assert_eq!(grpc_status(&err).code(), tonic::Code::Internal);
        }
        // A value read back that the code does not know is a conversion
        // failure: internal, never a default.
        let unknown =
            rusqlite::Error::InvalidColumnType(0, "purpose".into(), rusqlite::types::Type::Integer);
        assert_eq!(
            StoreError::from(unknown).kind(),
            ErrorKind::Internal,
            "conversion failure"
        );
        let invalid = RecordsError::InvalidArgument {
            field: "number",
            problem: "empty".into(),
        };
        assert_eq!(grpc_status(&invalid).code(), tonic::Code::InvalidArgument);
        let audit = AuditError::Read(sqlite_failure(ErrorCode::DatabaseBusy));
        assert_eq!(
            RecordsError::Audit(audit).kind().http_status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
