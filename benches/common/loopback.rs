//! Serves a benchmark's stand-in gateway on 127.0.0.1:0 the way dialgate
//! serves (a tokio runtime of `threads` workers, 0 for one per core,
//! TCP_NODELAY), announcing the
//! address on stdout in dialgate's `listening` line.

use dialgate::proto::compliance_gateway_server::{ComplianceGateway, ComplianceGatewayServer};

/// The workers a server runtime gets for `threads`: 0 is dialgate's
/// default (`server.worker_threads` unset: one per core, as tokio does).
pub fn workers(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

pub fn serve<S: ComplianceGateway>(threads: usize, service: S) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers(threads))
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "{{\"event\":\"listening\",\"grpc\":\"{}\"}}",
            listener.local_addr().unwrap()
        );
        tonic::transport::Server::builder()
            .add_service(ComplianceGatewayServer::new(service))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await
            .unwrap();
    });
}
