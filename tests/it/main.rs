//! Integration tests: the real binary, real gRPC and HTTP on 127.0.0.1:0.

mod audit;
mod auth;
mod browser;
mod check_call;
mod deploy;
mod faults;
mod hardening;
mod http_api;
mod lifecycle;
mod limits;
mod postgres_server;
mod provenance;
mod python_client;
mod records;
mod rectification;
mod registry;
mod replicas_contacts;
mod retention;
mod sip;
mod statutes;
mod subjects;
mod support;
mod timing;
mod tls;
mod verified_requests;
