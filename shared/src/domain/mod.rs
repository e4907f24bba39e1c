//! Domain types: no HTTP, AWS or database types in here.

mod conversation;
mod customer_key;
mod failure;
mod form;
mod ids;

pub use conversation::*;
pub use customer_key::{CustomerKey, CustomerKeyError, PhoneNumber};
pub use failure::{AccountProblem, FailureCause};
pub use form::{
    AllowedFields, BrowserRecording, CustomerName, ExtraField, ExtraFieldError, FORM_OWN_FIELDS,
    FieldName, NameError, RESERVED_FIELDS, SourceLimit,
};
pub use ids::{ChatId, IdError, IdempotencyKey, MessageId, SubmissionId, TurnId};
pub use phonenumber::country::Id as CountryId;
