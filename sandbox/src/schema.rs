//! Request validation for the stand-ins of Retell, of Meta's Graph API and of an OpenAI-compatible
//! transcription API: the schemas of the operations we call, extracted from the official specs by `scripts/extract-api-schemas.py` into
//! `sandbox/specs/*.json` (so that nothing here needs the specs themselves), checked with the
//! `jsonschema` crate.
//!
//! The stored schemas are standard JSON Schema (draft 2020-12). The script writes into them what
//! the specs leave implicit and the real APIs enforce: an object schema that declares `properties`
//! rejects any other field (the APIs answer 400 to unknown fields), the branches of an `allOf`
//! are read as one object (a field declared by one branch is known to all of them), and the
//! OpenAPI 3.0 forms (`nullable`, boolean `exclusiveMinimum`) are rewritten; see the top of the
//! script. Nothing here decides what is valid: this module compiles each schema once and words
//! the crate's errors as [`SchemaViolation`]s (when no alternative of a `oneOf` matches, those of
//! the closest one, the alternative the body was meant to be).
//!
//! The stored schemas differ from the specs where the specs contradict their own examples; each
//! difference is listed in [`ApiSpec::patches`] (and explained in the script).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The JSON Schema dialect of the stored schemas (their `dialect`).
const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// One way an instance does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// A JSON pointer to the offending value, like `/template/components/0/type` (`""` is the
    /// whole document).
    pub path: String,
    pub message: String,
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for SchemaViolation {}

/// Checks `instance` against `schema` (JSON Schema 2020-12); on failure, every violation found.
/// Compiles `schema` on every call: for the request of an operation, use
/// [`Operation::validate_request`], which compiles it once.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), Vec<SchemaViolation>> {
    check(&compile(schema), instance)
}

/// Panics on a schema that is not valid JSON Schema 2020-12 (ours are checked by the tests).
fn compile(schema: &Value) -> Validator {
    jsonschema::draft202012::options()
        // As the real APIs: `format` is documentation (and "url", "int32" are no 2020-12 formats).
        .should_validate_formats(false)
        .build(schema)
        .unwrap_or_else(|e| panic!("sandbox/specs: not a JSON Schema 2020-12: {e}"))
}

fn check(validator: &Validator, instance: &Value) -> Result<(), Vec<SchemaViolation>> {
    let found = violations(validator.iter_errors(instance));
    if found.is_empty() { Ok(()) } else { Err(found) }
}

/// The crate's errors as violations, in a stable order (by where they are).
fn violations<'i, E: Borrow<ValidationError<'i>>>(
    errors: impl IntoIterator<Item = E>,
) -> Vec<SchemaViolation> {
    let mut groups: Vec<Vec<SchemaViolation>> = errors
        .into_iter()
        .map(|error| {
            let mut group = Vec::new();
            describe(error.borrow(), &mut group);
            group
        })
        .collect();
    groups.sort_by(|a, b| a.first().map(key).cmp(&b.first().map(key)));
    // Schemas applying to the same value often report the same thing (an unknown field): once
    // is enough.
    let mut found: Vec<SchemaViolation> = Vec::new();
    for violation in groups.into_iter().flatten() {
        if !found.contains(&violation) {
            found.push(violation);
        }
    }
    found
}

fn key(v: &SchemaViolation) -> (&str, &str) {
    (&v.path, &v.message)
}

fn describe(error: &ValidationError<'_>, out: &mut Vec<SchemaViolation>) {
    let path = error.instance_path().as_str().to_owned();
    let message = match error.kind() {
        ValidationErrorKind::OneOfNotValid { context } => {
            return none_matches("oneOf", context, path, out);
        }
        ValidationErrorKind::AnyOf { context } => return none_matches("anyOf", context, path, out),
        ValidationErrorKind::OneOfMultipleValid { context } => {
            let passing: Vec<String> = (0..context.len())
                .filter(|&i| context[i].is_empty())
                .map(|i| format!("#{i}"))
                .collect();
            format!(
                "matches {} of the oneOf alternatives ({}), expected exactly one",
                passing.len(),
                passing.join(", ")
            )
        }
        // Not the whole object or array in the message: the path says which it is.
        _ => match error.instance().as_ref() {
            Value::Object(_) => error.masked_with("the object").to_string(),
            Value::Array(_) => error.masked_with("the array").to_string(),
            _ => error.to_string(),
        },
    };
    out.push(SchemaViolation { path, message });
}

/// No alternative matches: the violations of the closest one, the one the instance was meant to
/// match (its errors are not that it is another kind of thing).
fn none_matches(
    keyword: &str,
    alternatives: &[Vec<ValidationError<'static>>],
    path: String,
    out: &mut Vec<SchemaViolation>,
) {
    let closest = (0..alternatives.len())
        .min_by_key(|&i| (mismatches(&alternatives[i], &path), alternatives[i].len()));
    let Some(closest) = closest else { return };
    if alternatives.len() > 1 {
        let message = format!(
            "matches none of the {} {keyword} alternatives; the closest, #{closest}, fails with:",
            alternatives.len()
        );
        out.push(SchemaViolation { path, message });
    }
    out.extend(violations(&alternatives[closest]));
}

/// The errors that say the instance at `path` is another kind of thing than an alternative
/// describes: of another type, or with another value in one of its fields that the alternatives
/// fix to tell themselves apart (`type`, `role`).
fn mismatches(errors: &[ValidationError<'_>], path: &str) -> usize {
    let is_field = |at: &str| {
        at.strip_prefix(path)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| !name.contains('/'))
    };
    errors
        .iter()
        .filter(|e| {
            let at = e.instance_path().as_str();
            match e.kind() {
                ValidationErrorKind::Type { .. } => at == path,
                ValidationErrorKind::Enum { .. } | ValidationErrorKind::Constant { .. } => {
                    is_field(at)
                }
                _ => false,
            }
        })
        .count()
}

/// The operations of one API, as extracted from its official OpenAPI spec.
#[derive(Debug, Deserialize)]
pub struct ApiSpec {
    source: String,
    dialect: String,
    #[serde(default)]
    patches: Vec<String>,
    operations: BTreeMap<String, Operation>,
    #[serde(default)]
    request_examples: Map<String, Value>,
    #[serde(default)]
    webhook_examples: Map<String, Value>,
    /// Named component schemas a stand-in checks its own answers against (OpenAI only).
    #[serde(default)]
    schemas: BTreeMap<String, Value>,
}

/// One operation: its request body schema and the schema of each response (`None`: no JSON body).
#[derive(Debug, Deserialize)]
pub struct Operation {
    /// `POST`, `GET`, `PATCH`, ...
    pub method: String,
    /// As the spec writes it, like `/end-chat/{chat_id}`.
    pub path: String,
    pub request: Option<Value>,
    /// By status code, like `"201"`.
    pub responses: BTreeMap<String, Option<Value>>,
    /// `request`, compiled on first use.
    #[serde(skip)]
    request_validator: OnceLock<Option<Validator>>,
    /// `responses`, compiled on first use.
    #[serde(skip)]
    response_validators: OnceLock<BTreeMap<String, Validator>>,
}

impl ApiSpec {
    /// Retell: `createChat`, `createChatCompletion`, `getChat`, `endChat`.
    pub fn retell() -> &'static ApiSpec {
        static SPEC: OnceLock<ApiSpec> = OnceLock::new();
        SPEC.get_or_init(|| Self::parse(include_str!("../specs/retell.json")))
    }

    /// The WhatsApp Cloud API: `sendMessage`, and `webhook` (the payloads Meta posts to us).
    pub fn whatsapp() -> &'static ApiSpec {
        static SPEC: OnceLock<ApiSpec> = OnceLock::new();
        SPEC.get_or_init(|| Self::parse(include_str!("../specs/whatsapp.json")))
    }

    /// OpenAI's audio transcription, which OpenAI-compatible servers serve: `createTranscription`
    /// (its `request` is the schema of the multipart form's fields, the file as a string), and
    /// the schemas `CreateTranscriptionResponseJson` and `ErrorResponse`.
    pub fn openai() -> &'static ApiSpec {
        static SPEC: OnceLock<ApiSpec> = OnceLock::new();
        SPEC.get_or_init(|| Self::parse(include_str!("../specs/openai.json")))
    }

    fn parse(json: &str) -> ApiSpec {
        let spec: ApiSpec = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("sandbox/specs: invalid JSON: {e}"));
        assert_eq!(
            spec.dialect, DIALECT,
            "{}: schemas of another dialect; regenerate sandbox/specs",
            spec.source
        );
        spec
    }

    /// The spec file and version the schemas come from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the stored schemas deliberately differ from the spec, and why.
    pub fn patches(&self) -> &[String] {
        &self.patches
    }

    /// Panics when the spec has no such operation (or it was not extracted).
    pub fn operation(&self, operation_id: &str) -> &Operation {
        self.operations.get(operation_id).unwrap_or_else(|| {
            panic!(
                "{}: no operation `{operation_id}` in sandbox/specs (have: {})",
                self.source,
                self.operations
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// The spec's named examples of the request to send a message (WhatsApp only).
    pub fn request_examples(&self) -> &Map<String, Value> {
        &self.request_examples
    }

    /// The spec's named examples of webhook payloads (WhatsApp only).
    pub fn webhook_examples(&self) -> &Map<String, Value> {
        &self.webhook_examples
    }

    /// A named component schema (OpenAI only); panics when it was not extracted.
    pub fn schema(&self, name: &str) -> &Value {
        self.schemas.get(name).unwrap_or_else(|| {
            panic!(
                "{}: no schema `{name}` in sandbox/specs (have: {})",
                self.source,
                self.schemas.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

impl Operation {
    /// Checks a request body; an operation without a request body accepts only none (`null`).
    pub fn validate_request(&self, body: &Value) -> Result<(), Vec<SchemaViolation>> {
        let validator = self
            .request_validator
            .get_or_init(|| self.request.as_ref().map(compile));
        match validator {
            Some(validator) => check(validator, body),
            None if body.is_null() => Ok(()),
            None => Err(vec![SchemaViolation {
                path: String::new(),
                message: "this operation takes no request body".into(),
            }]),
        }
    }

    /// The schema of the JSON body of a `status` response, if the spec gives one.
    pub fn response(&self, status: u16) -> Option<&Value> {
        self.responses.get(&status.to_string())?.as_ref()
    }

    /// Checks the JSON body of a `status` response, as a stand-in answers it (a status the spec
    /// gives no JSON body for is a violation: the stand-in would answer what the API does not).
    pub fn validate_response(&self, status: u16, body: &Value) -> Result<(), Vec<SchemaViolation>> {
        let validators = self.response_validators.get_or_init(|| {
            self.responses
                .iter()
                .filter_map(|(status, schema)| Some((status.clone(), compile(schema.as_ref()?))))
                .collect()
        });
        match validators.get(&status.to_string()) {
            Some(validator) => check(validator, body),
            None => Err(vec![SchemaViolation {
                path: String::new(),
                message: format!("the spec gives no JSON body for a {status} answer"),
            }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strings(found: &[SchemaViolation]) -> Vec<String> {
        found.iter().map(ToString::to_string).collect()
    }

    /// Every schema the specs hold: each request and response of each operation.
    fn stored_schemas() -> Vec<(String, &'static Value)> {
        let mut all = Vec::new();
        for spec in [ApiSpec::retell(), ApiSpec::whatsapp(), ApiSpec::openai()] {
            for (name, schema) in &spec.schemas {
                all.push((name.clone(), schema));
            }
            for (id, operation) in &spec.operations {
                if let Some(request) = &operation.request {
                    all.push((format!("{id} request"), request));
                }
                for (status, response) in &operation.responses {
                    if let Some(response) = response {
                        all.push((format!("{id} {status}"), response));
                    }
                }
            }
        }
        all
    }

    /// Calls `visit` with every schema in `schema` (itself included) and its JSON pointer, but
    /// not those under a `not`.
    fn walk(schema: &Value, at: &str, visit: &mut dyn FnMut(&Map<String, Value>, &str)) {
        let Value::Object(schema) = schema else {
            return;
        };
        visit(schema, at);
        for (keyword, value) in schema {
            let at = format!("{at}/{keyword}");
            match (keyword.as_str(), value) {
                ("properties", Value::Object(properties)) => {
                    for (name, property) in properties {
                        walk(property, &format!("{at}/{name}"), visit);
                    }
                }
                ("items" | "additionalProperties", one) => walk(one, &at, visit),
                ("allOf" | "oneOf" | "anyOf", Value::Array(branches)) => {
                    for (i, branch) in branches.iter().enumerate() {
                        walk(branch, &format!("{at}/{i}"), visit);
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn stored_schemas_are_standard_json_schema() {
        let all = stored_schemas();
        assert!(all.len() > 20, "{} schemas", all.len());
        for (name, schema) in all {
            if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
                panic!("{name}: not a JSON Schema 2020-12: {e}");
            }
            walk(schema, "", &mut |schema, at| {
                for openapi in ["nullable", "discriminator"] {
                    assert!(!schema.contains_key(openapi), "{name}: {openapi} at {at}");
                }
                // Our rule, written out by the script: an object that declares its fields
                // rejects any other (the real APIs answer 400 to unknown fields).
                if schema.contains_key("properties") {
                    assert!(
                        schema.contains_key("additionalProperties"),
                        "{name}: {at} declares properties and accepts any other field"
                    );
                }
            });
        }
    }

    #[test]
    fn display() {
        let v = SchemaViolation {
            path: "/text".into(),
            message: "unknown field `bodyy`".into(),
        };
        assert_eq!(v.to_string(), "/text: unknown field `bodyy`");
    }

    #[test]
    fn retell_create_chat() {
        let retell = ApiSpec::retell();
        let op = retell.operation("createChat");
        assert_eq!(
            (op.method.as_str(), op.path.as_str()),
            ("POST", "/create-chat")
        );
        let good = json!({
            "agent_id": "agent_123",
            "agent_version": 2,
            "metadata": {"whatsapp": {"wa_id": "16505551234"}},
            "retell_llm_dynamic_variables": {"customer_name": "Ana", "n": 1},
        });
        op.validate_request(&good).unwrap();
        op.validate_request(&json!({"agent_id": "agent_123"}))
            .unwrap();
        let found = op
            .validate_request(&json!({"agent_idd": "agent_123"}))
            .unwrap_err();
        assert_eq!(
            strings(&found),
            [
                r#": "agent_id" is a required property"#,
                ": Additional properties are not allowed ('agent_idd' was unexpected)",
            ]
        );
        let found = op.validate_request(&json!({"agent_id": ""})).unwrap_err();
        assert_eq!(
            strings(&found),
            [r#"/agent_id: "" is shorter than 1 character"#]
        );
        let found = op
            .validate_request(&json!({"agent_id": "a", "agent_version": "2"}))
            .unwrap_err();
        assert_eq!(
            strings(&found),
            [r#"/agent_version: "2" is not of type "integer""#]
        );
        // The whole object or array is not repeated in the message.
        let found = op
            .validate_request(&json!({"agent_id": "a", "metadata": [1, 2]}))
            .unwrap_err();
        assert_eq!(
            strings(&found),
            [r#"/metadata: the array is not of type "object""#]
        );
    }

    #[test]
    fn retell_operations_and_responses() {
        let retell = ApiSpec::retell();
        assert!(
            retell.source().starts_with("retell-openapi"),
            "{}",
            retell.source()
        );
        let completion = retell.operation("createChatCompletion");
        completion
            .validate_request(&json!({"chat_id": "c1", "content": "hola"}))
            .unwrap();
        assert!(
            completion
                .validate_request(&json!({"chat_id": "c1", "message": "hola"}))
                .is_err()
        );
        let end = retell.operation("endChat");
        assert_eq!(
            (end.method.as_str(), end.path.as_str()),
            ("PATCH", "/end-chat/{chat_id}")
        );
        end.validate_request(&Value::Null).unwrap();
        let found = end.validate_request(&json!({})).unwrap_err();
        assert_eq!(strings(&found), [": this operation takes no request body"]);
        assert_eq!(end.response(204), None);
        let get = retell.operation("getChat");
        assert_eq!(get.method, "GET");
        let error = get.response(400).expect("the error response schema");
        validate(error, &json!({"status": "error", "message": "bad"})).unwrap();
        assert!(validate(error, &json!({"status": "ok"})).is_err());
        assert!(get.response(200).is_some());
    }

    /// OpenAPI 3.0's `nullable: true` (Retell's spec), as a type list with "null".
    #[test]
    fn retell_nullable_fields_take_null() {
        let chat = ApiSpec::retell()
            .operation("getChat")
            .response(200)
            .expect("a 200 body");
        let with = |end_timestamp: Value| {
            json!({"chat_id": "c1", "agent_id": "a", "chat_status": "ended",
                   "end_timestamp": end_timestamp, "version": null})
        };
        validate(chat, &with(json!(null))).unwrap();
        validate(chat, &with(json!(1_700_000_000_000_u64))).unwrap();
        let found = validate(chat, &with(json!("yesterday"))).unwrap_err();
        assert_eq!(
            strings(&found),
            [r#"/end_timestamp: "yesterday" is not of types "null", "integer""#]
        );
        // Not every field is nullable.
        let mut chat_id_null = with(json!(null));
        chat_id_null["chat_id"] = Value::Null;
        assert!(validate(chat, &chat_id_null).is_err());
    }

    #[test]
    fn retell_completion_messages_differ_by_role() {
        let completion = ApiSpec::retell().operation("createChatCompletion");
        let schema = completion.response(201).expect("a 201 body");
        let agent =
            json!({"message_id": "m1", "role": "agent", "content": "Hola", "created_timestamp": 1});
        let tool = json!({"message_id": "m2", "role": "tool_call_invocation", "tool_call_id": "t",
                          "name": "lookup", "arguments": "{}", "created_timestamp": 2});
        validate(schema, &json!({"messages": [agent, tool]})).unwrap();
        // The violations of the alternative the role selects, not of all five.
        let found = validate(
            schema,
            &json!({"messages": [{"message_id": "m1", "role": "agent", "created_timestamp": 1}]}),
        )
        .unwrap_err();
        assert_eq!(
            strings(&found),
            [
                "/messages/0: matches none of the 5 oneOf alternatives; the closest, #0, fails with:",
                r#"/messages/0: "content" is a required property"#,
            ]
        );
        // A field of a tool call is unknown in an agent's message.
        let mut agent_with_tool_field = agent.clone();
        agent_with_tool_field["tool_call_id"] = json!("t");
        let found = validate(schema, &json!({"messages": [agent_with_tool_field]})).unwrap_err();
        assert_eq!(
            found.last().map(ToString::to_string).as_deref(),
            Some(
                "/messages/0: Additional properties are not allowed ('tool_call_id' was unexpected)"
            )
        );
    }

    #[test]
    #[should_panic(expected = "no operation `createCall`")]
    fn unknown_operation_panics() {
        ApiSpec::retell().operation("createCall");
    }

    /// The spec's examples of sendMessage that its own schema rejects (so would a stand-in), and
    /// why. The bridge sends none of these kinds of message.
    const BAD_SEND_EXAMPLES: &[(&str, &str)] = &[
        (
            "Send Document Message by ID",
            "/document: Additional properties are not allowed ('caption', 'filename' were",
        ),
        (
            "Send Document Message by URL",
            "/document: Additional properties are not allowed ('caption' was",
        ),
        (
            "Send Reply to Document Message by ID",
            "/document: Additional properties are not allowed ('caption', 'filename' were",
        ),
        (
            "Send Reply to Document Message by URL",
            "/document: Additional properties are not allowed ('caption' was",
        ),
        (
            "Send Video Message by ID",
            "/video: Additional properties are not allowed ('caption' was",
        ),
        (
            "Send Video Message by URL",
            "/video: Additional properties are not allowed ('caption' was",
        ),
        (
            "Send Reply to Video Message by ID",
            "/video: Additional properties are not allowed ('caption' was",
        ),
        (
            "Send Reply to Video Message by URL",
            "/video: Additional properties are not allowed ('caption' was",
        ),
        (
            "Send Location Message",
            r#"/location/latitude: 37.758056 is not of type "string""#,
        ),
        (
            "Send Reply to Location Message",
            r#"/location/latitude: 37.758056 is not of type "string""#,
        ),
        (
            "Send Multi-Product Message",
            r#"/interactive/header/type: "<HEADER_TYPE>" is not one of"#,
        ),
        (
            "Send Order Details Message",
            r#"/interactive/type: "order_details" is not one of"#,
        ),
        (
            "Send Order Status Message",
            r#"/interactive/type: "order_status" is not one of"#,
        ),
        (
            "Send Reply to List Message",
            r#": "type" is a required property"#,
        ),
        // A template, but its quick-reply buttons have `text: true` / `false` (booleans: a
        // YAML 1.1 "Yes"/"No" in the source, most likely) where a string is wanted.
        (
            "Send Sample Issue Resolution Template",
            r#"/template/components/1/parameters/0/text: true is not of type "string""#,
        ),
    ];

    /// The examples that send a text, a template or a read receipt.
    fn sends_text_template_or_read_receipt(body: &Value) -> bool {
        let kind = body.get("type").and_then(Value::as_str);
        matches!(kind, Some("text" | "template"))
            || (kind.is_none() && body.get("text").is_some())
            || body.get("status").and_then(Value::as_str) == Some("read")
    }

    #[test]
    fn whatsapp_send_examples() {
        let whatsapp = ApiSpec::whatsapp();
        let send = whatsapp.operation("sendMessage");
        assert_eq!(
            (send.method.as_str(), send.path.as_str()),
            ("POST", "/{Version}/{Phone-Number-ID}/messages")
        );
        let examples = whatsapp.request_examples();
        let ours: Vec<&String> = examples
            .iter()
            .filter(|(_, body)| sends_text_template_or_read_receipt(body))
            .map(|(name, _)| name)
            .collect();
        for name in [
            "Send Text Message",
            "Send Text Message with Preview URL",
            "Send Reply to Text Message",
            "Send Test Message",
            "Send Message Template Text",
            "Send Message Template Media",
            "Send Catalog Template Message",
            "Send Flow Template Message",
            "Send typing indicator and read receipt",
        ] {
            assert!(
                ours.iter().any(|n| *n == name),
                "no example {name:?} in {ours:?}"
            );
        }
        for (name, body) in examples {
            let found = strings(&send.validate_request(body).err().unwrap_or_default());
            match BAD_SEND_EXAMPLES.iter().find(|(bad, _)| bad == name) {
                None => assert!(found.is_empty(), "{name}: {found:#?}"),
                Some((_, expected)) => {
                    assert!(
                        found.iter().any(|f| f.starts_with(expected)),
                        "{name}: {found:#?}"
                    );
                }
            }
        }
        let bad_of_ours: Vec<&str> = BAD_SEND_EXAMPLES
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| ours.iter().any(|n| n == name))
            .collect();
        assert_eq!(bad_of_ours, ["Send Sample Issue Resolution Template"]);
    }

    fn text(text: Value) -> Value {
        json!({"messaging_product": "whatsapp", "recipient_type": "individual",
               "to": "16505551234", "type": "text", "text": text})
    }

    /// The spec builds each message as `allOf: [BaseMessageProperties, its own]`: the two are
    /// one object, whose fields are those of both, and no other (not those of another message).
    #[test]
    fn whatsapp_message_fields_are_those_of_both_all_of_branches() {
        let send = ApiSpec::whatsapp().operation("sendMessage");
        let mut reply = text(json!({"body": "hola"}));
        reply["context"] = json!({"message_id": "wamid.X"});
        send.validate_request(&reply).unwrap();
        let mut unknown = reply.clone();
        unknown["priority"] = json!("high");
        let found = send.validate_request(&unknown).unwrap_err();
        assert_eq!(
            strings(&found),
            [
                ": matches none of the 12 oneOf alternatives; the closest, #0, fails with:",
                ": Additional properties are not allowed ('priority' was unexpected)",
            ]
        );
        // A field of an image message, next to a text.
        let mut other_kind = reply.clone();
        other_kind["image"] = json!({"id": "1"});
        let found = send.validate_request(&other_kind).unwrap_err();
        assert_eq!(
            found.last().map(ToString::to_string).as_deref(),
            Some(": Additional properties are not allowed ('image' was unexpected)"),
            "{found:#?}"
        );
    }

    #[test]
    fn whatsapp_send_rejects_mistakes() {
        let send = ApiSpec::whatsapp().operation("sendMessage");
        send.validate_request(&text(json!({"body": "hola", "preview_url": false})))
            .unwrap();
        let found = send
            .validate_request(&text(json!({"bodyy": "hola"})))
            .unwrap_err();
        assert_eq!(
            strings(&found),
            [
                ": matches none of the 12 oneOf alternatives; the closest, #0, fails with:",
                "/text: Additional properties are not allowed ('bodyy' was unexpected)",
            ]
        );

        let template = |components: Value| {
            json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "template",
                   "template": {"name": "reminder", "language": {"code": "es"}, "components": components}})
        };
        let body = |parameter: Value| json!([{"type": "body", "parameters": [parameter]}]);
        send.validate_request(&template(body(json!({"type": "text", "text": "Ana"}))))
            .unwrap();
        let found = send
            .validate_request(&template(body(json!({"type": "text", "txt": "Ana"}))))
            .unwrap_err();
        assert_eq!(
            strings(&found)[2..],
            [
                "/template/components/0/parameters/0: Additional properties are not allowed ('txt' was unexpected)",
                "/template/components/0/parameters/0: matches none of the 6 oneOf alternatives; the closest, #4, fails with:",
                r#"/template/components/0/parameters/0: "text" is a required property"#,
            ],
            "{found:#?}"
        );
        let found = send
            .validate_request(&template(json!([{"type": "footer"}])))
            .unwrap_err();
        assert_eq!(
            found.last().map(ToString::to_string).as_deref(),
            Some(
                r#"/template/components/0/type: "footer" is not one of "header", "body" or "button""#
            ),
            "{found:#?}"
        );

        let read =
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"});
        send.validate_request(&read).unwrap();
        let mut typing = read.clone();
        typing["typing_indicator"] = json!({"type": "text"});
        send.validate_request(&typing).unwrap();
        typing["typing_indicator"] = json!({"type": "audio"});
        assert_eq!(
            send.validate_request(&typing)
                .unwrap_err()
                .last()
                .map(ToString::to_string)
                .as_deref(),
            Some(r#"/typing_indicator/type: "audio" is not one of "text""#)
        );
        assert!(
            send.validate_request(&json!({"messaging_product": "whatsapp", "status": "read"}))
                .is_err()
        );
        assert!(send.validate_request(&json!({"messaging_product": "whatsapp", "status": "delivered", "message_id": "wamid.X"})).is_err());
    }

    /// The webhook examples the spec's payload schema rejects, and why.
    const BAD_WEBHOOK_EXAMPLES: &[(&str, &str)] = &[
        // Groups: `timestamp` is a string (schema: integer), participants' `input`/`wa_id` are
        // numbers (schema: strings), and `field` is "group_participants_update" (schema:
        // "group_participant_update").
        (
            "Group Create Message",
            "/entry/0/changes/0/value: matches none of the 4 oneOf",
        ),
        (
            "Group Remove Participants",
            r#"/entry/0/changes/0/field: "group_participants_update" is not one of"#,
        ),
        (
            "Group Settings Update",
            "/entry/0/changes/0/value: matches none of the 4 oneOf",
        ),
    ];

    #[test]
    fn whatsapp_webhook_examples() {
        let whatsapp = ApiSpec::whatsapp();
        let webhook = whatsapp.operation("webhook");
        assert_eq!(
            (webhook.method.as_str(), webhook.path.as_str()),
            ("POST", "/whatsapp/webhooks")
        );
        let examples = whatsapp.webhook_examples();
        for name in [
            "Text Message",
            "Reaction Message",
            "Image Message",
            "Interactive Button Reply Message",
        ] {
            assert!(
                examples.contains_key(name),
                "no example {name:?} in {:?}",
                examples.keys().collect::<Vec<_>>()
            );
        }
        for (name, payload) in examples {
            assert_eq!(payload["object"], "whatsapp_business_account", "{name}");
            let found = strings(&webhook.validate_request(payload).err().unwrap_or_default());
            match BAD_WEBHOOK_EXAMPLES.iter().find(|(bad, _)| bad == name) {
                None => assert!(found.is_empty(), "{name}: {found:#?}"),
                Some((_, expected)) => {
                    assert!(
                        found.iter().any(|f| f.starts_with(expected)),
                        "{name}: {found:#?}"
                    );
                }
            }
        }
        // A message as Meta sends it, with a field Meta does not send.
        let mut text = examples["Text Message"].clone();
        text["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["bodyy"] = json!("x");
        let found = webhook.validate_request(&text).unwrap_err();
        assert_eq!(
            found.last().map(ToString::to_string).as_deref(),
            Some(
                "/entry/0/changes/0/value/messages/0/text: Additional properties are not allowed ('bodyy' was unexpected)"
            ),
            "{found:#?}"
        );
    }

    /// A username user's business-scoped user id goes in `recipient`, in place of `to`.
    #[test]
    fn whatsapp_send_to_a_recipient_user_id() {
        let send = ApiSpec::whatsapp().operation("sendMessage");
        let mut reply = text(json!({"body": "hola"}));
        reply.as_object_mut().unwrap().remove("to");
        reply["recipient"] = json!("US.13491208655302741918");
        send.validate_request(&reply).unwrap();
        reply.as_object_mut().unwrap().remove("recipient");
        let found = strings(&send.validate_request(&reply).unwrap_err());
        assert!(
            found
                .iter()
                .any(|f| f.contains("\"to\" is a required property")),
            "{found:#?}"
        );
    }

    /// The form fields of a transcription request, as the stand-in reads them from the multipart
    /// body (the file as a string).
    #[test]
    fn openai_transcription_request() {
        let openai = ApiSpec::openai();
        assert!(
            openai.source().starts_with("openai-audio-transcriptions"),
            "{}",
            openai.source()
        );
        let op = openai.operation("createTranscription");
        assert_eq!(
            (op.method.as_str(), op.path.as_str()),
            ("POST", "/audio/transcriptions")
        );
        let good = json!({"file": "voice-note.ogg", "model": "whisper-1", "language": "es",
                          "response_format": "json", "temperature": 0});
        op.validate_request(&good).unwrap();
        // Any model name: OpenAI-compatible servers have their own.
        op.validate_request(&json!({"file": "a.ogg", "model": "whisper-large-v3"}))
            .unwrap();
        let found = op
            .validate_request(&json!({"file": "a.ogg", "model": "whisper-1", "lang": "es"}))
            .unwrap_err();
        assert_eq!(
            strings(&found),
            [": Additional properties are not allowed ('lang' was unexpected)"]
        );
        let found = op
            .validate_request(&json!({"model": "whisper-1"}))
            .unwrap_err();
        assert_eq!(strings(&found), [r#": "file" is a required property"#]);
        let found = op
            .validate_request(
                &json!({"file": "a.ogg", "model": "whisper-1", "response_format": "xml"}),
            )
            .unwrap_err();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].path, "/response_format");
    }

    #[test]
    fn openai_transcription_answers() {
        let openai = ApiSpec::openai();
        let json_answer = openai.schema("CreateTranscriptionResponseJson");
        validate(
            json_answer,
            &json!({"text": "hola", "usage": {"type": "duration", "seconds": 3}}),
        )
        .unwrap();
        assert!(validate(json_answer, &json!({"txt": "hola"})).is_err());
        assert!(
            validate(
                json_answer,
                &json!({"text": "hola", "usage": {"type": "duration"}})
            )
            .is_err()
        );
        // The operation's 200 is any of the formats; the json one among them.
        let op = openai.operation("createTranscription");
        validate(
            op.response(200).expect("a 200 body"),
            &json!({"text": "hola"}),
        )
        .unwrap();
        let error = json!({"error": {"message": "Invalid API key", "type": "invalid_request_error",
                                     "param": null, "code": "invalid_api_key"}});
        validate(openai.schema("ErrorResponse"), &error).unwrap();
        for status in [400, 401, 413, 429, 500] {
            let schema = op.response(status).expect("an error body");
            validate(schema, &error).unwrap();
            assert!(
                validate(schema, &json!({"message": "no"})).is_err(),
                "{status}"
            );
        }
        assert!(
            openai
                .patches()
                .iter()
                .any(|p| p.contains("TooManyRequests")),
            "{:#?}",
            openai.patches()
        );
    }

    #[test]
    fn whatsapp_source_and_patches() {
        let whatsapp = ApiSpec::whatsapp();
        assert!(whatsapp.source().contains("v23.0"), "{}", whatsapp.source());
        assert!(
            whatsapp
                .patches()
                .iter()
                .any(|p| p.contains("MarkMessageRequestPayload")),
            "{:#?}",
            whatsapp.patches()
        );
        assert!(ApiSpec::retell().patches().is_empty());
        assert!(ApiSpec::retell().webhook_examples().is_empty());
        assert!(ApiSpec::retell().request_examples().is_empty());
    }
}
