//! `dialgate.v1.ContactRecords`.

use jiff::Timestamp;
use tonic::{Request, Response, Status};

use super::records_error_status;
use crate::proto::contact_records_server::ContactRecords;
use crate::proto::{self, *};
use crate::records::{NewConsent, NewSuppression, Records, Revocation};

/// The gRPC face of [`Records`].
#[derive(Debug, Clone)]
pub struct ContactRecordsService {
    records: Records,
}

impl ContactRecordsService {
    pub fn new(records: Records) -> Self {
        ContactRecordsService { records }
    }
}

/// Reads an enum field, refusing values this server does not know.
fn purpose_field(value: i32) -> Result<Option<crate::model::Purpose>, Status> {
    proto::Purpose::try_from(value)
        .map(proto::Purpose::to_domain)
        .map_err(|_| Status::invalid_argument(format!("purpose: unknown value {value}")))
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Status::internal(format!("contact records task failed: {err}")))?
}

#[tonic::async_trait]
impl ContactRecords for ContactRecordsService {
    async fn record_consent(
        &self,
        request: Request<RecordConsentRequest>,
    ) -> Result<Response<RecordConsentResponse>, Status> {
        let r = request.into_inner();
        let new = NewConsent {
            controller: r.controller,
            number: r.number,
            purpose: purpose_field(r.purpose)?,
            granted_at: proto::timestamp_from_proto(r.granted_at.as_ref()),
            source: r.source,
            evidence_ref: r.evidence_ref,
            default_region: r.default_region,
        };
        let records = self.records.clone();
        let consent_id = blocking(move || {
            records
                .record_consent(new, Timestamp::now())
                .map_err(records_error_status)
        })
        .await?;
        Ok(Response::new(RecordConsentResponse { consent_id }))
    }

    async fn revoke_consent(
        &self,
        request: Request<RevokeConsentRequest>,
    ) -> Result<Response<RevokeConsentResponse>, Status> {
        let r = request.into_inner();
        let revocation = Revocation {
            controller: r.controller,
            number: r.number,
            purpose: purpose_field(r.purpose)?,
            revoked_at: proto::timestamp_from_proto(r.revoked_at.as_ref()),
            default_region: r.default_region,
        };
        let records = self.records.clone();
        let revoked = blocking(move || {
            records
                .revoke_consent(revocation, Timestamp::now())
                .map_err(records_error_status)
        })
        .await?;
        Ok(Response::new(RevokeConsentResponse { revoked }))
    }

    async fn add_suppression(
        &self,
        request: Request<AddSuppressionRequest>,
    ) -> Result<Response<AddSuppressionResponse>, Status> {
        let r = request.into_inner();
        let new = NewSuppression {
            controller: r.controller,
            number: r.number,
            reason: r.reason,
            source: r.source,
            default_region: r.default_region,
        };
        let records = self.records.clone();
        let suppression_id = blocking(move || {
            records
                .add_suppression(new, Timestamp::now())
                .map_err(records_error_status)
        })
        .await?;
        Ok(Response::new(AddSuppressionResponse { suppression_id }))
    }

    async fn record_relationship(
        &self,
        _request: Request<RecordRelationshipRequest>,
    ) -> Result<Response<RecordRelationshipResponse>, Status> {
        Err(Status::unimplemented(
            "RecordRelationship is not implemented in this version (relationship exemptions are not applied)",
        ))
    }

    async fn erase_subject(
        &self,
        _request: Request<EraseSubjectRequest>,
    ) -> Result<Response<EraseSubjectResponse>, Status> {
        Err(Status::unimplemented(
            "EraseSubject is not implemented in this version",
        ))
    }

    async fn export_subject(
        &self,
        _request: Request<ExportSubjectRequest>,
    ) -> Result<Response<ExportSubjectResponse>, Status> {
        Err(Status::unimplemented(
            "ExportSubject is not implemented in this version",
        ))
    }
}
