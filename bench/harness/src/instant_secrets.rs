//! A Secrets Manager endpoint that answers every `GetSecretValue` at once with one secret: the
//! functions' secrets as the deployment's secret holds them (a JSON object, the variables'
//! names as keys). With it the cold starts show what reading the secret at INIT costs the
//! functions themselves (the client, one HTTP round trip on loopback, the JSON), apart from
//! Secrets Manager's own latency, which a real deployment adds (one regional HTTPS call).

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use sandbox::standin::Server;

/// The secret's name, as `BRIDGE_SECRET_ID` gives it.
pub const SECRET_ID: &str = "bench-bridge";

pub struct InstantSecrets {
    server: Server,
}

impl InstantSecrets {
    /// Serves `secret_string` (the secret's JSON) as the secret [`SECRET_ID`].
    pub fn start(secret_string: String) -> InstantSecrets {
        let router = Router::new().route(
            "/",
            post(move |headers: HeaderMap| {
                let secret_string = secret_string.clone();
                async move { action(&headers, &secret_string) }
            }),
        );
        InstantSecrets {
            server: Server::start(router),
        }
    }

    pub fn endpoint_url(&self) -> String {
        self.server.url()
    }
}

/// The SDK speaks Secrets Manager's JSON protocol: the action is in `X-Amz-Target`.
fn action(headers: &HeaderMap, secret_string: &str) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if target != "secretsmanager.GetSecretValue" {
        let error = json!({ "__type": "UnsupportedOperation",
                            "message": format!("{target} is not supported here") });
        return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
    }
    let answer = json!({
        "ARN": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{SECRET_ID}-AbCdEf"),
        "Name": SECRET_ID,
        "VersionId": "00000000-0000-4000-8000-000000000001",
        "SecretString": secret_string,
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1_764_000_000.0,
    });
    (
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        answer.to_string(),
    )
        .into_response()
}
