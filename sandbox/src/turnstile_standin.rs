//! A stand-in for Cloudflare Turnstile: its siteverify API (`POST /turnstile/v0/siteverify`,
//! form-urlencoded or JSON with `secret`, `response`, `remoteip` and `idempotency_key`, answered
//! `{"success", "error-codes", "challenge_ts", "hostname", "action", "cdata"}` as documented) and
//! a fake widget (`GET /turnstile/v0/api.js`), so the page works in `make dev` and in the browser
//! test with no keys.
//!
//! Tokens it issued pass once: a token verified again is `timeout-or-duplicate`, as is one older
//! than [`TOKEN_LIFETIME`] (or issued expired); a token starting with `fail` is
//! `invalid-input-response`, as is any token it never issued; another secret than [`SECRET`] is
//! `invalid-input-secret`. The same token with the same `idempotency_key` is answered as the
//! first time (a client's retry). [`TurnstileStandIn::fail_for`] answers 503 for a while
//! (siteverify down). Every siteverify request is recorded.
//!
//! The widget's script renders a box in each `.cf-turnstile` element, puts a fresh token it was
//! served with in a hidden `cf-turnstile-response` input (or the `data-response-field-name`),
//! and calls `data-callback`; `window.turnstile` has `render`, `reset`, `getResponse`, `remove`
//! and `ready`. Its tokens carry the page's hostname and the widget's action, which siteverify
//! answers, as Turnstile's do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::standin::{Server, lock, unique_id};

/// The site key the stand-in's widget takes: Cloudflare's documented testing site key.
pub const SITE_KEY: &str = "1x00000000000000000000AA";
/// The secret siteverify takes: Cloudflare's documented testing secret ("always passes"), which
/// the stand-in still checks tokens with.
pub const SECRET: &str = "1x0000000000000000000000000000000AA";
/// How long a token is good for, as Turnstile's.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// siteverify's path.
pub const SITEVERIFY_PATH: &str = "/turnstile/v0/siteverify";
/// The widget script's path.
pub const SCRIPT_PATH: &str = "/turnstile/v0/api.js";
/// How many tokens one load of the widget's script carries (each render or reset takes one).
const TOKENS_PER_SCRIPT: usize = 20;
/// What separates a token from the hostname and action the widget appends.
const TOKEN_PARTS: char = '~';

/// One siteverify request, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteverifyRequest {
    /// `form` or `json`.
    pub encoding: &'static str,
    pub secret: Option<String>,
    pub response: Option<String>,
    pub remoteip: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone)]
struct Issued {
    /// Known when issued for a test; else the widget appends it to the token.
    hostname: Option<String>,
    action: Option<String>,
    cdata: Option<String>,
    issued_at: SystemTime,
    /// The idempotency key it was first verified with, and the answer.
    verified: Option<(Option<String>, Value)>,
}

#[derive(Default)]
struct TurnstileState {
    issued: HashMap<String, Issued>,
    requests: Vec<SiteverifyRequest>,
    /// Until when every siteverify request is answered 503.
    outage: Option<Instant>,
}

type Shared = Arc<Mutex<TurnstileState>>;

pub struct TurnstileStandIn {
    state: Shared,
    server: Server,
}

impl TurnstileStandIn {
    pub fn start() -> TurnstileStandIn {
        let state = Shared::default();
        let router = Router::new()
            .route(SITEVERIFY_PATH, post(siteverify))
            .route(SCRIPT_PATH, get(script))
            .with_state(state.clone());
        TurnstileStandIn {
            state,
            server: Server::start(router),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// What `FORM_TURNSTILE_VERIFY_URL` is set to.
    pub fn verify_url(&self) -> String {
        format!("{}{SITEVERIFY_PATH}", self.url())
    }

    /// What `FORM_TURNSTILE_SCRIPT_URL` is set to.
    pub fn script_url(&self) -> String {
        format!("{}{SCRIPT_PATH}", self.url())
    }

    /// A token as the widget would give a person on `hostname` for `action`: it passes once,
    /// within [`TOKEN_LIFETIME`].
    pub fn issue_token(&self, hostname: &str, action: &str) -> String {
        self.issue(Some(hostname), Some(action), SystemTime::now())
    }

    /// A token solved longer ago than [`TOKEN_LIFETIME`]: `timeout-or-duplicate`.
    pub fn issue_expired_token(&self, hostname: &str, action: &str) -> String {
        let long_ago = SystemTime::now() - TOKEN_LIFETIME - Duration::from_secs(1);
        self.issue(Some(hostname), Some(action), long_ago)
    }

    fn issue(&self, hostname: Option<&str>, action: Option<&str>, at: SystemTime) -> String {
        let token = issue(&self.state, at);
        if let Some(issued) = lock(&self.state).issued.get_mut(&token) {
            issued.hostname = hostname.map(str::to_owned);
            issued.action = action.map(str::to_owned);
        }
        token
    }

    /// For the next `duration`, siteverify answers 503 (down). Returns when the outage ends.
    pub fn fail_for(&self, duration: Duration) -> Instant {
        let until = Instant::now() + duration;
        lock(&self.state).outage = Some(until);
        until
    }

    /// The siteverify requests received, in order.
    pub fn requests(&self) -> Vec<SiteverifyRequest> {
        lock(&self.state).requests.clone()
    }

    /// How many siteverify requests were received.
    pub fn request_count(&self) -> usize {
        lock(&self.state).requests.len()
    }
}

/// A new token, good from `at`.
fn issue(state: &Shared, at: SystemTime) -> String {
    // Turnstile's tokens are long and opaque; these only need to be unique and not start with
    // `fail`.
    let token = format!("standin.{}.{:016x}", unique_id("tt"), fastrand::u64(..));
    lock(state).issued.insert(
        token.clone(),
        Issued {
            hostname: None,
            action: None,
            cdata: None,
            issued_at: at,
            verified: None,
        },
    );
    token
}

/// The request's fields, from a urlencoded or a JSON body.
fn read_request(headers: &HeaderMap, body: &[u8]) -> Option<SiteverifyRequest> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let value: Value = serde_json::from_slice(body).ok()?;
        let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(SiteverifyRequest {
            encoding: "json",
            secret: field("secret"),
            response: field("response"),
            remoteip: field("remoteip"),
            idempotency_key: field("idempotency_key"),
        })
    } else if content_type.starts_with("application/x-www-form-urlencoded")
        || content_type.starts_with("multipart/form-data")
    {
        let fields: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let field = |name: &str| fields.get(name).cloned();
        Some(SiteverifyRequest {
            encoding: "form",
            secret: field("secret"),
            response: field("response"),
            remoteip: field("remoteip"),
            idempotency_key: field("idempotency_key"),
        })
    } else {
        None
    }
}

fn refused(codes: &[&str]) -> Value {
    json!({ "success": false, "error-codes": codes, "messages": [] })
}

async fn siteverify(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(request) = read_request(&headers, &body) else {
        let mut state = lock(&state);
        state.requests.push(SiteverifyRequest {
            encoding: "other",
            secret: None,
            response: None,
            remoteip: None,
            idempotency_key: None,
        });
        return (StatusCode::OK, axum::Json(refused(&["bad-request"]))).into_response();
    };
    let mut state = lock(&state);
    state.requests.push(request.clone());
    if state.outage.is_some_and(|until| Instant::now() < until) {
        return (StatusCode::SERVICE_UNAVAILABLE, "siteverify is down").into_response();
    }
    let answer = match (request.secret.as_deref(), request.response.as_deref()) {
        (None | Some(""), _) => refused(&["missing-input-secret"]),
        (Some(secret), _) if secret != SECRET => refused(&["invalid-input-secret"]),
        (_, None | Some("")) => refused(&["missing-input-response"]),
        (_, Some(token)) if token.starts_with("fail") || token.len() > 2048 => {
            refused(&["invalid-input-response"])
        }
        (_, Some(token)) => verify(&mut state, token, request.idempotency_key.as_deref()),
    };
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// A token's answer: good once, within its lifetime; the same idempotency key gets the same
/// answer again.
fn verify(state: &mut TurnstileState, token: &str, idempotency_key: Option<&str>) -> Value {
    // The widget appends `~<hostname>~<action>` to the token it was served.
    let mut parts = token.split(TOKEN_PARTS);
    let issued_token = parts.next().unwrap_or_default();
    let (page_host, page_action) = (parts.next(), parts.next());
    let Some(issued) = state.issued.get_mut(issued_token) else {
        return refused(&["invalid-input-response"]);
    };
    if let Some((key, answer)) = &issued.verified {
        if key.is_some() && key.as_deref() == idempotency_key {
            return answer.clone();
        }
        return refused(&["timeout-or-duplicate"]);
    }
    let age = SystemTime::now()
        .duration_since(issued.issued_at)
        .unwrap_or_default();
    let answer = if age > TOKEN_LIFETIME {
        refused(&["timeout-or-duplicate"])
    } else {
        let challenge_ts = chrono::DateTime::<chrono::Utc>::from(issued.issued_at)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        json!({
            "success": true,
            "error-codes": [],
            "challenge_ts": challenge_ts,
            "hostname": issued.hostname.as_deref().or(page_host).unwrap_or("localhost"),
            "action": issued.action.as_deref().or(page_action).unwrap_or(""),
            "cdata": issued.cdata.as_deref().unwrap_or(""),
            "metadata": { "ephemeral_id": format!("x:{:016x}", fastrand::u64(..)) },
        })
    };
    issued.verified = Some((idempotency_key.map(str::to_owned), answer.clone()));
    answer
}

/// The fake widget, carrying [`TOKENS_PER_SCRIPT`] fresh tokens.
async fn script(State(state): State<Shared>) -> Response {
    let tokens: Vec<String> = (0..TOKENS_PER_SCRIPT)
        .map(|_| issue(&state, SystemTime::now()))
        .collect();
    let script = WIDGET_SCRIPT.replace("__TOKENS__", &json!(tokens).to_string());
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        script,
    )
        .into_response()
}

/// `window.turnstile`, as far as a page uses it. No `eval`, no inline styles set from strings
/// (a strict CSP may forbid both): elements and properties only.
const WIDGET_SCRIPT: &str = r##"(function () {
  "use strict";
  var tokens = __TOKENS__;
  var widgets = {};
  var next = 0;
  function token(action) {
    var t = tokens.shift() || "fail-the-stand-in-ran-out-of-tokens";
    return t + "~" + window.location.hostname + "~" + (action || "");
  }
  function option(element, options, name) {
    if (options && options[name] !== undefined) return options[name];
    var attribute = element.getAttribute("data-" + name);
    return attribute === null ? undefined : attribute;
  }
  function callback(value) {
    if (typeof value === "function") return value;
    if (typeof value === "string" && typeof window[value] === "function") return window[value];
    return null;
  }
  function fill(widget) {
    widget.token = token(widget.action);
    widget.input.value = widget.token;
    widget.box.textContent = "\u2714 Stand-in de Turnstile: verificado";
    var done = callback(widget.callback);
    if (done) done(widget.token);
  }
  function render(target, options) {
    var element = typeof target === "string" ? document.querySelector(target) : target;
    if (!element) throw new Error("turnstile stand-in: no element " + target);
    if (element.getAttribute("data-turnstile-standin")) return element.getAttribute("data-turnstile-standin");
    var id = "standin-widget-" + (next++);
    element.setAttribute("data-turnstile-standin", id);
    var box = document.createElement("div");
    box.setAttribute("role", "status");
    box.className = "cf-turnstile-standin";
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = option(element, options, "response-field-name") || "cf-turnstile-response";
    element.appendChild(box);
    element.appendChild(input);
    var widget = {
      element: element, box: box, input: input,
      action: option(element, options, "action"),
      callback: option(element, options, "callback")
    };
    widgets[id] = widget;
    fill(widget);
    return id;
  }
  function find(id) {
    if (id === undefined) { for (var k in widgets) return widgets[k]; return null; }
    if (widgets[id]) return widgets[id];
    for (var key in widgets) {
      if (widgets[key].element === id || "#" + widgets[key].element.id === id) return widgets[key];
    }
    return null;
  }
  window.turnstile = {
    render: render,
    reset: function (id) { var w = find(id); if (w) fill(w); },
    getResponse: function (id) { var w = find(id); return w ? w.token : undefined; },
    isExpired: function () { return false; },
    remove: function (id) {
      var w = find(id);
      if (!w) return;
      w.element.removeChild(w.box);
      w.element.removeChild(w.input);
      w.element.removeAttribute("data-turnstile-standin");
      for (var key in widgets) if (widgets[key] === w) delete widgets[key];
    },
    ready: function (run) { run(); }
  };
  var source = document.currentScript ? document.currentScript.src : "";
  var query = source.indexOf("?") >= 0 ? source.slice(source.indexOf("?") + 1) : "";
  var params = {};
  query.split("&").forEach(function (pair) {
    var parts = pair.split("=");
    if (parts[0]) params[decodeURIComponent(parts[0])] = decodeURIComponent(parts[1] || "");
  });
  function start() {
    if (params.render !== "explicit") {
      var elements = document.querySelectorAll(".cf-turnstile");
      for (var i = 0; i < elements.length; i++) render(elements[i]);
    }
    var onload = params.onload && callback(params.onload);
    if (onload) onload();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
"##;

#[cfg(test)]
mod tests {
    //! shared's `TurnstileClient` against the stand-in (shared cannot depend on the sandbox).
    use std::net::{IpAddr, Ipv4Addr};

    use secrecy::SecretString;
    use shared::bot_check::{BotCheck, BotCheckError, Challenge, Expected, TurnstileClient};

    use super::*;

    const HOST: &str = "forms.example.com";
    const ACTION: &str = "lead-form";

    fn client(standin: &TurnstileStandIn, secret: &str) -> TurnstileClient {
        TurnstileClient::new(
            standin.verify_url(),
            SecretString::from(secret.to_owned()),
            shared::http::client(),
        )
    }

    async fn check(client: &TurnstileClient, token: &str) -> Result<(), BotCheckError> {
        let hostnames = vec![HOST.to_owned()];
        let expected = Expected {
            action: ACTION,
            hostnames: &hostnames,
        };
        let challenge = Challenge {
            token,
            remote_ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
        };
        client.verify(&challenge, &expected).await
    }

    fn duplicate() -> Result<(), BotCheckError> {
        Err(BotCheckError::Refused(vec!["timeout-or-duplicate".into()]))
    }

    #[tokio::test]
    async fn an_issued_token_passes_once_and_the_request_is_the_documented_one() {
        let standin = TurnstileStandIn::start();
        let client = client(&standin, SECRET);
        let token = standin.issue_token(HOST, ACTION);
        assert_eq!(check(&client, &token).await, Ok(()));
        assert_eq!(check(&client, &token).await, duplicate(), "reused");

        let requests = standin.requests();
        assert_eq!(requests.len(), 2);
        let first = &requests[0];
        assert_eq!(first.encoding, "form");
        assert_eq!(first.secret.as_deref(), Some(SECRET));
        assert_eq!(first.response.as_deref(), Some(token.as_str()));
        assert_eq!(first.remoteip.as_deref(), Some("203.0.113.7"));
        let key = first.idempotency_key.as_deref().unwrap();
        assert!(key.parse::<uuid_like::Uuid>().is_ok(), "{key}");
        assert_ne!(requests[1].idempotency_key, requests[0].idempotency_key);
    }

    /// A UUID's shape, without a dependency on the uuid crate.
    mod uuid_like {
        pub struct Uuid;
        impl std::str::FromStr for Uuid {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                let groups: Vec<_> = s.split('-').map(str::len).collect();
                let hex = s.chars().all(|c| c == '-' || c.is_ascii_hexdigit());
                (groups == [8, 4, 4, 4, 12] && hex)
                    .then_some(Uuid)
                    .ok_or(())
            }
        }
    }

    #[tokio::test]
    async fn failing_expired_unknown_and_foreign_tokens_are_refused_with_their_codes() {
        let standin = TurnstileStandIn::start();
        let client = client(&standin, SECRET);
        let refused = |code: &str| Err(BotCheckError::Refused(vec![code.to_owned()]));
        assert_eq!(
            check(&client, "fail-please").await,
            refused("invalid-input-response")
        );
        assert_eq!(
            check(&client, "never-issued").await,
            refused("invalid-input-response")
        );
        let expired = standin.issue_expired_token(HOST, ACTION);
        assert_eq!(check(&client, &expired).await, duplicate());
        let elsewhere = standin.issue_token("evil.example.net", ACTION);
        assert_eq!(
            check(&client, &elsewhere).await,
            Err(BotCheckError::WrongHostname("evil.example.net".into()))
        );
        let login = standin.issue_token(HOST, "login");
        assert_eq!(
            check(&client, &login).await,
            Err(BotCheckError::WrongAction("login".into()))
        );
        // The widget's tokens carry the page's hostname and the action.
        let widget = format!(
            "{}~{HOST}~{ACTION}",
            issue(&standin.state, SystemTime::now())
        );
        assert_eq!(check(&client, &widget).await, Ok(()));
    }

    #[tokio::test]
    async fn a_wrong_secret_or_siteverify_down_fails_closed_as_unavailable() {
        let standin = TurnstileStandIn::start();
        let wrong = client(&standin, "0x0000000000000000000000000000000AA");
        let token = standin.issue_token(HOST, ACTION);
        let answer = check(&wrong, &token).await;
        assert!(
            matches!(&answer, Err(BotCheckError::Unavailable(m)) if m.contains("invalid-input-secret")),
            "{answer:?}"
        );
        let client = client(&standin, SECRET);
        standin.fail_for(Duration::from_secs(60));
        let answer = check(&client, &token).await;
        assert!(
            matches!(&answer, Err(BotCheckError::Unavailable(m)) if m.contains("503")),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn the_same_idempotency_key_is_answered_as_the_first_and_json_is_read_too() {
        let standin = TurnstileStandIn::start();
        let token = standin.issue_token(HOST, ACTION);
        let http = reqwest::Client::new();
        let send = |key: &str| {
            http.post(standin.verify_url())
                .json(&json!({ "secret": SECRET, "response": token, "idempotency_key": key }))
                .send()
        };
        let first: Value = send("k-1").await.unwrap().json().await.unwrap();
        let retry: Value = send("k-1").await.unwrap().json().await.unwrap();
        let other: Value = send("k-2").await.unwrap().json().await.unwrap();
        assert_eq!(first["success"], true, "{first}");
        assert_eq!(first["hostname"], HOST);
        assert_eq!(first["action"], ACTION);
        assert_eq!(retry, first);
        assert_eq!(other["success"], false);
        assert_eq!(other["error-codes"], json!(["timeout-or-duplicate"]));
        assert_eq!(standin.requests()[0].encoding, "json");
    }

    #[tokio::test]
    async fn the_widget_script_carries_fresh_tokens() {
        let standin = TurnstileStandIn::start();
        let response = reqwest::get(standin.script_url()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        let script = response.text().await.unwrap();
        assert!(script.contains("window.turnstile"), "{script}");
        assert!(script.contains("cf-turnstile-response"));
        let start = script.find("var tokens = ").unwrap() + "var tokens = ".len();
        let end = start + script[start..].find(';').unwrap();
        let tokens: Vec<String> = serde_json::from_str(&script[start..end]).unwrap();
        assert_eq!(tokens.len(), TOKENS_PER_SCRIPT);
        let client = client(&standin, SECRET);
        let token = format!("{}~{HOST}~{ACTION}", tokens[0]);
        assert_eq!(check(&client, &token).await, Ok(()));
    }
}
