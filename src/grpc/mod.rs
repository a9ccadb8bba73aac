//! Thin gRPC adapters: convert wire types, call the domain services, map
//! errors to status codes through [`crate::error`].

pub mod codec;
mod compliance;
mod contact_records;

pub use compliance::ComplianceGatewayService;
pub use contact_records::ContactRecordsService;
