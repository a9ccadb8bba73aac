//! The durable echo: the echo server plus the least a server can do to log
//! each answer durably before sending it. Every CheckCall request is queued
//! to a writer thread that appends the queued requests to a preallocated file
//! with one `pwrite` and one `fdatasync`, then acknowledges them (group
//! commit, no linger, no SQLite, no hashing, no decision). Its throughput
//! bounds what a server built like dialgate (one log writer, group commit,
//! fsync before the answer) can reach on the machine it runs on.
//!
//! With `lanes` > 1 the requests are spread round-robin over that many
//! writer threads, each with its own file, so fsyncs overlap.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use dialgate::proto::compliance_gateway_server::ComplianceGateway;
use dialgate::proto::{
    CheckCallRequest, CheckCallResponse, ScreenNumbersRequest, ScreenNumbersResponse, Verdict,
};
use futures_util::Stream;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

/// Size of each lane's file; appends wrap around inside it, so the file never
/// grows and `fdatasync` has no metadata to write.
const FILE_BYTES: u64 = 16 << 20;

type Job = (Vec<u8>, oneshot::Sender<()>);

struct DurableEcho {
    lanes: Vec<SyncSender<Job>>,
    next: AtomicUsize,
}

type ScreenStream = Pin<Box<dyn Stream<Item = Result<ScreenNumbersResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ComplianceGateway for DurableEcho {
    async fn check_call(
        &self,
        request: Request<CheckCallRequest>,
    ) -> Result<Response<CheckCallResponse>, Status> {
        let request = request.into_inner();
        let record = format!(
            "{}\t{}\t{}\t{}\t{:?}\n",
            request.request_id,
            request.campaign_id,
            request.called_number,
            request.caller_id,
            std::time::SystemTime::now(),
        )
        .into_bytes();
        let (ack, done) = oneshot::channel();
        let lane = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        self.lanes[lane]
            .try_send((record, ack))
            .map_err(|_| Status::unavailable("log queue full"))?;
        done.await
            .map_err(|_| Status::unavailable("log writer stopped"))?;
        Ok(Response::new(CheckCallResponse {
            verdict: Verdict::Allow as i32,
            reasons: vec![],
            decision_id: request.request_id,
            normalized_number: request.called_number,
            next_allowed_at: None,
        }))
    }

    type ScreenNumbersStream = ScreenStream;

    async fn screen_numbers(
        &self,
        _request: Request<Streaming<ScreenNumbersRequest>>,
    ) -> Result<Response<ScreenStream>, Status> {
        Err(Status::unimplemented(
            "the durable echo only answers CheckCall",
        ))
    }
}

fn preallocated(path: &Path) -> File {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("durable echo file");
    let zeros = vec![0u8; 1 << 20];
    for offset in (0..FILE_BYTES).step_by(zeros.len()) {
        file.write_all_at(&zeros, offset).expect("preallocate");
    }
    file.sync_all().expect("sync preallocated file");
    file
}

fn write_loop(file: File, receiver: Receiver<Job>) {
    let mut buffer = Vec::new();
    let mut acks = Vec::new();
    let mut offset = 0u64;
    while let Ok((record, ack)) = receiver.recv() {
        buffer.extend_from_slice(&record);
        acks.push(ack);
        while acks.len() < 1024 {
            let Ok((record, ack)) = receiver.try_recv() else {
                break;
            };
            buffer.extend_from_slice(&record);
            acks.push(ack);
        }
        if offset + buffer.len() as u64 > FILE_BYTES {
            offset = 0;
        }
        file.write_all_at(&buffer, offset)
            .expect("durable echo write");
        file.sync_data().expect("durable echo fdatasync");
        offset += buffer.len() as u64;
        buffer.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Serves the durable echo on 127.0.0.1:0, its files in `dir` (which must be
/// on the same filesystem as the gateway's log for a fair comparison).
pub fn run(threads: usize, dir: &Path, lanes: usize) {
    let lanes = (0..lanes.max(1))
        .map(|lane| {
            let file = preallocated(&dir.join(format!("durable-echo-{lane}.log")));
            let (sender, receiver) = sync_channel(65_536);
            std::thread::spawn(move || write_loop(file, receiver));
            sender
        })
        .collect();
    let service = DurableEcho {
        lanes,
        next: AtomicUsize::new(0),
    };
    crate::loopback::serve(threads, service);
}
