//! An SQS endpoint that takes every SendMessage at once and keeps nothing: with it behind the
//! ingress functions, their latency is theirs and the store's, without moto's (a Python server
//! that answers in milliseconds and scans its whole FIFO queue on every send).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use sandbox::standin::Server;

pub struct InstantSqs {
    server: Server,
}

impl InstantSqs {
    pub fn start() -> InstantSqs {
        InstantSqs {
            server: Server::start(Router::new().route("/", post(action))),
        }
    }

    pub fn endpoint_url(&self) -> String {
        self.server.url()
    }

    /// A FIFO queue URL on this endpoint (any name is taken).
    pub fn queue_url(&self) -> String {
        format!("{}/123456789012/bench-turns.fifo", self.server.url())
    }
}

/// The SDK speaks SQS's JSON protocol: the action is in `X-Amz-Target`.
async fn action(headers: HeaderMap) -> Response {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if target != "AmazonSQS.SendMessage" {
        let error = json!({ "__type": "com.amazonaws.sqs#UnsupportedOperation",
                            "message": format!("{target} is not supported here") });
        return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
    }
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let answer = json!({
        "MessageId": format!("00000000-0000-4000-8000-{n:012}"),
        "MD5OfMessageBody": "00000000000000000000000000000000",
        "SequenceNumber": format!("{:020}", n),
    });
    (
        [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
        answer.to_string(),
    )
        .into_response()
}
