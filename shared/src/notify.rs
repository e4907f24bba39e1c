//! Telling staff that a customer wants a person (the agent's `request_human`): the
//! [`StaffNotifier`] port, with an SNS adapter (the template's `StaffAlertTopic`, which mails
//! `StaffAlertEmail`) and an incoming-webhook adapter that posts `{"text": …}`, the body Slack's
//! and Teams' incoming webhooks (and most chat tools') take.
//!
//! The SNS client is built as the queue's is (`crate::queue::SqsQueue::from_config`): by hand,
//! without `aws_config::load`, on the process's one AWS HTTP client, at the first alert.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use aws_sdk_sns::error::DisplayErrorContext;
use chrono::{DateTime, Utc};
use url::Url;

use crate::aws::{http_client, role_config};
use crate::domain::CustomerKey;

/// What staff are told: who asked for a person, why, and until when the agent is quiet.
#[derive(Debug, Clone, PartialEq)]
pub struct StaffAlert {
    pub customer_key: CustomerKey,
    /// What the agent gave as the reason (the function's `reason` argument), if anything.
    pub reason: Option<String>,
    /// The customer's Retell chat.
    pub chat_id: Option<String>,
    /// When the pause ends by itself, as the store answered.
    pub paused_until: Option<DateTime<Utc>>,
}

impl StaffAlert {
    /// A subject line for e-mail: ASCII, one line, under SNS's 100 characters.
    pub fn subject(&self) -> String {
        format!(
            "WhatsApp: customer {} asks for a person",
            self.customer_key.masked()
        )
    }

    /// The alert as text: what a person needs to take over from the Supabase dashboard.
    pub fn text(&self) -> String {
        let mut text = format!(
            "The agent asked for a person for the WhatsApp customer {}.",
            self.customer_key
        );
        if let Some(reason) = self.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            text.push_str(&format!("\nReason: {}", reason.trim()));
        }
        match self.paused_until {
            Some(until) => text.push_str(&format!(
                "\nThe agent is paused until {} (UTC).",
                until.format("%Y-%m-%d %H:%M")
            )),
            None => text.push_str("\nThe agent is paused."),
        }
        if let Some(chat_id) = &self.chat_id {
            text.push_str(&format!("\nRetell chat: {chat_id}"));
        }
        text.push_str(
            "\nReply from the Supabase dashboard: insert a row into staff_messages \
             (customer_key, body); the conversation_transcript view shows the thread. \
             resume_conversation(customer_key) hands the customer back to the agent.",
        );
        text
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("the staff alert topic refused or missed the alert: {0}")]
    Sns(String),
    #[error("the staff alert webhook refused or missed the alert: {0}")]
    Webhook(String),
}

/// Tells staff that a customer asked for a person.
pub trait StaffNotifier: Send + Sync {
    fn notify(&self, alert: &StaffAlert) -> impl Future<Output = Result<(), NotifyError>> + Send;
}

/// Publishes alerts to an SNS topic (`STAFF_ALERT_TOPIC_ARN`).
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    /// Built at the first alert (shared by the clones), from `pending` when it is set.
    client: Arc<OnceLock<aws_sdk_sns::Client>>,
    pending: Option<aws_config::SdkConfig>,
    topic_arn: String,
}

impl SnsNotifier {
    /// A client for `topic_arn` in the region the ARN names (else `AWS_REGION`, else
    /// `us-east-1`), with the credentials Lambda hands over in the environment, and `endpoint`
    /// (`SNS_ENDPOINT_URL`, a local stand-in) when set. Nothing is sent, nor built, until the
    /// first alert.
    pub async fn new(topic_arn: &str, endpoint: Option<&Url>) -> SnsNotifier {
        let config = role_config(region_of_arn(topic_arn), endpoint.map(Url::as_str)).await;
        SnsNotifier {
            client: Arc::default(),
            pending: Some(config),
            topic_arn: topic_arn.to_owned(),
        }
    }

    /// A notifier on a client built elsewhere (the tests', pointed at a local SNS).
    pub fn from_client(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> SnsNotifier {
        SnsNotifier {
            client: Arc::new(OnceLock::from(client)),
            pending: None,
            topic_arn: topic_arn.into(),
        }
    }

    fn client(&self) -> &aws_sdk_sns::Client {
        self.client.get_or_init(|| {
            let config = self
                .pending
                .as_ref()
                .expect("a notifier without a client has its configuration");
            let config = aws_sdk_sns::config::Builder::from(config)
                .http_client(http_client())
                .build();
            aws_sdk_sns::Client::from_conf(config)
        })
    }
}

impl StaffNotifier for SnsNotifier {
    async fn notify(&self, alert: &StaffAlert) -> Result<(), NotifyError> {
        self.client()
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(alert.subject())
            .message(alert.text())
            .send()
            .await
            .map_err(|e| {
                NotifyError::Sns(format!("{}: {}", self.topic_arn, DisplayErrorContext(&e)))
            })?;
        Ok(())
    }
}

/// Posts alerts as `{"text": …}` to an incoming webhook (`STAFF_ALERT_WEBHOOK_URL`: Slack,
/// Teams, Google Chat, Mattermost, …).
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    http: reqwest::Client,
    url: Url,
}

impl WebhookNotifier {
    pub fn new(url: Url, http: reqwest::Client) -> WebhookNotifier {
        WebhookNotifier { http, url }
    }
}

impl StaffNotifier for WebhookNotifier {
    async fn notify(&self, alert: &StaffAlert) -> Result<(), NotifyError> {
        // The URL holds the webhook's credential: only its host reaches the error and the logs.
        let host = self.url.host_str().unwrap_or("?").to_owned();
        let response = self
            .http
            .post(self.url.clone())
            .timeout(std::time::Duration::from_secs(5))
            .json(&serde_json::json!({ "text": alert.text() }))
            .send()
            .await
            .map_err(|e| NotifyError::Webhook(format!("{host}: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(NotifyError::Webhook(format!("{host} answered {status}")));
        }
        Ok(())
    }
}

/// Every configured way of telling staff: the topic, the incoming webhook, both or neither.
/// Each is tried; the alert fails if any does.
#[derive(Debug, Clone, Default)]
pub struct StaffAlerts {
    pub sns: Option<SnsNotifier>,
    pub webhook: Option<WebhookNotifier>,
}

impl StaffAlerts {
    /// Whether any way of telling staff is configured.
    pub fn is_configured(&self) -> bool {
        self.sns.is_some() || self.webhook.is_some()
    }
}

impl StaffNotifier for StaffAlerts {
    async fn notify(&self, alert: &StaffAlert) -> Result<(), NotifyError> {
        let sns = match &self.sns {
            Some(sns) => sns.notify(alert).await,
            None => Ok(()),
        };
        let webhook = match &self.webhook {
            Some(webhook) => webhook.notify(alert).await,
            None => Ok(()),
        };
        sns.and(webhook)
    }
}

/// `us-east-1` in `arn:aws:sns:us-east-1:123456789012:staff-alerts`.
fn region_of_arn(arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(_partition), Some("sns"), Some(region)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!region.is_empty()).then(|| region.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> StaffAlert {
        StaffAlert {
            customer_key: CustomerKey::from_whatsapp_id("5215512345678").unwrap(),
            reason: Some("  quiere hablar con un asesor ".to_owned()),
            chat_id: Some("chat_1".to_owned()),
            paused_until: DateTime::from_timestamp(1_760_000_000, 0),
        }
    }

    #[test]
    fn the_alert_names_the_customer_the_reason_and_how_to_answer() {
        let text = alert().text();
        assert!(text.contains("525512345678"), "{text}");
        assert!(
            text.contains("Reason: quiere hablar con un asesor\n"),
            "{text}"
        );
        assert!(text.contains("2025-10-09 08:53"), "{text}");
        assert!(text.contains("staff_messages"), "{text}");
        let subject = alert().subject();
        assert!(subject.is_ascii() && subject.len() < 100, "{subject}");
        assert!(!subject.contains("525512345678"), "{subject}");
    }

    #[test]
    fn the_region_comes_from_the_topic_arn() {
        assert_eq!(
            region_of_arn("arn:aws:sns:eu-west-1:123456789012:staff").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_of_arn("arn:aws:sqs:eu-west-1:1:q"), None);
        assert_eq!(region_of_arn("staff"), None);
    }
}
