//! Why a job failed, by what should happen next.

use std::fmt;
use std::time::Duration;

/// What a failure means for the messages and the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// It may pass (a 5xx, a rate limit, a timeout): the job runs again on the retry schedule,
    /// no sooner than `not_before` when the service said so.
    Transient { not_before: Option<Duration> },
    /// The whole account fails (a token, a permission, billing): not the message's fault. Its
    /// messages keep waiting without the attempt counting, the job retries on the schedule, and
    /// an alarm names the problem.
    AccountWide(AccountProblem),
    /// A retry cannot fix it: the messages are marked failed with the reason.
    Permanent,
}

impl FailureCause {
    /// The name of the cause in metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Transient { .. } => "transient",
            Self::AccountWide(_) => "account_wide",
            Self::Permanent => "permanent",
        }
    }

    pub fn is_retried(&self) -> bool {
        !matches!(self, Self::Permanent)
    }
}

/// A failure that hits every customer at once until a person fixes the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountProblem {
    /// Graph 190: the access token expired or was revoked.
    WhatsAppToken,
    /// Graph 3, 10, 200–299, 131005, 100/33: the token may not do this, or not for this number.
    WhatsAppPermission,
    /// Retell 401: the API key was refused.
    RetellKey,
    /// Retell 402: the account must pay.
    RetellBilling,
    /// The store refused the service key or its role (401/403).
    StoreKey,
    /// The transcription API refused its key (401/403): no voice note can be heard.
    TranscriptionKey,
    /// The transcription account must pay (402, OpenAI's 429 `insufficient_quota`).
    TranscriptionBilling,
}

impl AccountProblem {
    /// Its name in metrics, logs and the runbook (docs/operations.md).
    pub fn name(&self) -> &'static str {
        match self {
            Self::WhatsAppToken => "whatsapp_token",
            Self::WhatsAppPermission => "whatsapp_permission",
            Self::RetellKey => "retell_key",
            Self::RetellBilling => "retell_billing",
            Self::StoreKey => "store_key",
            Self::TranscriptionKey => "transcription_key",
            Self::TranscriptionBilling => "transcription_billing",
        }
    }
}

impl fmt::Display for AccountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
