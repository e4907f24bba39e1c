//! The doors of the bridge, free of any HTTP framework: Meta's webhook and the web form take
//! raw bytes and headers and give an [`HttpAnswer`]. The Lambda functions and the local run
//! only translate their requests into these calls.

pub mod form;
pub mod whatsapp;

/// What to answer: a status, a content type and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Extra headers (CORS).
    pub headers: Vec<(&'static str, String)>,
}

impl HttpAnswer {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_string(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// The answer as an `http` response, whatever the body type (API Gateway's, axum's).
    pub fn into_http<B: From<String>>(self) -> http::Response<B> {
        let mut response = http::Response::builder()
            .status(self.status)
            .header("content-type", self.content_type);
        for (name, value) in self.headers {
            response = response.header(name, value);
        }
        response
            .body(B::from(self.body))
            .expect("a status and headers of our own")
    }

    /// `{"error": {"code", "message", "field"?}}`, the shape every error of ours has.
    pub fn error(status: u16, code: &str, message: &str, field: Option<&str>) -> Self {
        let mut error = serde_json::json!({ "code": code, "message": message });
        if let Some(field) = field {
            error["field"] = serde_json::json!(field);
        }
        Self::json(status, &serde_json::json!({ "error": error }))
    }
}
