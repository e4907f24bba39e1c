//! What browsers are told: a page on an allowed origin (`FORM_ALLOWED_ORIGINS`) may post the
//! form and read every answer, refusals included; other origins get the same answers without
//! the CORS headers, and their preflights are refused.

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use super::{ALLOWED_METHODS, FormError};
use crate::config::FormConfig;
use crate::ingress::{Response, empty_response, header_text};

/// The request headers a page may send.
const ALLOWED_HEADERS: HeaderValue =
    HeaderValue::from_static("authorization, content-type, idempotency-key, x-form-signature");
/// How long a browser may cache a preflight, in seconds.
const PREFLIGHT_MAX_AGE: HeaderValue = HeaderValue::from_static("600");

/// One request's CORS standing.
pub(super) struct Cors {
    /// The request came from a browser page (it has an `Origin`).
    from_a_page: bool,
    /// The `Access-Control-Allow-Origin` it gets, when its origin may post here.
    allowed: Option<HeaderValue>,
    /// With a list of origins (not `*`), the answer depends on `Origin`: caches must know.
    varies: bool,
}

impl Cors {
    pub(super) fn of(config: &FormConfig, headers: &HeaderMap) -> Cors {
        let origins = &config.allowed_origins;
        let allowed = header_text(headers, &header::ORIGIN)
            .map(|origin| origin.trim().trim_end_matches('/'))
            .and_then(|origin| {
                origins
                    .iter()
                    .find(|allowed| *allowed == "*" || allowed.eq_ignore_ascii_case(origin))
            })
            // It matched a header's visible ASCII, so it is a header value; were it not, it
            // would not be echoed.
            .and_then(|allowed| HeaderValue::from_str(allowed).ok());
        Cors {
            from_a_page: headers.contains_key(header::ORIGIN),
            allowed,
            varies: !origins.is_empty() && !origins.iter().any(|o| o == "*"),
        }
    }

    /// The preflight: allowed origins learn what they may send; others are refused. Without
    /// an `Origin` it is not a CORS request, and learns the allowed methods.
    pub(super) fn preflight(&self) -> Result<Response, FormError> {
        if self.from_a_page && self.allowed.is_none() {
            return Err(FormError::OriginNotAllowed);
        }
        let mut response = empty_response(StatusCode::NO_CONTENT);
        let headers = response.headers_mut();
        headers.insert(header::ALLOW, ALLOWED_METHODS);
        if self.allowed.is_some() {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS);
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS);
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE);
        }
        Ok(response)
    }

    /// Lets an allowed page read the answer (and its `Retry-After`).
    pub(super) fn decorate(&self, headers: &mut HeaderMap) {
        if let Some(allowed) = &self.allowed {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed.clone());
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("retry-after"),
            );
        }
        if self.varies {
            headers.insert(header::VARY, HeaderValue::from_static("origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use http::header::{
        ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ALLOW, CONTENT_TYPE, ORIGIN,
        VARY,
    };
    use http::{Method, Request};

    use super::super::testing::{self, *};
    use super::*;

    fn preflight() -> http::request::Builder {
        Request::builder().method(Method::OPTIONS).uri("/form")
    }

    #[tokio::test]
    async fn a_preflight_from_an_allowed_origin_gets_204_with_what_it_may_send() {
        let h = harness();
        let request = preflight()
            .header(ORIGIN, testing::ORIGIN)
            .header(ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(ACCESS_CONTROL_REQUEST_HEADERS, "content-type,authorization");
        let response = h.send(request, "").await;
        assert_eq!(response.status(), 204);
        assert!(response.body().is_empty());
        assert_eq!(
            header(&response, ACCESS_CONTROL_ALLOW_ORIGIN),
            Some(testing::ORIGIN)
        );
        assert_eq!(
            header(&response, ACCESS_CONTROL_ALLOW_METHODS),
            Some("POST, OPTIONS")
        );
        let allowed = header(&response, ACCESS_CONTROL_ALLOW_HEADERS).unwrap();
        for name in [
            "authorization",
            "content-type",
            "idempotency-key",
            "x-form-signature",
        ] {
            assert!(allowed.contains(name), "{allowed}");
        }
        assert_eq!(header(&response, VARY), Some("origin"));
        assert!(h.store.recorded().is_empty());
    }

    #[tokio::test]
    async fn a_preflight_from_another_origin_is_refused_without_cors_headers() {
        let h = harness();
        let request = preflight().header(ORIGIN, "https://evil.example");
        let response = h.send(request, "").await;
        assert_eq!(error(&response), err(403, "origin_not_allowed", None));
        assert_eq!(header(&response, ACCESS_CONTROL_ALLOW_ORIGIN), None);
        // No Origin: not a CORS request; says what is allowed.
        let response = h.send(preflight(), "").await;
        assert_eq!(response.status(), 204);
        assert_eq!(header(&response, ALLOW), Some("POST, OPTIONS"));
        assert_eq!(header(&response, ACCESS_CONTROL_ALLOW_ORIGIN), None);
    }

    #[tokio::test]
    async fn every_answer_to_an_allowed_origin_carries_the_cors_header() {
        let h = harness();
        let origin = "http://localhost:8080";
        let accepted = h
            .send(post_json().header(ORIGIN, origin), valid_json().to_string())
            .await;
        let refused = h
            .send(
                post_json().header(ORIGIN, origin),
                without(valid_json(), "name").to_string(),
            )
            .await;
        let unauthorized = h
            .send(
                post()
                    .header(CONTENT_TYPE, "application/json")
                    .header(ORIGIN, origin),
                "{}",
            )
            .await;
        let wrong_method = h
            .send(post().method(Method::GET).header(ORIGIN, origin), "")
            .await;
        for response in [&accepted, &refused, &unauthorized, &wrong_method] {
            assert_eq!(
                header(response, ACCESS_CONTROL_ALLOW_ORIGIN),
                Some(origin),
                "{response:?}"
            );
            assert_eq!(header(response, VARY), Some("origin"));
        }
        assert_eq!(
            [&accepted, &refused, &unauthorized, &wrong_method].map(|r| r.status().as_u16()),
            [202, 422, 401, 405]
        );
        // Another origin: the answer is the same, without the header.
        let response = h
            .send(
                post_json().header(ORIGIN, "https://evil.example"),
                valid_json().to_string(),
            )
            .await;
        assert_eq!(response.status(), 202);
        assert_eq!(header(&response, ACCESS_CONTROL_ALLOW_ORIGIN), None);
    }

    #[tokio::test]
    async fn no_origins_configured_means_no_cors_and_a_star_allows_any() {
        let h = harness_with(FormConfig {
            allowed_origins: vec![],
            ..config()
        });
        let request = post_json().header(ORIGIN, testing::ORIGIN);
        let response = h.send(request, valid_json().to_string()).await;
        assert_eq!(response.status(), 202);
        assert_eq!(header(&response, ACCESS_CONTROL_ALLOW_ORIGIN), None);
        assert_eq!(header(&response, VARY), None);
        let request = preflight().header(ORIGIN, testing::ORIGIN);
        assert_eq!(h.send(request, "").await.status(), 403);

        let h = harness_with(FormConfig {
            allowed_origins: vec!["*".to_owned()],
            ..config()
        });
        let request = preflight().header(ORIGIN, "https://anywhere.example");
        let response = h.send(request, "").await;
        assert_eq!(response.status(), 204);
        assert_eq!(header(&response, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(header(&response, VARY), None);
    }
}
