//! The session store over PostgREST (Supabase's Data API, or any compatible server), through the
//! `postgrest` crate. Each step is one RPC call, i.e. one transaction.

use std::time::Duration;

use anyhow::Context as _;
use postgrest::Builder;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{PostgrestError, SessionStore, StoreError};
use crate::config::StoreConfig;
use chrono::{DateTime, Utc};

use crate::domain::{
    BrowserRecording, ChatAttachment, ChatEvent, ChatEventRecorded, ChatId, CustomerKey,
    DeliveryOutcome, DeliveryUpdate, FormSubmission, InboundMessage, OutboundMessage,
    OutcomeReason, OutreachLimits, RecordedMessage, RecordedSubmission, RecordedWebhook, Session,
    SourceLimit, StaffClaim, StoredSubmission, StrandedWork, SubmissionId, TurnClaim,
    TurnCompletion, TurnFailure, TurnId, TurnRetry, WebhookContent,
};

#[derive(Clone)]
pub struct PostgrestStore {
    rest_url: String,
    headers: HeaderMap,
    client: reqwest::Client,
    request_timeout: Duration,
}

impl std::fmt::Debug for PostgrestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgrestStore")
            .field("rest_url", &self.rest_url)
            .finish_non_exhaustive()
    }
}

impl PostgrestStore {
    /// `client` is the process's shared HTTP client ([`crate::http::client`]).
    pub fn new(config: &StoreConfig, client: reqwest::Client) -> Self {
        Self {
            rest_url: config.rest_url.clone(),
            headers: auth_headers(config.service_role_key.expose_secret()),
            client,
            request_timeout: config.request_timeout,
        }
    }

    /// Calls a SQL function with named arguments and reads its JSON result.
    #[tracing::instrument(name = "store.rpc", skip_all, fields(function = function))]
    pub async fn call<T: DeserializeOwned>(
        &self,
        function: &str,
        args: &impl Serialize,
    ) -> Result<T, StoreError> {
        let mut args = serde_json::to_value(args)
            .context("serializing the arguments")
            .map_err(StoreError::Unexpected)?;
        // An argument left out takes its SQL default (null for every optional one). Sending an
        // explicit null instead is not portable: postrust passes it as an empty string.
        if let Some(named) = args.as_object_mut() {
            named.retain(|_, value| !value.is_null());
        }
        let body = args.to_string();
        let url = format!("{}/rpc/{function}", self.rest_url);
        self.send(self.builder(url).rpc(body)).await
    }

    fn builder(&self, url: String) -> Builder {
        Builder::new(url, None, self.headers.clone(), self.client.clone())
    }

    /// One request, its failure logged: at ERROR when a person must act (our key or role
    /// refused, an answer we cannot read: the deployment or the migrations), else at WARN (the
    /// caller retries, or answers the conflict).
    async fn send<T: DeserializeOwned>(&self, request: Builder) -> Result<T, StoreError> {
        let result = self.exchange(request).await;
        match &result {
            Err(error @ StoreError::Unauthorized(_)) => {
                tracing::error!(%error, "the store refused our key or role")
            }
            Err(StoreError::Unexpected(detail)) => {
                let error = format!("{detail:#}");
                tracing::error!(%error, "the store answered something unexpected")
            }
            Err(error) => tracing::warn!(%error, "store call failed"),
            Ok(_) => {}
        }
        result
    }

    async fn exchange<T: DeserializeOwned>(&self, request: Builder) -> Result<T, StoreError> {
        let response = request
            .build()
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(transport_error(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| StoreError::Unavailable(transport_error(&e)))?;
        if !status.is_success() {
            return Err(StoreError::from_response(PostgrestError::from_body(
                status.as_u16(),
                &body,
            )));
        }
        serde_json::from_slice(&body)
            .with_context(|| {
                format!(
                    "reading {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                )
            })
            .map_err(StoreError::Unexpected)
    }
}

/// The key goes in `apikey` (Supabase's gateway); a JWT key (legacy keys, the local CLI's) also
/// as a bearer token, which PostgREST reads the role from. `sb_secret_…` keys are not JWTs and
/// must not be sent as bearer tokens.
fn auth_headers(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Ok(mut apikey) = HeaderValue::from_str(key) else {
        // Not a valid header value: send no key, and let the store answer 401.
        return headers;
    };
    apikey.set_sensitive(true);
    if looks_like_jwt(key) {
        headers.insert(reqwest::header::AUTHORIZATION, crate::http::bearer(key));
    }
    headers.insert("apikey", apikey);
    headers
}

/// The longest delay the store's functions take, in seconds (12 hours).
const MAX_DELAY_SECONDS: u64 = 43_200;

/// A delay in whole seconds for the store, rounded up (a retry is never looked for early) and
/// kept between `min` and what the store takes.
fn delay_seconds(delay: Duration, min: u64) -> u64 {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    seconds.clamp(min, MAX_DELAY_SECONDS)
}

/// `record_form_submission`'s arguments for a form (a server's: without a source).
fn submission_args(submission: &FormSubmission, limits: OutreachLimits) -> serde_json::Value {
    json!({
        "p_idempotency_key": submission.idempotency_key,
        "p_customer_key": submission.customer_key,
        "p_phone_e164": submission.phone,
        "p_name": submission.name,
        "p_consent": true,
        "p_fields": submission.fields,
        // SQL integers: beyond them a cooldown or a limit means "forever" or "no limit".
        "p_cooldown_seconds": limits.cooldown.as_secs().min(i32::MAX as u64),
        "p_daily_limit": limits.daily_limit.min(i32::MAX as u32),
    })
}

fn looks_like_jwt(key: &str) -> bool {
    key.starts_with("eyJ") && key.split('.').count() == 3
}

fn transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", crate::http::describe(error))
}

impl SessionStore for PostgrestStore {
    async fn record_inbound(
        &self,
        messages: &[InboundMessage],
    ) -> Result<Vec<RecordedMessage>, StoreError> {
        self.call(
            "record_inbound_messages",
            &json!({ "p_messages": messages }),
        )
        .await
    }

    async fn record_webhook_content(
        &self,
        content: WebhookContent<'_>,
    ) -> Result<RecordedWebhook, StoreError> {
        let args = json!({
            "p_messages": content.messages,
            "p_statuses": content.statuses,
            "p_opt_outs": content.opt_outs,
            "p_echoes": content.echoes,
            "p_user_id_changes": content.user_id_changes,
            "p_unprocessed": content.unprocessed,
        });
        self.call("record_webhook", &args).await
    }

    async fn record_form_submission(
        &self,
        submission: &FormSubmission,
        limits: OutreachLimits,
    ) -> Result<RecordedSubmission, StoreError> {
        let args = submission_args(submission, limits);
        self.call("record_form_submission", &args).await
    }

    async fn record_browser_form_submission(
        &self,
        submission: &FormSubmission,
        limits: OutreachLimits,
        source: &SourceLimit,
    ) -> Result<BrowserRecording, StoreError> {
        let mut args = submission_args(submission, limits);
        args["p_source_hash"] = json!(source.source_hash);
        args["p_source_limit"] = json!(source.per_hour.min(i32::MAX as u32));
        let answer: serde_json::Value = self.call("record_form_submission", &args).await?;
        if answer["status"] == "limited" {
            let seconds = answer["retry_after_seconds"].as_u64().ok_or_else(|| {
                StoreError::Unexpected(anyhow::anyhow!(
                    "a limited form without retry_after_seconds: {answer}"
                ))
            })?;
            return Ok(BrowserRecording::Limited {
                retry_after: Duration::from_secs(seconds),
            });
        }
        serde_json::from_value(answer)
            .context("reading record_form_submission's answer")
            .map(BrowserRecording::Recorded)
            .map_err(StoreError::Unexpected)
    }

    #[tracing::instrument(name = "store.session", skip_all, fields(customer = %customer.masked()))]
    async fn session(&self, customer: &CustomerKey) -> Result<Option<Session>, StoreError> {
        let request = self
            .builder(format!("{}/chat_sessions", self.rest_url))
            .select("*")
            .eq("customer_key", customer.as_str());
        let mut rows: Vec<Session> = self.send(request).await?;
        Ok(rows.pop())
    }

    async fn claim_turn(
        &self,
        customer: &CustomerKey,
        lease: Duration,
        max_attempts: u32,
    ) -> Result<TurnClaim, StoreError> {
        let args = json!({
            "p_customer_key": customer,
            "p_lease_seconds": lease.as_secs().max(1),
            "p_max_attempts": max_attempts.clamp(1, i32::MAX as u32),
        });
        self.call("claim_turn", &args).await
    }

    async fn attach_chat(
        &self,
        customer: &CustomerKey,
        chat: &ChatId,
        expected: Option<&ChatId>,
        end_reason: Option<&str>,
    ) -> Result<ChatAttachment, StoreError> {
        let args = json!({
            "p_customer_key": customer,
            "p_chat_id": chat,
            "p_expected_chat_id": expected,
            "p_end_reason": end_reason,
        });
        self.call("attach_chat", &args).await
    }

    async fn save_turn_replies(
        &self,
        turn: TurnId,
        chat: &ChatId,
        replies: &[String],
    ) -> Result<bool, StoreError> {
        let args = json!({ "p_turn_id": turn, "p_chat_id": chat, "p_replies": replies });
        self.call("save_turn_replies", &args).await
    }

    async fn save_transcript(
        &self,
        turn: TurnId,
        message: &crate::domain::MessageId,
        transcript: &str,
    ) -> Result<bool, StoreError> {
        let args = json!({ "p_turn_id": turn, "p_wamid": message, "p_transcript": transcript });
        self.call("save_transcript", &args).await
    }

    async fn record_sent_reply(
        &self,
        turn: TurnId,
        parts: &[OutboundMessage],
    ) -> Result<(), StoreError> {
        let _: serde_json::Value = self
            .call(
                "record_sent_reply",
                &json!({ "p_turn_id": turn, "p_message": parts }),
            )
            .await?;
        Ok(())
    }

    async fn complete_turn(
        &self,
        turn: TurnId,
        customer: &CustomerKey,
        chat: Option<&ChatId>,
        sent: &[OutboundMessage],
    ) -> Result<TurnCompletion, StoreError> {
        let args = json!({
            "p_turn_id": turn,
            "p_customer_key": customer,
            "p_chat_id": chat,
            "p_outbound": sent,
        });
        self.call("complete_turn", &args).await
    }

    async fn fail_turn(
        &self,
        turn: TurnId,
        reason: &str,
        retry: TurnRetry,
    ) -> Result<TurnFailure, StoreError> {
        let args = match retry {
            TurnRetry::No => json!({ "p_turn_id": turn, "p_reason": reason, "p_retry": false }),
            TurnRetry::After {
                delay,
                count_attempt,
            } => json!({
                "p_turn_id": turn,
                "p_reason": reason,
                "p_retry": true,
                "p_retry_in_seconds": delay_seconds(delay, 0),
                "p_count_attempt": count_attempt,
            }),
        };
        self.call("fail_turn", &args).await
    }

    async fn set_opt_out(
        &self,
        customer: &CustomerKey,
        opted_out: bool,
    ) -> Result<bool, StoreError> {
        #[derive(serde::Deserialize)]
        struct Changed {
            changed: bool,
        }
        let args = json!({ "p_customer_key": customer, "p_opted_out": opted_out });
        let answer: Changed = self.call("set_opt_out", &args).await?;
        Ok(answer.changed)
    }

    async fn form_submission(
        &self,
        id: SubmissionId,
    ) -> Result<Option<StoredSubmission>, StoreError> {
        let request = self
            .builder(format!("{}/form_submissions", self.rest_url))
            .select(
                "id,customer_key,phone_e164,name,fields,status,outcome_reason,chat_id,created_at",
            )
            .eq("id", id.to_string());
        let mut rows: Vec<StoredSubmission> = self.send(request).await?;
        Ok(rows.pop())
    }

    async fn complete_form_submission(
        &self,
        id: SubmissionId,
        chat: &ChatId,
        sent: &[OutboundMessage],
    ) -> Result<(), StoreError> {
        let args = json!({ "p_submission_id": id, "p_chat_id": chat, "p_outbound": sent });
        let _: serde_json::Value = self.call("complete_form_submission", &args).await?;
        Ok(())
    }

    async fn fail_form_submission(&self, id: SubmissionId, reason: &str) -> Result<(), StoreError> {
        let args = json!({ "p_submission_id": id, "p_reason": reason });
        let _: bool = self.call("fail_form_submission", &args).await?;
        Ok(())
    }

    async fn defer_form_submission(
        &self,
        id: SubmissionId,
        reason: &str,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        let args = json!({
            "p_id": id,
            "p_reason": reason,
            "p_retry_in_seconds": delay_seconds(delay, 0),
        });
        self.call("defer_form_submission", &args).await
    }

    async fn sweep_stranded_work(&self, grace: Duration) -> Result<StrandedWork, StoreError> {
        #[derive(serde::Deserialize)]
        struct Found {
            turns: Vec<CustomerKey>,
            submissions: Vec<FoundSubmission>,
            gave_up: GaveUp,
            #[serde(default)]
            staff_messages: Vec<FoundStaffMessage>,
        }
        #[derive(serde::Deserialize)]
        struct FoundStaffMessage {
            id: i64,
            customer_key: CustomerKey,
        }
        #[derive(serde::Deserialize)]
        struct FoundSubmission {
            submission_id: SubmissionId,
            customer_key: CustomerKey,
        }
        #[derive(serde::Deserialize)]
        struct GaveUp {
            messages: u64,
            submissions: u64,
        }
        // Below a second the same work would be found by the next sweep at once.
        let args = json!({ "p_grace_seconds": delay_seconds(grace, 1) });
        let found: Found = self.call("sweep_stranded_work", &args).await?;
        Ok(StrandedWork {
            staff_messages: found
                .staff_messages
                .into_iter()
                .map(|s| (s.id, s.customer_key))
                .collect(),
            turns: found.turns,
            submissions: found
                .submissions
                .into_iter()
                .map(|s| (s.submission_id, s.customer_key))
                .collect(),
            gave_up_messages: found.gave_up.messages,
            gave_up_submissions: found.gave_up.submissions,
        })
    }

    async fn skip_form_submission(
        &self,
        id: SubmissionId,
        reason: OutcomeReason,
    ) -> Result<bool, StoreError> {
        let args = json!({ "p_submission_id": id, "p_reason": reason });
        self.call("skip_form_submission", &args).await
    }

    async fn record_delivery_statuses(
        &self,
        statuses: &[DeliveryUpdate],
    ) -> Result<Vec<DeliveryOutcome>, StoreError> {
        self.call(
            "record_delivery_statuses",
            &json!({ "p_statuses": statuses }),
        )
        .await
    }

    async fn pause_conversation(
        &self,
        customer: &CustomerKey,
        minutes: Option<u32>,
        reason: Option<&str>,
        by: Option<&str>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let args = json!({
            "p_customer_key": customer,
            "p_minutes": minutes.map(pause_minutes),
            "p_reason": reason,
            "p_by": by,
        });
        let answer: PausedUntil = self.call("pause_conversation", &args).await?;
        Ok(answer.paused_until)
    }

    async fn resume_conversation(
        &self,
        customer: &CustomerKey,
        by: Option<&str>,
    ) -> Result<bool, StoreError> {
        #[derive(serde::Deserialize)]
        struct Resumed {
            resumed: bool,
        }
        let args = json!({ "p_customer_key": customer, "p_by": by });
        let answer: Resumed = self.call("resume_conversation", &args).await?;
        Ok(answer.resumed)
    }

    async fn request_human(
        &self,
        customer: &CustomerKey,
        minutes: Option<u32>,
        reason: Option<&str>,
        by: &str,
    ) -> Result<DateTime<Utc>, StoreError> {
        let args = json!({
            "p_customer_key": customer,
            "p_minutes": minutes.map(pause_minutes),
            "p_reason": reason,
            "p_by": by,
        });
        let answer: PausedUntil = self.call("record_human_request", &args).await?;
        Ok(answer.paused_until)
    }

    async fn hold_turn(&self, turn: TurnId, customer: &CustomerKey) -> Result<bool, StoreError> {
        let args = json!({ "p_turn_id": turn, "p_customer_key": customer });
        let answer: Completed = self.call("hold_turn", &args).await?;
        Ok(answer.completed)
    }

    async fn claim_staff_message(&self, id: i64) -> Result<StaffClaim, StoreError> {
        self.call("claim_staff_message", &json!({ "p_id": id }))
            .await
    }

    async fn complete_staff_message(
        &self,
        id: i64,
        sent: &[OutboundMessage],
    ) -> Result<bool, StoreError> {
        let args = json!({ "p_id": id, "p_outbound": sent });
        let answer: Completed = self.call("complete_staff_message", &args).await?;
        Ok(answer.completed)
    }

    async fn refuse_staff_message(
        &self,
        id: i64,
        reason: &str,
        refused: bool,
    ) -> Result<bool, StoreError> {
        let args = json!({ "p_id": id, "p_reason": reason, "p_refused": refused });
        self.call("refuse_staff_message", &args).await
    }

    async fn release_staff_message(
        &self,
        id: i64,
        reason: &str,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        let args = json!({
            "p_id": id,
            "p_reason": reason,
            "p_retry_in_seconds": delay_seconds(delay, 0),
        });
        self.call("release_staff_message", &args).await
    }

    async fn record_chat_event(&self, event: &ChatEvent) -> Result<ChatEventRecorded, StoreError> {
        let args = json!({
            "p_event": event.kind.as_str(),
            "p_chat_id": event.chat_id,
            "p_ended_at": event.ended_at,
            "p_reason": event.reason,
            "p_analysis": event.analysis,
        });
        self.call("record_chat_event", &args).await
    }

    async fn outcome_for_hook(
        &self,
        chat: &ChatId,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let answer: serde_json::Value = self
            .call("outcome_for_hook", &json!({ "p_chat_id": chat }))
            .await?;
        Ok(Some(answer).filter(|outcome| !outcome.is_null()))
    }
}

#[derive(serde::Deserialize)]
struct PausedUntil {
    paused_until: DateTime<Utc>,
}

#[derive(serde::Deserialize)]
struct Completed {
    completed: bool,
}

/// The longest pause the store takes, in minutes (a year).
const MAX_PAUSE_MINUTES: u32 = 525_600;

/// A pause in whole minutes the store takes: at least one, at most a year.
fn pause_minutes(minutes: u32) -> u32 {
    minutes.clamp(1, MAX_PAUSE_MINUTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_keys_go_as_apikey_and_bearer_and_secret_keys_only_as_apikey() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2ln";
        let headers = auth_headers(jwt);
        assert_eq!(headers["apikey"], jwt);
        assert_eq!(headers["authorization"], format!("Bearer {jwt}").as_str());
        assert!(headers["apikey"].is_sensitive());

        let headers = auth_headers("sb_secret_abc123");
        assert_eq!(headers["apikey"], "sb_secret_abc123");
        assert!(headers.get("authorization").is_none());
    }

    #[test]
    fn delays_go_in_whole_seconds_rounded_up_within_what_the_store_takes() {
        assert_eq!(delay_seconds(Duration::ZERO, 0), 0);
        assert_eq!(delay_seconds(Duration::ZERO, 1), 1);
        assert_eq!(delay_seconds(Duration::from_millis(1), 0), 1);
        assert_eq!(delay_seconds(Duration::from_millis(2_500), 0), 3);
        assert_eq!(delay_seconds(Duration::from_secs(600), 0), 600);
        assert_eq!(delay_seconds(Duration::from_secs(86_400), 0), 43_200);
    }

    #[test]
    fn debug_output_does_not_carry_the_key() {
        let config = StoreConfig {
            rest_url: "http://127.0.0.1:1/api".into(),
            service_role_key: "sb_secret_do_not_print".into(),
            request_timeout: Duration::from_secs(1),
        };
        let store = PostgrestStore::new(&config, crate::http::client());
        assert!(!format!("{store:?}").contains("do_not_print"));
    }
}
