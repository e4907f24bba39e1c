//! A reverse proxy in front of a service (the local stack's PostgREST API) that can be switched
//! off for a while: during an outage every request is answered 503 with PostgREST's own error
//! body, as Supabase's API answers while its database is unreachable, and reaches nothing
//! behind it. Everything else is passed through unchanged. The chaos run points its stores at
//! it, so the store goes down for its clients without stopping the database other tests share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::standin::Server;

/// What a request may carry at most (PostgREST's bodies here are small).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Headers that describe one hop, not the message: never passed on.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "upgrade",
];

struct ProxyState {
    /// `scheme://host:port` of the service behind.
    upstream: String,
    client: reqwest::Client,
    /// Until when every request is refused.
    outage_until: Mutex<Option<Instant>>,
    forwarded: AtomicUsize,
    refused: AtomicUsize,
}

pub struct OutageProxy {
    state: Arc<ProxyState>,
    /// The upstream URL's path (`/api`), kept on the proxy's URL.
    path: String,
    server: Server,
}

impl OutageProxy {
    /// A proxy for `upstream` (a base URL such as `http://127.0.0.1:5432/api`): every path is
    /// passed on as it comes, so [`Self::url`] stands in for `upstream`.
    pub fn start(upstream: &str) -> anyhow::Result<OutageProxy> {
        let parsed = url::Url::parse(upstream)?;
        let origin = parsed.origin().ascii_serialization();
        anyhow::ensure!(origin != "null", "{upstream} has no origin to proxy to");
        let state = Arc::new(ProxyState {
            upstream: origin,
            client: reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(60))
                .build()?,
            outage_until: Mutex::new(None),
            forwarded: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let router = Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&state));
        Ok(OutageProxy {
            state,
            path: parsed.path().trim_end_matches('/').to_owned(),
            server: Server::start(router),
        })
    }

    /// The upstream base URL, through the proxy.
    pub fn url(&self) -> String {
        format!("{}{}", self.server.url(), self.path)
    }

    /// For the next `duration` every request is answered 503 and passed on to nothing. Returns
    /// when the outage ends.
    pub fn fail_for(&self, duration: Duration) -> Instant {
        let until = Instant::now() + duration;
        *self
            .state
            .outage_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(until);
        until
    }

    /// Requests passed on so far.
    pub fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::Relaxed)
    }

    /// Requests refused so far (answered 503 during an outage).
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::Relaxed)
    }
}

impl ProxyState {
    fn down(&self) -> bool {
        let until = *lock_mutex(&self.outage_until);
        until.is_some_and(|until| Instant::now() < until)
    }
}

fn lock_mutex<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    if state.down() {
        state.refused.fetch_add(1, Ordering::Relaxed);
        return unavailable("the proxy is in an outage");
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    let Ok(method) = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) else {
        return (StatusCode::METHOD_NOT_ALLOWED, "unknown method").into_response();
    };
    let mut outgoing = state
        .client
        .request(method, format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = match outgoing.body(body).send().await {
        Ok(answer) => answer,
        Err(error) => return unavailable(&format!("the upstream did not answer: {error}")),
    };
    let status =
        StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers: Vec<(String, Vec<u8>)> = answer
        .headers()
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let body: Bytes = match answer.bytes().await {
        Ok(body) => body,
        Err(error) => return unavailable(&format!("the upstream's answer broke off: {error}")),
    };
    state.forwarded.fetch_add(1, Ordering::Relaxed);
    let mut response = (status, body).into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// PostgREST's answer when it cannot reach its database.
fn unavailable(details: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({
            "code": "PGRST001",
            "message": "Database client error. Retrying the connection.",
            "details": details,
            "hint": null,
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> Server {
        Server::start(Router::new().fallback(|request: Request| async move {
            let path = request.uri().to_string();
            let prefer = request
                .headers()
                .get("prefer")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = axum::body::to_bytes(request.into_body(), 1024)
                .await
                .unwrap_or_default();
            (
                StatusCode::CREATED,
                [("x-echo", "yes")],
                format!("{path} {prefer} {}", String::from_utf8_lossy(&body)),
            )
        }))
    }

    #[tokio::test]
    async fn passes_requests_through_and_refuses_them_during_an_outage() {
        let upstream = echo();
        let proxy = OutageProxy::start(&format!("{}/api", upstream.url())).unwrap();
        assert!(proxy.url().ends_with("/api"), "{}", proxy.url());
        let client = reqwest::Client::new();
        let call = || {
            client
                .post(format!("{}/rpc/claim_turn?x=1", proxy.url()))
                .header("prefer", "return=representation")
                .body("{\"a\":1}")
                .send()
        };
        let answer = call().await.unwrap();
        assert_eq!(answer.status().as_u16(), 201);
        assert_eq!(answer.headers()["x-echo"], "yes");
        assert_eq!(
            answer.text().await.unwrap(),
            "/api/rpc/claim_turn?x=1 return=representation {\"a\":1}"
        );

        proxy.fail_for(Duration::from_millis(300));
        let answer = call().await.unwrap();
        assert_eq!(answer.status().as_u16(), 503);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "PGRST001");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(call().await.unwrap().status().as_u16(), 201);
        assert_eq!((proxy.forwarded(), proxy.refused()), (2, 1));
    }
}
