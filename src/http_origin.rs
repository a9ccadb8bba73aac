//! Requests another web site's page makes a browser send to the HTTP API.
//! The default listener is `127.0.0.1:8080` without API keys, and the
//! supervisor opens the page in a browser on that host: any site that
//! browser visits could otherwise have it decide and log checks (an
//! `<img>` to `/v1/check`, a plain-text POST, neither preflighted), each
//! ALLOW taking an attempt slot of the number's cap, or read `/status`
//! through a name of its own resolving to 127.0.0.1 (DNS rebinding).
//!
//! Refused with 403, before any handler runs:
//! - `Sec-Fetch-Site: cross-site` or `same-site` (a page of another origin;
//!   every current browser sends it);
//! - an `Origin` that is not the `Host` the request was sent to (older
//!   browsers, `Origin: null` from sandboxed pages and files);
//! - plain HTTP without API keys: a `Host` that is not an IP address or
//!   `localhost` (the rebinding name), on any listener (with TLS a rebound
//!   name does not match the certificate);
//! - on `/v1/`: an `Accept` asking first for an image, or for XHTML (an
//!   `<img>` or a link of a browser that sends none of the headers above;
//!   Java's default `text/html, image/gif, ...` is a client's).
//!
//! Probes (`/livez`, `/readyz`) answer whatever the headers, and a
//! browser's navigation to the supervisor page (`GET /`, which decides
//! nothing) is let through from a link elsewhere. Every response carries
//! `Cache-Control: no-store`: `/status` lists masked numbers that a proxy
//! in front should not keep.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Where the HTTP API listens and how callers prove who they are.
#[derive(Debug, Clone, Copy)]
pub struct OriginPolicy {
    /// Plain HTTP without API keys: the `Host` must name the machine by
    /// address or as `localhost`.
    pub host_must_be_local: bool,
}

/// Paths any caller may read: the probes.
const PROBES: [&str; 2] = ["/livez", "/readyz"];

/// The middleware: refuses what [`refusal`] names, marks every response
/// `no-store`.
pub async fn guard(
    State(policy): State<OriginPolicy>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let probe = PROBES.contains(&path);
    let navigation = request.method() == axum::http::Method::GET
        && path == "/"
        && request
            .headers()
            .get("sec-fetch-mode")
            .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"navigate"));
    let decides = path.starts_with("/v1/");
    // HTTP/2 carries the host in the URI (`:authority`), not a header.
    let authority = request.uri().authority().map(|a| a.as_str().to_owned());
    // A navigation to the page from a link elsewhere decides nothing; it
    // must still be addressed to this machine.
    let page_from_a_link =
        navigation && host_allowed(request.headers(), authority.as_deref(), policy);
    let refused = refusal(request.headers(), authority.as_deref(), policy)
        .filter(|_| !probe && !page_from_a_link)
        .or_else(|| {
            decides
                .then(|| asks_for_a_page(request.headers()))
                .flatten()
        });
    let mut response = match refused {
        Some(why) => (StatusCode::FORBIDDEN, format!("{why}\n")).into_response(),
        None => next.run(request).await,
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why a request with these headers (and the URI's `authority`, HTTP/2)
/// is refused, if it is.
pub fn refusal(
    headers: &HeaderMap,
    authority: Option<&str>,
    policy: OriginPolicy,
) -> Option<&'static str> {
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(site) = text("sec-fetch-site")
        && (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
    {
        return Some("refused: a request made by another site's page (Sec-Fetch-Site)");
    }
    let host = request_host(headers, authority);
    if let Some(origin) = text("origin") {
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'));
        let same = match (origin_host, host) {
            (Some(origin_host), Some(host)) => origin_host.eq_ignore_ascii_case(host),
            _ => false,
        };
        if !same {
            return Some("refused: the request's Origin is not the host it was sent to");
        }
    }
    if !host_passes(host, policy) {
        return Some(
            "refused: without API keys the HTTP API answers only requests addressed to an IP address or localhost (Host header)",
        );
    }
    None
}

/// The host a request was sent to: its `Host` header, or (HTTP/2) the
/// URI's authority.
fn request_host<'a>(headers: &'a HeaderMap, authority: Option<&'a str>) -> Option<&'a str> {
    headers
        .get("host")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .or(authority)
}

/// Whether `host` passes `policy`.
fn host_passes(host: Option<&str>, policy: OriginPolicy) -> bool {
    !policy.host_must_be_local || host.is_some_and(names_this_machine)
}

/// Whether the request's host passes `policy` (a navigation to the page
/// from elsewhere must still be addressed to this machine).
fn host_allowed(headers: &HeaderMap, authority: Option<&str>, policy: OriginPolicy) -> bool {
    host_passes(request_host(headers, authority), policy)
}

/// A request to decide whose `Accept` asks first for an image, or for
/// XHTML: an `<img>` or a link, in a browser sending no `Sec-Fetch-Site`.
/// Dialers and PBX functions accept JSON or anything; Java's
/// `HttpURLConnection` sends `text/html, image/gif, image/jpeg, *; q=.2,
/// */*; q=.2` by default, which passes.
fn asks_for_a_page(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get("accept")?.to_str().ok()?.to_ascii_lowercase();
    (accept.trim_start().starts_with("image/") || accept.contains("application/xhtml+xml"))
        .then_some("refused: a request for an image or a page (a browser's), not a dialer's")
}

/// Whether a `Host` header names this machine by address or as `localhost`
/// (with or without a port).
fn names_this_machine(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split_once(']').map_or(rest, |(address, _)| address),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    const LOCAL: OriginPolicy = OriginPolicy {
        host_must_be_local: true,
    };
    const KEYED: OriginPolicy = OriginPolicy {
        host_must_be_local: false,
    };

    #[test]
    fn test_requests_of_other_sites_pages_are_refused() {
        let ok = [
            headers(&[("host", "127.0.0.1:8080")]),
            headers(&[("host", "localhost")]),
            headers(&[("host", "[::1]:8080")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "none")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
        ];
        for h in &ok {
            assert_eq!(refusal(h, None, LOCAL), None, "{h:?}");
        }
        let refused = [
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            // DNS rebinding: the page's own name, resolving to 127.0.0.1.
            headers(&[("host", "evil.example:8080")]),
            headers(&[("host", "127.0.0.1.evil.example")]),
            headers(&[]),
        ];
        for h in &refused {
            assert!(refusal(h, None, LOCAL).is_some(), "{h:?}");
        }
        // With keys (or an exposed listener) any name may reach it; other
        // sites' pages still may not.
        assert_eq!(
            refusal(&headers(&[("host", "gateway.example")]), None, KEYED),
            None
        );
        assert!(refusal(&refused[0], None, KEYED).is_some());
        // HTTP/2: the host in the URI's authority.
        assert_eq!(refusal(&headers(&[]), Some("127.0.0.1:8080"), LOCAL), None);
        assert!(refusal(&headers(&[]), Some("evil.example:8080"), LOCAL).is_some());
    }
}
