//! Generated gRPC code for `dialgate.v1`, and conversions to and from the
//! domain vocabulary. Nothing else in the crate depends on wire types except
//! the thin adapters in `grpc`.
#![allow(clippy::all, missing_docs, unreachable_pub)]

tonic::include_proto!("dialgate.v1");

/// Encoded descriptors of the API, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("dialgate_descriptor");

impl From<crate::model::ReasonCode> for ReasonCode {
    fn from(code: crate::model::ReasonCode) -> Self {
        use crate::model::ReasonCode as C;
        match code {
            C::InvalidNumber => ReasonCode::InvalidNumber,
            C::UnknownCampaign => ReasonCode::UnknownCampaign,
            C::DestinationNotAllowed => ReasonCode::DestinationNotAllowed,
            C::RegistryListed => ReasonCode::RegistryListed,
            C::RegistryNotCovered => ReasonCode::RegistryNotCovered,
            C::RegistryStale => ReasonCode::RegistryStale,
            C::RegistryUnavailable => ReasonCode::RegistryUnavailable,
            C::Suppressed => ReasonCode::Suppressed,
            C::NoConsent => ReasonCode::NoConsent,
            C::CallerIdMissing => ReasonCode::CallerIdMissing,
            C::CallerIdNotAllowed => ReasonCode::CallerIdNotAllowed,
            C::OutsideCallingHours => ReasonCode::OutsideCallingHours,
            C::AttemptLimit => ReasonCode::AttemptLimit,
            C::Consent => ReasonCode::Consent,
            C::Relationship => ReasonCode::Relationship,
            C::RegistryClear => ReasonCode::RegistryClear,
        }
    }
}

impl From<crate::model::Verdict> for Verdict {
    fn from(verdict: crate::model::Verdict) -> Self {
        match verdict {
            crate::model::Verdict::Allow => Verdict::Allow,
            crate::model::Verdict::Deny => Verdict::Deny,
        }
    }
}

impl From<crate::model::Reason> for Reason {
    fn from(reason: crate::model::Reason) -> Self {
        Reason {
            code: ReasonCode::from(reason.code) as i32,
            detail: reason.detail,
        }
    }
}

impl Purpose {
    /// The domain purpose; `None` for `PURPOSE_UNSPECIFIED`.
    pub fn to_domain(self) -> Option<crate::model::Purpose> {
        match self {
            Purpose::Unspecified => None,
            Purpose::Marketing => Some(crate::model::Purpose::Marketing),
            Purpose::MarketResearch => Some(crate::model::Purpose::MarketResearch),
            Purpose::Statistical => Some(crate::model::Purpose::Statistical),
            Purpose::Profiling => Some(crate::model::Purpose::Profiling),
        }
    }
}

/// Converts a wire timestamp; `None` when unset or out of range.
pub fn timestamp_from_proto(ts: Option<&prost_types::Timestamp>) -> Option<jiff::Timestamp> {
    let ts = ts?;
    jiff::Timestamp::new(ts.seconds, ts.nanos).ok()
}

/// Converts a timestamp to the wire.
pub fn timestamp_to_proto(ts: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ts.as_second(),
        nanos: ts.subsec_nanosecond(),
    }
}
