//! `dialgate.v1.ContactRecords`.

use jiff::Timestamp;
use tonic::{Request, Response, Status};

use super::FieldError;
use crate::contacts::RelationshipKind as Kind;
use crate::contacts::service::{
    ConsentCorrection, Corrected, NewConsent, NewRelationship, NewSuppression, Records,
    RecordsError, RelationshipCorrection, Revocation, SubjectRequest,
};
use crate::error::grpc_status;
use crate::proto::contact_records_server::ContactRecords;
use crate::proto::{self, *};

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
fn purpose_field(value: i32) -> Result<Option<crate::model::Purpose>, FieldError> {
    proto::Purpose::try_from(value)
        .map(proto::Purpose::to_domain)
        .map_err(|_| FieldError::new("purpose", format!("unknown value {value}")))
}

fn kind_field(value: i32) -> Result<Option<Kind>, FieldError> {
    match RelationshipKind::try_from(value) {
        Ok(RelationshipKind::Unspecified) => Ok(None),
        Ok(RelationshipKind::Customer) => Ok(Some(Kind::Customer)),
        Ok(RelationshipKind::Inquiry) => Ok(Some(Kind::Inquiry)),
        Err(_) => Err(FieldError::new("kind", format!("unknown value {value}"))),
    }
}

/// Reads an optional timestamp field, refusing out-of-range values.
fn time_field(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Option<Timestamp>, FieldError> {
    match value {
        None => Ok(None),
        Some(ts) if !(0..1_000_000_000).contains(&ts.nanos) => Err(FieldError::new(
            field,
            format!("nanos {} outside 0..=999999999", ts.nanos),
        )),
        Some(ts) if ts.seconds < 0 => Err(FieldError::new(
            field,
            format!("{} seconds is before 1970", ts.seconds),
        )),
        Some(ts) => proto::timestamp_from_proto(Some(ts))
            .map(Some)
            .ok_or_else(|| FieldError::new(field, "out of range")),
    }
}

/// Reads a request's verification of the requester's identity.
fn verification_field(
    value: Option<proto::Verification>,
) -> Result<Option<crate::contacts::service::Verification>, FieldError> {
    value
        .map(|v| {
            Ok(crate::contacts::service::Verification {
                verified_by: v.verified_by,
                method: v.method,
                verified_at: time_field("verification.verified_at", v.verified_at.as_ref())?,
                reference: v.reference,
            })
        })
        .transpose()
}

/// Who is asking, for the change trail.
fn actor<T>(request: &Request<T>) -> String {
    if let Some(caller) = request.extensions().get::<crate::auth::Caller>() {
        return format!("api:{}", caller.name);
    }
    match request.remote_addr() {
        Some(addr) => format!("grpc:{addr}"),
        None => "grpc".to_string(),
    }
}

/// Refuses a request for a controller its key may not speak for (no key
/// without keys configured: every controller).
fn speaks_for<T>(request: &Request<T>, controller: &str) -> Result<(), Status> {
    match request.extensions().get::<crate::auth::Caller>() {
        Some(caller) => caller
            .speaks_for(controller)
            .map_err(|err| grpc_status(&err)),
        None => Ok(()),
    }
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RecordsError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| grpc_status(&err))?
        .map_err(|err| grpc_status(&err))
}

#[tonic::async_trait]
impl ContactRecords for ContactRecordsService {
    async fn record_consent(
        &self,
        request: Request<RecordConsentRequest>,
    ) -> Result<Response<RecordConsentResponse>, Status> {
        let actor = actor(&request);
        speaks_for(&request, &request.get_ref().controller)?;
        let r = request.into_inner();
        let new = NewConsent {
            controller: r.controller,
            number: r.number,
            purpose: purpose_field(r.purpose)?,
            granted_at: time_field("granted_at", r.granted_at.as_ref())?,
            expires_at: time_field("expires_at", r.expires_at.as_ref())?,
            source: r.source,
            method: r.method,
            notice_version: r.notice_version,
            evidence_ref: r.evidence_ref,
            supplier: r.supplier,
            default_region: r.default_region,
            consent_id: String::new(),
        };
        let records = self.records.clone();
        let consent_id =
            blocking(move || records.record_consent(new, &actor, Timestamp::now())).await?;
        Ok(Response::new(RecordConsentResponse { consent_id }))
    }

    async fn revoke_consent(
        &self,
        request: Request<RevokeConsentRequest>,
    ) -> Result<Response<RevokeConsentResponse>, Status> {
        let actor = actor(&request);
        speaks_for(&request, &request.get_ref().controller)?;
        let r = request.into_inner();
        let revocation = Revocation {
            controller: r.controller,
            number: r.number,
            purpose: purpose_field(r.purpose)?,
            revoked_at: time_field("revoked_at", r.revoked_at.as_ref())?,
            default_region: r.default_region,
        };
        let records = self.records.clone();
        let revoked =
            blocking(move || records.revoke_consent(revocation, &actor, Timestamp::now())).await?;
        Ok(Response::new(RevokeConsentResponse { revoked }))
    }

    async fn add_suppression(
        &self,
        request: Request<AddSuppressionRequest>,
    ) -> Result<Response<AddSuppressionResponse>, Status> {
        let actor = actor(&request);
        // An opt-out for every controller (no controller named) only
        // denies: a scoped key may record it too.
        if !request.get_ref().controller.is_empty() {
            speaks_for(&request, &request.get_ref().controller)?;
        }
        let r = request.into_inner();
        let new = NewSuppression {
            controller: r.controller,
            campaign_id: r.campaign_id,
            number: r.number,
            reason: r.reason,
            source: r.source,
            expires_at: time_field("expires_at", r.expires_at.as_ref())?,
            default_region: r.default_region,
            suppression_id: String::new(),
        };
        let records = self.records.clone();
        let suppression_id =
            blocking(move || records.add_suppression(new, &actor, Timestamp::now())).await?;
        Ok(Response::new(AddSuppressionResponse { suppression_id }))
    }

    async fn record_relationship(
        &self,
        request: Request<RecordRelationshipRequest>,
    ) -> Result<Response<RecordRelationshipResponse>, Status> {
        let actor = actor(&request);
        speaks_for(&request, &request.get_ref().controller)?;
        let r = request.into_inner();
        let new = NewRelationship {
            controller: r.controller,
            number: r.number,
            kind: kind_field(r.kind)?,
            started_at: time_field("started_at", r.started_at.as_ref())?,
            ended_at: time_field("ended_at", r.ended_at.as_ref())?,
            default_region: r.default_region,
        };
        let records = self.records.clone();
        let relationship_id =
            blocking(move || records.record_relationship(new, &actor, Timestamp::now())).await?;
        Ok(Response::new(RecordRelationshipResponse {
            relationship_id,
        }))
    }

    async fn erase_subject(
        &self,
        request: Request<EraseSubjectRequest>,
    ) -> Result<Response<EraseSubjectResponse>, Status> {
        let actor = actor(&request);
        speaks_for(&request, &request.get_ref().controller)?;
        let r = request.into_inner();
        let subject = SubjectRequest {
            controller: r.controller,
            number: r.number,
            default_region: r.default_region,
            verification: verification_field(r.verification)?,
        };
        let records = self.records.clone();
        let erased_records =
            blocking(move || records.erase_subject(subject, &actor, Timestamp::now())).await?;
        Ok(Response::new(EraseSubjectResponse {
            erased_records,
            kept: crate::contacts::KEPT_AFTER_ERASURE
                .iter()
                .map(crate::contacts::Kept::describe)
                .collect(),
        }))
    }

    async fn export_subject(
        &self,
        request: Request<ExportSubjectRequest>,
    ) -> Result<Response<ExportSubjectResponse>, Status> {
        let actor = actor(&request);
        speaks_for(&request, &request.get_ref().controller)?;
        let r = request.into_inner();
        let subject = SubjectRequest {
            controller: r.controller,
            number: r.number,
            default_region: r.default_region,
            verification: verification_field(r.verification)?,
        };
        let records = self.records.clone();
        let json =
            blocking(move || records.export_subject(subject, &actor, Timestamp::now())).await?;
        Ok(Response::new(ExportSubjectResponse { json }))
    }

    async fn rectify_consent(
        &self,
        request: Request<RectifyConsentRequest>,
    ) -> Result<Response<RectifyResponse>, Status> {
        let actor = actor(&request);
        speaks_for(&request, &request.get_ref().controller)?;
        let r = request.into_inner();
        let correction = ConsentCorrection {
            consent_id: r.consent_id,
            controller: r.controller,
            reason: r.reason,
            number: r.number,
            default_region: r.default_region,
            purpose: purpose_field(r.purpose)?,
            granted_at: time_field("granted_at", r.granted_at.as_ref())?,
            expires_at: time_field("expires_at", r.expires_at.as_ref())?,
            clear_expires_at: r.clear_expires_at,
            source: r.source,
            supplier: r.supplier,
            method: r.method,
            notice_version: r.notice_version,
            evidence_ref: r.evidence_ref,
        };
        let records = self.records.clone();
        let corrected =
            blocking(move || records.rectify_consent(correction, &actor, Timestamp::now())).await?;
        Ok(Response::new(rectified(corrected)))
    }

    async fn rectify_relationship(
        &self,
        request: Request<RectifyRelationshipRequest>,
    ) -> Result<Response<RectifyResponse>, Status> {
        let actor = actor(&request);
        speaks_for(&request, &request.get_ref().controller)?;
        let r = request.into_inner();
        let correction = RelationshipCorrection {
            relationship_id: r.relationship_id,
            controller: r.controller,
            reason: r.reason,
            number: r.number,
            default_region: r.default_region,
            kind: kind_field(r.kind)?,
            started_at: time_field("started_at", r.started_at.as_ref())?,
            ended_at: time_field("ended_at", r.ended_at.as_ref())?,
            clear_ended_at: r.clear_ended_at,
        };
        let records = self.records.clone();
        let corrected =
            blocking(move || records.rectify_relationship(correction, &actor, Timestamp::now()))
                .await?;
        Ok(Response::new(rectified(corrected)))
    }
}

fn rectified(corrected: Corrected) -> RectifyResponse {
    RectifyResponse {
        before: corrected.before,
        after: corrected.after,
    }
}
