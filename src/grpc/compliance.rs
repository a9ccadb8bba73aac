//! `dialgate.v1.ComplianceGateway`.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::grpc_status;
use crate::gateway::{CallCheck, Gateway, Screener};
use crate::proto::compliance_gateway_server::ComplianceGateway;
use crate::proto::{
    self, CheckCallRequest, CheckCallResponse, ScreenNumbersRequest, ScreenNumbersResponse,
};

/// The gRPC face of [`Gateway`].
#[derive(Debug, Clone)]
pub struct ComplianceGatewayService {
    gateway: Arc<Gateway>,
}

impl ComplianceGatewayService {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        ComplianceGatewayService { gateway }
    }
}

type ScreenStream =
    Pin<Box<dyn Stream<Item = Result<ScreenNumbersResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ComplianceGateway for ComplianceGatewayService {
    async fn check_call(
        &self,
        request: Request<CheckCallRequest>,
    ) -> Result<Response<CheckCallResponse>, Status> {
        let caller = request.extensions().get::<crate::auth::Caller>().cloned();
        let request = request.into_inner();
        let outcome = self
            .gateway
            .check_call(CallCheck {
                called_number: request.called_number,
                caller_id: request.caller_id,
                campaign_id: request.campaign_id,
                request_id: request.request_id,
                caller,
            })
            .await
            .map_err(|err| grpc_status(&err))?;
        Ok(Response::new(CheckCallResponse {
            verdict: proto::Verdict::from(outcome.verdict) as i32,
            reasons: outcome
                .reasons
                .into_iter()
                .map(proto::Reason::from)
                .collect(),
            decision_id: outcome.decision_id,
            normalized_number: outcome.normalized_number,
            next_allowed_at: outcome.next_allowed_at.map(proto::timestamp_to_proto),
        }))
    }

    type ScreenNumbersStream = ScreenStream;

    async fn screen_numbers(
        &self,
        request: Request<Streaming<ScreenNumbersRequest>>,
    ) -> Result<Response<Self::ScreenNumbersStream>, Status> {
        let gateway = Arc::clone(&self.gateway);
        let caller = request.extensions().get::<crate::auth::Caller>().cloned();
        // Counted as answered; the rest of the batch when the stream ends.
        let mut tally = gateway.screened_tally();
        // The numbers are screened a run at a time (what has arrived, up to
        // SCREEN_RUN), so that what they share is looked up once per run
        // (see `Screener`); the answers go out in order, and the stream
        // ends at the first item that fails, as it would one at a time.
        let answers = request
            .into_inner()
            // Nothing is read after an item that fails (a message that does
            // not decode would otherwise be decoded again, and fail again,
            // for the rest of the run).
            .scan(false, |failed, item| {
                let done = std::mem::replace(failed, item.is_err());
                futures_util::future::ready((!done).then_some(item))
            })
            .ready_chunks(SCREEN_RUN)
            .map(move |run| {
                let mut answers = Vec::with_capacity(run.len());
                let mut screener = None;
                for item in run {
                    let answer = screen_item(&gateway, caller.as_ref(), &mut screener, item);
                    let failed = answer.is_err();
                    if !failed {
                        tally.add();
                    }
                    answers.push(answer);
                    if failed {
                        break;
                    }
                }
                futures_util::stream::iter(answers)
            })
            .flatten();
        Ok(Response::new(Box::pin(answers)))
    }
}

/// The most numbers of a ScreenNumbers stream screened as one run.
const SCREEN_RUN: usize = 256;

/// The characters of a screened item's `ref` an error quotes.
const SHOWN_REF_CHARS: usize = 40;

/// Screens one item of a ScreenNumbers stream with the run's screener
/// (made at the run's first item).
fn screen_item<'g>(
    gateway: &'g Gateway,
    caller: Option<&crate::auth::Caller>,
    screener: &mut Option<Screener<'g>>,
    item: Result<ScreenNumbersRequest, Status>,
) -> Result<ScreenNumbersResponse, Status> {
    let item = item?;
    gateway
        .in_scope(caller, &item.campaign_id)
        .map_err(|err| grpc_status(&err))?;
    // Sizes first: an error quoting an unbounded `ref` outgrew the
    // status message (the client got an empty one; found by review).
    crate::gateway::bounded_screen_item(&item.called_number, &item.campaign_id, &item.r#ref)
        .map_err(|err| grpc_status(&err))?;
    let at = proto::timestamp_from_proto(item.at.as_ref());
    let plausible = at.is_some_and(|t| crate::gateway::SCREEN_AT_SECONDS.contains(&t.as_second()));
    if item.at.is_some() && !plausible {
        let mut shown: String = item.r#ref.chars().take(SHOWN_REF_CHARS).collect();
        if shown.len() < item.r#ref.len() {
            shown.push('…');
        }
        return Err(super::FieldError::new(
            format!("ref {shown:?}"),
            "at must be between 2000 and 2199",
        )
        .into());
    }
    let screener = match screener {
        Some(screener) => screener,
        None => screener.insert(gateway.screener().map_err(|err| grpc_status(&err))?),
    };
    let outcome = screener.screen(&item.called_number, &item.campaign_id, at);
    Ok(ScreenNumbersResponse {
        r#ref: item.r#ref,
        verdict: proto::Verdict::from(outcome.verdict) as i32,
        reasons: outcome
            .reasons
            .into_iter()
            .map(proto::Reason::from)
            .collect(),
        normalized_number: outcome.normalized_number,
        next_allowed_at: outcome.next_allowed_at.map(proto::timestamp_to_proto),
    })
}
