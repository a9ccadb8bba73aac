//! The HTTP decision API (contract section 6) for dialers, SIP proxies and
//! PBXs without gRPC: `POST /v1/check` (JSON, whatever the Content-Type
//! says) and `GET /v1/check?...`, answered by the same
//! [`Gateway::check_call`] as gRPC `CheckCall` (the same rules, durable log,
//! idempotency and API keys); `POST /v1/screen` screens newline-delimited
//! JSON, streamed in and out in constant memory.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::auth::{ApiKeys, AuthError, Caller, Role};
use crate::error::{ErrorKind, HasKind};
use crate::gateway::{CallCheck, CheckOutcome, Gateway};

/// Largest `/v1/check` body accepted.
const MAX_BODY: usize = 16 * 1024;
/// Longest `/v1/screen` line accepted.
const MAX_SCREEN_LINE: usize = 4096;

#[derive(Clone)]
struct DecisionState {
    gateway: Arc<Gateway>,
    keys: Arc<ApiKeys>,
}

/// The decision routes; every request needs the `dialer` role once keys are configured.
pub fn router(gateway: Arc<Gateway>, keys: Arc<ApiKeys>) -> Router {
    Router::new()
        // The body bounded before it is read whole (axum's default is 2
        // MiB per request, before the key is checked); HEAD refused: axum
        // serves it with GET's handler, which decides and logs a call whose
        // answer HEAD drops.
        .route(
            "/v1/check",
            post(check_post)
                .get(check_get)
                .head(head_refused)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)),
        )
        .route("/v1/screen", post(screen))
        .with_state(DecisionState { gateway, keys })
}

/// A CheckCall in JSON: every field a string; a missing one is empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CheckRequest {
    called_number: String,
    caller_id: String,
    campaign_id: String,
    request_id: String,
}

#[derive(Debug, Serialize)]
struct ReasonBody {
    code: &'static str,
    detail: String,
}

/// The answer: a flat `verdict` and first `reason` for a dialplan to branch on.
#[derive(Debug, Serialize)]
struct CheckResponse {
    verdict: &'static str,
    reason: &'static str,
    reasons: Vec<ReasonBody>,
    decision_id: String,
    normalized_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_allowed_at: Option<jiff::Timestamp>,
}

fn json_line(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        text + "\n",
    )
        .into_response()
}

/// A `/v1/check` request this adapter refuses before the gateway sees it.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    /// serde_json's message names the field where it can, e.g. `unknown
    /// field "calling_number"` or `invalid type: integer, expected a string
    /// at line 1 column 20`.
    #[error("invalid JSON body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("body of {0} bytes, at most {MAX_BODY}")]
    TooLarge(usize),
    #[error("body longer than {MAX_BODY} bytes")]
    TooLargeUnread,
    #[error("body not read: {0}")]
    Unread(String),
    #[error("parameter {0:?} given more than once")]
    RepeatedParameter(String),
    #[error("unknown parameter {0:?}")]
    UnknownParameter(String),
    #[error(
        "parameter {0:?} holds a literal '+', which a query string reads as a space: send '+' as %2B"
    )]
    UnencodedPlus(&'static str),
    #[error("query parameter {0} is not UTF-8 once percent-decoded")]
    NotUtf8(usize),
}

impl HasKind for RequestError {
    fn kind(&self) -> ErrorKind {
        match self {
            RequestError::TooLarge(_) | RequestError::TooLargeUnread => ErrorKind::TooLarge,
            _ => ErrorKind::InvalidArgument,
        }
    }
}

/// A parameter name as shown back: bounded, whatever was sent.
fn shown(name: &str) -> String {
    name.chars().take(40).collect()
}

/// Any failure as this API answers it: the kind's status with
/// `{"error": ...}`, and the `Bearer` challenge with a 401.
fn failure(err: &impl HasKind) -> Response {
    let (status, message) = crate::error::http_parts(err);
    let mut response = json_line(status, &serde_json::json!({ "error": message }));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// The dialer's key (`None` without keys configured).
fn authorize(keys: &ApiKeys, headers: &HeaderMap) -> Result<Option<Caller>, AuthError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    keys.check(header, Some(Role::Dialer))
}

/// The first reason's code: what a dialplan branches on.
fn first_code(reasons: &[crate::model::Reason]) -> &'static str {
    reasons.first().map_or("", |r| r.code.as_str())
}

fn reason_bodies(reasons: Vec<crate::model::Reason>) -> Vec<ReasonBody> {
    reasons
        .into_iter()
        .map(|r| ReasonBody {
            code: r.code.as_str(),
            detail: r.detail,
        })
        .collect()
}

fn answer(outcome: CheckOutcome) -> Response {
    json_line(
        StatusCode::OK,
        &CheckResponse {
            verdict: outcome.verdict.as_str(),
            reason: first_code(&outcome.reasons),
            reasons: reason_bodies(outcome.reasons),
            decision_id: outcome.decision_id,
            normalized_number: outcome.normalized_number,
            next_allowed_at: outcome.next_allowed_at,
        },
    )
}

async fn decide(state: &DecisionState, caller: Option<Caller>, request: CheckRequest) -> Response {
    let check = CallCheck {
        called_number: request.called_number,
        caller_id: request.caller_id,
        campaign_id: request.campaign_id,
        request_id: request.request_id,
        caller,
    };
    match state.gateway.check_call(check).await {
        Ok(outcome) => answer(outcome),
        Err(err) => failure(&err),
    }
}

async fn check_post(
    State(state): State<DecisionState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let caller = match authorize(&state.keys, &headers) {
        Ok(caller) => caller,
        Err(err) => return failure(&err),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return failure(&RequestError::TooLargeUnread);
        }
        Err(rejection) => return failure(&RequestError::Unread(rejection.body_text())),
    };
    if body.len() > MAX_BODY {
        return failure(&RequestError::TooLarge(body.len()));
    }
    // Parsed as JSON whatever the Content-Type says: PBX dialplan functions
    // often send application/x-www-form-urlencoded.
    match json_object::<CheckRequest>(&body) {
        Ok(request) => decide(&state, caller, request).await,
        Err(err) => failure(&RequestError::from(err)),
    }
}

/// A request body read as a JSON object with named fields. serde reads a
/// struct from an array too, by position: `["+39…","+39…","it-sales"]`
/// was decided with whatever fields stood where (a caller ID sent first
/// became the called number), instead of refused (found by review).
fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(<serde_json::Error as serde::de::Error>::custom(
            "expected a JSON object with named fields",
        ));
    }
    serde_json::from_slice(bytes)
}

/// `HEAD /v1/check`: 405 (a decision's answer cannot travel in a HEAD).
async fn head_refused() -> Response {
    let mut response = json_line(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({ "error": "HEAD is not a check: use GET or POST" }),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
    response
}

async fn check_get(
    State(state): State<DecisionState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let caller = match authorize(&state.keys, &headers) {
        Ok(caller) => caller,
        Err(err) => return failure(&err),
    };
    // A literal `+` decodes to a space, which the number's parsing trims:
    // `+4798123456` sent unencoded became the US national 479 812 3456,
    // decided as such while the carrier dialled Norway (found by review).
    // The raw pairs come in the decoded ones' order (empty ones skipped).
    let raw_pairs = raw
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty());
    // Decoded, bytes that are not UTF-8 become U+FFFD: `request_id=r%FF`
    // and `r%FE` were one request id, the second answered by the first's
    // ALLOW unlogged (found by review; gRPC and POST refuse such bytes).
    if let Some(at) = raw_pairs.clone().position(|pair| !decodes_to_utf8(pair)) {
        return failure(&RequestError::NotUtf8(at + 1));
    }
    for (raw_pair, (name, _)) in raw_pairs.zip(&params) {
        let number_field = match name.as_str() {
            "called_number" => "called_number",
            "caller_id" => "caller_id",
            _ => continue,
        };
        if raw_pair
            .split_once('=')
            .is_some_and(|(_, value)| value.contains('+'))
        {
            return failure(&RequestError::UnencodedPlus(number_field));
        }
    }
    let mut request = CheckRequest::default();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in params {
        // One value per field: a proxy reading the first of two could dial
        // a number that was never decided.
        if seen.contains(&name) {
            return failure(&RequestError::RepeatedParameter(shown(&name)));
        }
        seen.push(name.clone());
        let slot = match name.as_str() {
            "called_number" => &mut request.called_number,
            "caller_id" => &mut request.caller_id,
            "campaign_id" => &mut request.campaign_id,
            "request_id" => &mut request.request_id,
            other => return failure(&RequestError::UnknownParameter(shown(other))),
        };
        *slot = value;
    }
    decide(&state, caller, request).await
}

/// Whether a part of a query string, its percent escapes decoded, is
/// UTF-8 (a `%` not followed by two hex digits stands for itself, as the
/// query extractor reads it).
fn decodes_to_utf8(part: &str) -> bool {
    let bytes = part.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// One `/v1/screen` line: `{"called_number", "campaign_id", "at"?, "ref"?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ScreenRequest {
    called_number: String,
    campaign_id: String,
    at: Option<jiff::Timestamp>,
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Debug, Serialize)]
struct ScreenResponse {
    /// The request line answered (blank lines get no answer: a client
    /// pairing answers with lines by position would be shifted by one,
    /// and read another line's verdict; found by review).
    line: u64,
    #[serde(rename = "ref")]
    reference: String,
    verdict: &'static str,
    reason: &'static str,
    reasons: Vec<ReasonBody>,
    normalized_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_allowed_at: Option<jiff::Timestamp>,
}

/// Screens one line; a bad line answers `{"line": N, "error": ...}` and the
/// stream goes on.
fn screen_line(
    gateway: &Gateway,
    caller: Option<&Caller>,
    tally: &mut crate::gateway::ScreenedTally,
    number: u64,
    line: &[u8],
) -> String {
    let fail = |message: String| {
        serde_json::json!({ "line": number, "error": message }).to_string() + "\n"
    };
    let request: ScreenRequest = match json_object(line) {
        Ok(request) => request,
        Err(err) => return fail(format!("invalid JSON: {err}")),
    };
    if let Err(err) = crate::gateway::bounded_screen_item(
        &request.called_number,
        &request.campaign_id,
        &request.reference,
    ) {
        return fail(err.to_string());
    }
    if let Some(at) = request.at
        && !crate::gateway::SCREEN_AT_SECONDS.contains(&at.as_second())
    {
        return fail("at: must be between 2000 and 2199".into());
    }
    if let Err(err) = gateway.in_scope(caller, &request.campaign_id) {
        return fail(err.to_string());
    }
    let outcome = match gateway.screener() {
        Ok(mut screener) => {
            screener.screen(&request.called_number, &request.campaign_id, request.at)
        }
        Err(err) => return fail(err.to_string()),
    };
    tally.add();
    serde_json::to_string(&ScreenResponse {
        line: number,
        reference: request.reference,
        verdict: outcome.verdict.as_str(),
        reason: first_code(&outcome.reasons),
        reasons: reason_bodies(outcome.reasons),
        normalized_number: outcome.normalized_number,
        next_allowed_at: outcome.next_allowed_at,
    })
    .unwrap_or_default()
        + "\n"
}

async fn screen(State(state): State<DecisionState>, headers: HeaderMap, body: Body) -> Response {
    let caller = match authorize(&state.keys, &headers) {
        Ok(caller) => caller,
        Err(err) => return failure(&err),
    };
    let gateway = Arc::clone(&state.gateway);
    // A few answers in flight: a slow reader slows the screening, memory stays flat.
    let (sender, receiver) = tokio::sync::mpsc::channel::<String>(16);
    tokio::spawn(async move {
        let mut tally = gateway.screened_tally();
        let mut input = body.into_data_stream();
        let mut pending: Vec<u8> = Vec::new();
        let mut line_number = 0u64;
        let mut too_long = false;
        let too_long_line = |n: u64| {
            serde_json::json!({"line": n, "error": format!("longer than {MAX_SCREEN_LINE} bytes")})
                .to_string()
                + "\n"
        };
        while let Some(read) = input.next().await {
            // A body that breaks off (a malformed chunk, a reset) ends the
            // answers with an error line, not as if the list had ended
            // (found by review: a cut list answered as a whole, its cut
            // last line screened).
            let chunk = match read {
                Ok(chunk) => chunk,
                Err(err) => {
                    let cut = serde_json::json!({
                        "line": line_number + 1,
                        "error": format!("the request body could not be read ({err}): the list was cut short, screen the rest again"),
                    });
                    let _ = sender.send(cut.to_string() + "\n").await;
                    return;
                }
            };
            let mut rest: &[u8] = &chunk;
            while let Some(end) = rest.iter().position(|b| *b == b'\n') {
                let head = &rest[..end];
                rest = &rest[end + 1..];
                line_number += 1;
                let answer = if too_long || pending.len() + head.len() > MAX_SCREEN_LINE {
                    Some(too_long_line(line_number))
                } else {
                    pending.extend_from_slice(head);
                    (!pending.iter().all(u8::is_ascii_whitespace)).then(|| {
                        screen_line(&gateway, caller.as_ref(), &mut tally, line_number, &pending)
                    })
                };
                pending.clear();
                too_long = false;
                if let Some(answer) = answer
                    && sender.send(answer).await.is_err()
                {
                    return;
                }
            }
            if too_long || pending.len() + rest.len() > MAX_SCREEN_LINE {
                too_long = true;
                pending.clear();
            } else {
                pending.extend_from_slice(rest);
            }
        }
        let last = if too_long {
            Some(too_long_line(line_number + 1))
        } else {
            (!pending.iter().all(u8::is_ascii_whitespace)).then(|| {
                screen_line(
                    &gateway,
                    caller.as_ref(),
                    &mut tally,
                    line_number + 1,
                    &pending,
                )
            })
        };
        if let Some(answer) = last {
            let _ = sender.send(answer).await;
        }
    });
    let output = tokio_stream::wrappers::ReceiverStream::new(receiver)
        .map(Ok::<_, std::convert::Infallible>);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(output),
    )
        .into_response()
}
