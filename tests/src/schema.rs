//! Request validation for the stand-ins of Retell and of Meta's Graph API: a strict validator for
//! the subset of JSON Schema that OpenAPI 3.0/3.1 specs use, and the schemas of the operations we
//! call, extracted from the official specs by `scripts/extract-api-schemas.py` into
//! `tests/specs/*.json` (so that nothing here needs the specs themselves).
//!
//! Strict means what the real APIs do: an object schema that declares `properties` and says
//! nothing about `additionalProperties` rejects any other field (the APIs answer 400 to unknown
//! fields). The branches of an `allOf` are read as one object: a field declared by one branch is
//! known to all of them (the specs build every message as `allOf: [base properties, own]`).
//!
//! Supported: `type` (a name or a list; `integer` is a JSON number written without fraction or
//! exponent), `nullable`, `enum`, `const`, `properties`, `required`, `additionalProperties`,
//! `minProperties`/`maxProperties`, `items`, `minItems`/`maxItems`, `uniqueItems`,
//! `minLength`/`maxLength` (in characters), `minimum`/`maximum`, `exclusiveMinimum`/
//! `exclusiveMaximum` (3.0 and 3.1 forms), `oneOf`, `anyOf`, `allOf`, `not`, `discriminator` (to
//! pick the branch whose errors to report). Ignored: `pattern` (the `regex` crate is not a
//! dependency of this package; no stored schema has a pattern), `patternProperties` (such an
//! object accepts any field), `format`, and every unknown keyword.
//!
//! The stored schemas differ from the specs where the specs contradict their own examples; each
//! difference is listed in [`ApiSpec::patches`] (and explained in the script).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

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

/// Checks `instance` against `schema`; on failure, every violation found.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), Vec<SchemaViolation>> {
    let mut out = Vec::new();
    check(schema, instance, "", &Siblings::default(), &mut out);
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// What the schemas applying to the same object next to this one declare (the other branches of
/// an `allOf`, the parent of a `oneOf` branch): their fields are not unknown here.
#[derive(Clone, Default)]
struct Siblings<'s> {
    names: Vec<&'s str>,
    /// A sibling accepts fields it does not declare, so no field is unknown.
    open: bool,
}

fn violation(path: &str, message: impl Into<String>) -> SchemaViolation {
    SchemaViolation {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn child(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn check<'s>(
    schema: &'s Value,
    instance: &Value,
    path: &str,
    siblings: &Siblings<'s>,
    out: &mut Vec<SchemaViolation>,
) {
    let schema = match schema {
        Value::Object(schema) => schema,
        Value::Bool(false) => return out.push(violation(path, "no value is allowed here")),
        _ => return,
    };
    if instance.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(expected) = schema.get("type")
        && !type_matches(expected, instance)
    {
        let expected = match expected {
            Value::Array(names) => names.iter().map(name_of).collect::<Vec<_>>().join(" or "),
            other => name_of(other),
        };
        return out.push(violation(
            path,
            format!("expected {expected}, found {}", kind(instance)),
        ));
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(instance)
    {
        out.push(violation(
            path,
            format!("{instance} is not one of {}", list(allowed)),
        ));
    }
    if let Some(constant) = schema.get("const")
        && constant != instance
    {
        out.push(violation(path, format!("{instance} is not {constant}")));
    }
    match instance {
        Value::String(text) => check_string(schema, text, path, out),
        Value::Number(number) => check_number(schema, number, path, out),
        Value::Array(items) => check_array(schema, items, path, out),
        Value::Object(fields) => check_object(schema, fields, path, siblings, out),
        Value::Null | Value::Bool(_) => {}
    }
    check_composition(schema, instance, path, siblings, out);
}

fn type_matches(expected: &Value, instance: &Value) -> bool {
    match expected {
        Value::String(name) => match name.as_str() {
            "null" => instance.is_null(),
            "boolean" => instance.is_boolean(),
            "integer" => instance.is_i64() || instance.is_u64(),
            "number" => instance.is_number(),
            "string" => instance.is_string(),
            "array" => instance.is_array(),
            "object" => instance.is_object(),
            _ => true,
        },
        Value::Array(names) => names.iter().any(|name| type_matches(name, instance)),
        _ => true,
    }
}

fn name_of(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn kind(instance: &Value) -> &'static str {
    match instance {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn list<'v>(values: impl IntoIterator<Item = &'v Value>) -> String {
    let values: Vec<String> = values.into_iter().map(Value::to_string).collect();
    format!("[{}]", values.join(", "))
}

fn limit(schema: &Map<String, Value>, keyword: &str) -> Option<u64> {
    schema.get(keyword).and_then(Value::as_u64)
}

fn check_string(
    schema: &Map<String, Value>,
    text: &str,
    path: &str,
    out: &mut Vec<SchemaViolation>,
) {
    let length = text.chars().count() as u64;
    if let Some(min) = limit(schema, "minLength")
        && length < min
    {
        out.push(violation(
            path,
            format!("{length} characters, fewer than minLength {min}"),
        ));
    }
    if let Some(max) = limit(schema, "maxLength")
        && length > max
    {
        out.push(violation(
            path,
            format!("{length} characters, more than maxLength {max}"),
        ));
    }
}

fn check_number(
    schema: &Map<String, Value>,
    number: &serde_json::Number,
    path: &str,
    out: &mut Vec<SchemaViolation>,
) {
    let Some(n) = number.as_f64() else { return };
    let bound = |keyword: &str| schema.get(keyword).and_then(Value::as_f64);
    // OpenAPI 3.0: `exclusiveMinimum: true` qualifies `minimum`; 3.1: it is a bound itself.
    let exclusive = |keyword: &str| schema.get(keyword) == Some(&Value::Bool(true));
    if let Some(min) = bound("minimum") {
        if exclusive("exclusiveMinimum") && n <= min {
            out.push(violation(
                path,
                format!("{number} is not greater than {min}"),
            ));
        } else if n < min {
            out.push(violation(
                path,
                format!("{number} is less than minimum {min}"),
            ));
        }
    }
    if let Some(max) = bound("maximum") {
        if exclusive("exclusiveMaximum") && n >= max {
            out.push(violation(path, format!("{number} is not less than {max}")));
        } else if n > max {
            out.push(violation(
                path,
                format!("{number} is greater than maximum {max}"),
            ));
        }
    }
    if let Some(min) = bound("exclusiveMinimum")
        && n <= min
    {
        out.push(violation(
            path,
            format!("{number} is not greater than {min}"),
        ));
    }
    if let Some(max) = bound("exclusiveMaximum")
        && n >= max
    {
        out.push(violation(path, format!("{number} is not less than {max}")));
    }
}

fn check_array(
    schema: &Map<String, Value>,
    items: &[Value],
    path: &str,
    out: &mut Vec<SchemaViolation>,
) {
    let count = items.len() as u64;
    if let Some(min) = limit(schema, "minItems")
        && count < min
    {
        out.push(violation(
            path,
            format!("{count} items, fewer than minItems {min}"),
        ));
    }
    if let Some(max) = limit(schema, "maxItems")
        && count > max
    {
        out.push(violation(
            path,
            format!("{count} items, more than maxItems {max}"),
        ));
    }
    if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                out.push(violation(
                    &child(path, &i.to_string()),
                    "duplicate item (uniqueItems)",
                ));
            }
        }
    }
    if let Some(item_schema @ (Value::Object(_) | Value::Bool(_))) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            let at = child(path, &i.to_string());
            check(item_schema, item, &at, &Siblings::default(), out);
        }
    }
}

fn check_object<'s>(
    schema: &'s Map<String, Value>,
    fields: &Map<String, Value>,
    path: &str,
    siblings: &Siblings<'s>,
    out: &mut Vec<SchemaViolation>,
) {
    let count = fields.len() as u64;
    if let Some(min) = limit(schema, "minProperties")
        && count < min
    {
        out.push(violation(
            path,
            format!("{count} fields, fewer than minProperties {min}"),
        ));
    }
    if let Some(max) = limit(schema, "maxProperties")
        && count > max
    {
        out.push(violation(
            path,
            format!("{count} fields, more than maxProperties {max}"),
        ));
    }
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                out.push(violation(path, format!("missing required field `{name}`")));
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    if let Some(properties) = properties {
        for (name, property) in properties {
            if let Some(value) = fields.get(name) {
                check(
                    property,
                    value,
                    &child(path, name),
                    &Siblings::default(),
                    out,
                );
            }
        }
    }

    if siblings.open || schema.contains_key("patternProperties") {
        return;
    }
    let additional = schema.get("additionalProperties");
    let strict = match additional {
        None => properties.is_some(),
        Some(Value::Bool(allowed)) => !allowed,
        Some(_) => false,
    };
    let extra_schema = additional.filter(|a| a.as_object().is_some_and(|a| !a.is_empty()));
    if !strict && extra_schema.is_none() {
        return;
    }
    let mut known = siblings.names.clone();
    declared_names(schema, &mut known);
    for (name, value) in fields {
        if known.contains(&name.as_str()) {
            continue;
        }
        match extra_schema {
            Some(extra) => check(extra, value, &child(path, name), &Siblings::default(), out),
            None => out.push(violation(path, format!("unknown field `{name}`"))),
        }
    }
}

/// The fields `schema` declares, itself or through its `allOf`/`oneOf`/`anyOf` branches.
fn declared_names<'s>(schema: &'s Map<String, Value>, into: &mut Vec<&'s str>) {
    if let Some(Value::Object(properties)) = schema.get("properties") {
        into.extend(properties.keys().map(String::as_str));
    }
    for keyword in ["allOf", "oneOf", "anyOf"] {
        for branch in branches(schema, keyword) {
            if let Value::Object(branch) = branch {
                declared_names(branch, into);
            }
        }
    }
}

fn branches<'s>(schema: &'s Map<String, Value>, keyword: &str) -> &'s [Value] {
    schema
        .get(keyword)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Accepts fields it does not declare (so its `allOf` siblings must as well).
fn is_open(schema: &Map<String, Value>) -> bool {
    matches!(
        schema.get("additionalProperties"),
        Some(Value::Bool(true) | Value::Object(_))
    )
}

fn check_composition<'s>(
    schema: &'s Map<String, Value>,
    instance: &Value,
    path: &str,
    siblings: &Siblings<'s>,
    out: &mut Vec<SchemaViolation>,
) {
    let all_of = branches(schema, "allOf");
    let one_of = branches(schema, "oneOf");
    let any_of = branches(schema, "anyOf");
    if !all_of.is_empty() || !one_of.is_empty() || !any_of.is_empty() {
        // What every branch sees next to it: this schema's fields and those of all the allOf
        // branches (not the other branches of a oneOf/anyOf: those are alternatives).
        let mut inner = siblings.clone();
        if let Some(Value::Object(properties)) = schema.get("properties") {
            inner.names.extend(properties.keys().map(String::as_str));
        }
        inner.open |= is_open(schema);
        for branch in all_of.iter().filter_map(Value::as_object) {
            declared_names(branch, &mut inner.names);
            inner.open |= is_open(branch);
        }
        // Branches often report the same thing (each its unknown fields): once is enough.
        for found in outcomes(all_of, instance, path, &inner)
            .into_iter()
            .flatten()
        {
            if !out.contains(&found) {
                out.push(found);
            }
        }
        if !one_of.is_empty() {
            let results = outcomes(one_of, instance, path, &inner);
            let passing: Vec<usize> = (0..results.len())
                .filter(|&i| results[i].is_empty())
                .collect();
            match passing.len() {
                0 => report_best(schema, "oneOf", one_of, results, instance, path, out),
                1 => {}
                n => out.push(violation(
                    path,
                    format!(
                        "matches {n} of the oneOf alternatives ({}), expected exactly one",
                        passing
                            .iter()
                            .map(|i| format!("#{i}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
        if !any_of.is_empty() {
            let results = outcomes(any_of, instance, path, &inner);
            if results.iter().all(|r| !r.is_empty()) {
                report_best(schema, "anyOf", any_of, results, instance, path, out);
            }
        }
    }
    if let Some(not) = schema.get("not") {
        let mut found = Vec::new();
        let open = Siblings {
            names: Vec::new(),
            open: true,
        };
        check(not, instance, path, &open, &mut found);
        if found.is_empty() {
            out.push(violation(
                path,
                format!("matches the schema it must not match: {not}"),
            ));
        }
    }
}

fn outcomes<'s>(
    alternatives: &'s [Value],
    instance: &Value,
    path: &str,
    siblings: &Siblings<'s>,
) -> Vec<Vec<SchemaViolation>> {
    alternatives
        .iter()
        .map(|branch| {
            let mut found = Vec::new();
            check(branch, instance, path, siblings, &mut found);
            found
        })
        .collect()
}

/// No alternative matches: reports the violations of the one the instance was meant to match,
/// the one its discriminating field selects, else the closest.
fn report_best(
    schema: &Map<String, Value>,
    keyword: &str,
    alternatives: &[Value],
    mut results: Vec<Vec<SchemaViolation>>,
    instance: &Value,
    path: &str,
    out: &mut Vec<SchemaViolation>,
) {
    let property = discriminating_property(schema, alternatives, instance);
    let declared: Vec<Option<Vec<&Value>>> = alternatives
        .iter()
        .map(|branch| declared_values(branch, property))
        .collect();
    if let Some(value) = instance.get(property)
        && declared.iter().flatten().count() >= 2
    {
        let best = (0..alternatives.len())
            .filter(|&i| {
                declared[i]
                    .as_ref()
                    .is_some_and(|values| values.contains(&value))
            })
            .min_by_key(|&i| results[i].len());
        match best {
            Some(best) => out.append(&mut results[best]),
            None => out.push(violation(
                &child(path, property),
                format!(
                    "{value} selects none of the {keyword} alternatives, expected one of {}",
                    list(declared.iter().flatten().flatten().copied())
                ),
            )),
        }
        return;
    }
    // The closest: of the right type, then with the fewest violations.
    let wrong_type = |branch: &Value| {
        branch
            .get("type")
            .is_some_and(|t| !type_matches(t, instance))
            && !(instance.is_null() && branch.get("nullable") == Some(&Value::Bool(true)))
    };
    let closest =
        (0..results.len()).min_by_key(|&i| (wrong_type(&alternatives[i]), results[i].len()));
    let Some(best) = closest else { return };
    out.push(violation(
        path,
        format!(
            "matches none of the {} {keyword} alternatives; the closest, #{best}, fails with:",
            alternatives.len()
        ),
    ));
    out.append(&mut results[best]);
}

/// The field that tells the alternatives apart: the `discriminator`'s, else `type`, else another
/// field of the instance that several alternatives restrict to an `enum` or `const` (Retell's
/// messages differ by `role`).
fn discriminating_property<'s>(
    schema: &'s Map<String, Value>,
    alternatives: &'s [Value],
    instance: &Value,
) -> &'s str {
    let declared = schema
        .get("discriminator")
        .and_then(|d| d.get("propertyName"))
        .and_then(Value::as_str);
    if let Some(property) = declared {
        return property;
    }
    let mut names = Vec::new();
    for branch in alternatives {
        enumerated_properties(branch, &mut names);
    }
    names.sort_by_key(|name| (*name != "type", *name));
    names.dedup();
    let restricting = |name: &str| {
        alternatives
            .iter()
            .filter(|branch| declared_values(branch, name).is_some())
            .count()
    };
    names
        .into_iter()
        .find(|name| instance.get(*name).is_some() && restricting(name) >= 2)
        .unwrap_or("type")
}

/// The fields a branch restricts to an `enum` or a `const`, itself or through `allOf`.
fn enumerated_properties<'s>(branch: &'s Value, into: &mut Vec<&'s str>) {
    if let Some(Value::Object(properties)) = branch.get("properties") {
        for (name, property) in properties {
            if property.get("enum").is_some() || property.get("const").is_some() {
                into.push(name);
            }
        }
    }
    for part in branch
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        enumerated_properties(part, into);
    }
}

/// The values a branch allows for `property` (its `enum` or `const`), looking into `allOf`.
fn declared_values<'s>(branch: &'s Value, property: &str) -> Option<Vec<&'s Value>> {
    let declared = branch.get("properties").and_then(|p| p.get(property));
    if let Some(declared) = declared {
        if let Some(Value::Array(values)) = declared.get("enum") {
            return Some(values.iter().collect());
        }
        if let Some(value) = declared.get("const") {
            return Some(vec![value]);
        }
    }
    branch
        .get("allOf")
        .and_then(Value::as_array)?
        .iter()
        .rev()
        .find_map(|part| declared_values(part, property))
}

/// The operations of one API, as extracted from its official OpenAPI spec.
#[derive(Debug, Deserialize)]
pub struct ApiSpec {
    source: String,
    #[serde(default)]
    patches: Vec<String>,
    operations: BTreeMap<String, Operation>,
    #[serde(default)]
    request_examples: Map<String, Value>,
    #[serde(default)]
    webhook_examples: Map<String, Value>,
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

    fn parse(json: &str) -> ApiSpec {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("tests/specs: invalid JSON: {e}"))
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
                "{}: no operation `{operation_id}` in tests/specs (have: {})",
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
}

impl Operation {
    /// Checks a request body; an operation without a request body accepts only none (`null`).
    pub fn validate_request(&self, body: &Value) -> Result<(), Vec<SchemaViolation>> {
        match &self.request {
            Some(schema) => validate(schema, body),
            None if body.is_null() => Ok(()),
            None => Err(vec![violation("", "this operation takes no request body")]),
        }
    }

    /// The schema of the JSON body of a `status` response, if the spec gives one.
    pub fn response(&self, status: u16) -> Option<&Value> {
        self.responses.get(&status.to_string())?.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(schema: &Value, instance: &Value) -> Vec<String> {
        match validate(schema, instance) {
            Ok(()) => Vec::new(),
            Err(found) => found.iter().map(ToString::to_string).collect(),
        }
    }

    #[track_caller]
    fn passes(schema: &Value, instance: &Value) {
        let found = errors(schema, instance);
        assert!(found.is_empty(), "{instance} should pass, got {found:#?}");
    }

    #[track_caller]
    fn fails_with(schema: &Value, instance: &Value, expected: &[&str]) {
        assert_eq!(errors(schema, instance), expected, "for {instance}");
    }

    #[test]
    fn types() {
        for (name, good, bad) in [
            ("string", json!("x"), json!(1)),
            ("integer", json!(-3), json!(3.5)),
            ("number", json!(3.5), json!("3.5")),
            ("boolean", json!(false), json!("false")),
            ("object", json!({}), json!([])),
            ("array", json!([]), json!({})),
        ] {
            let schema = json!({ "type": name });
            passes(&schema, &good);
            assert_eq!(errors(&schema, &bad).len(), 1, "{bad} is not {name}");
        }
        passes(&json!({"type": "number"}), &json!(7));
        passes(&json!({"type": "integer"}), &json!(u64::MAX));
        fails_with(
            &json!({"type": "integer"}),
            &json!(1.5),
            &[": expected integer, found number"],
        );
        fails_with(
            &json!({"type": "string"}),
            &json!(null),
            &[": expected string, found null"],
        );
        // OpenAPI 3.1 type lists.
        passes(&json!({"type": ["string", "null"]}), &json!(null));
        fails_with(
            &json!({"type": ["string", "null"]}),
            &json!(2),
            &[": expected string or null, found integer"],
        );
    }

    #[test]
    fn nullable() {
        let schema = json!({"type": "integer", "nullable": true, "minimum": 1});
        passes(&schema, &json!(null));
        passes(&schema, &json!(2));
        fails_with(&schema, &json!(0), &[": 0 is less than minimum 1"]);
        let schema = json!({"type": "integer", "nullable": false});
        fails_with(&schema, &json!(null), &[": expected integer, found null"]);
    }

    #[test]
    fn enum_and_const() {
        let schema = json!({"type": "string", "enum": ["individual", "group"]});
        passes(&schema, &json!("group"));
        fails_with(
            &schema,
            &json!("person"),
            &[r#": "person" is not one of ["individual", "group"]"#],
        );
        fails_with(&json!({"const": 1}), &json!(2), &[": 2 is not 1"]);
    }

    #[test]
    fn required_field_missing() {
        let schema = json!({
            "type": "object",
            "required": ["to", "text"],
            "properties": {"to": {"type": "string"}, "text": {"type": "string"}},
        });
        passes(&schema, &json!({"to": "1", "text": "hi"}));
        fails_with(
            &schema,
            &json!({"text": "hi"}),
            &[": missing required field `to`"],
        );
    }

    #[test]
    fn unknown_fields() {
        let declared = json!({"type": "object", "properties": {"body": {"type": "string"}}});
        passes(&declared, &json!({"body": "hi"}));
        fails_with(
            &declared,
            &json!({"bodyy": "hi"}),
            &[": unknown field `bodyy`"],
        );
        let closed = json!({"type": "object", "additionalProperties": false});
        fails_with(&closed, &json!({"a": 1}), &[": unknown field `a`"]);
        // Allowed: additionalProperties true or {}, or nothing declared at all.
        for open in [
            json!({"type": "object", "properties": {"a": {}}, "additionalProperties": true}),
            json!({"type": "object", "properties": {"a": {}}, "additionalProperties": {}}),
            json!({"type": "object"}),
            json!({}),
        ] {
            passes(&open, &json!({"a": 1, "b": [2], "c": {"d": null}}));
        }
        // A schema for the other fields.
        let map = json!({"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "string"}});
        passes(&map, &json!({"a": 1, "b": "x"}));
        fails_with(
            &map,
            &json!({"a": 1, "b": 2}),
            &["/b: expected string, found integer"],
        );
    }

    #[test]
    fn nested_paths_are_json_pointers() {
        let schema = json!({
            "type": "object",
            "properties": {
                "template": {"type": "object", "properties": {"components": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"type": {"enum": ["body"]}}},
                }}},
                "a/b~c": {"type": "string"},
            },
        });
        fails_with(
            &schema,
            &json!({"template": {"components": [{"type": "body"}, {"type": "x"}]}}),
            &[r#"/template/components/1/type: "x" is not one of ["body"]"#],
        );
        fails_with(
            &schema,
            &json!({"a/b~c": 1}),
            &["/a~1b~0c: expected string, found integer"],
        );
        let found = validate(&schema, &json!({"template": {"extra": 1}})).unwrap_err();
        assert_eq!(
            found,
            vec![SchemaViolation {
                path: "/template".into(),
                message: "unknown field `extra`".into(),
            }]
        );
    }

    #[test]
    fn string_lengths_count_characters() {
        let schema = json!({"type": "string", "minLength": 2, "maxLength": 3});
        passes(&schema, &json!("héé"));
        fails_with(
            &schema,
            &json!("é"),
            &[": 1 characters, fewer than minLength 2"],
        );
        fails_with(
            &schema,
            &json!("éééé"),
            &[": 4 characters, more than maxLength 3"],
        );
        // Not checked: patterns.
        passes(&json!({"type": "string", "pattern": "^a$"}), &json!("b"));
    }

    #[test]
    fn numeric_bounds() {
        let schema = json!({"type": "number", "minimum": 0, "maximum": 10});
        passes(&schema, &json!(0));
        passes(&schema, &json!(10.0));
        fails_with(&schema, &json!(-0.5), &[": -0.5 is less than minimum 0"]);
        fails_with(&schema, &json!(11), &[": 11 is greater than maximum 10"]);
        let exclusive30 = json!({"minimum": 0, "exclusiveMinimum": true});
        fails_with(&exclusive30, &json!(0), &[": 0 is not greater than 0"]);
        let exclusive31 = json!({"exclusiveMaximum": 5});
        passes(&exclusive31, &json!(4));
        fails_with(&exclusive31, &json!(5), &[": 5 is not less than 5"]);
    }

    #[test]
    fn arrays() {
        let schema =
            json!({"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}});
        passes(&schema, &json!(["a"]));
        fails_with(&schema, &json!([]), &[": 0 items, fewer than minItems 1"]);
        fails_with(
            &schema,
            &json!(["a", "b", "c"]),
            &[": 3 items, more than maxItems 2"],
        );
        fails_with(
            &schema,
            &json!(["a", 1]),
            &["/1: expected string, found integer"],
        );
        fails_with(
            &json!({"uniqueItems": true}),
            &json!([1, 2, 1]),
            &["/2: duplicate item (uniqueItems)"],
        );
    }

    #[test]
    fn all_of_branches_form_one_object() {
        let schema = json!({"allOf": [
            {"type": "object", "required": ["to"], "properties": {"to": {"type": "string"}}},
            {"type": "object", "additionalProperties": false, "required": ["text"],
             "properties": {"text": {"type": "object", "properties": {"body": {"type": "string"}}}}},
        ]});
        passes(&schema, &json!({"to": "1", "text": {"body": "hi"}}));
        fails_with(
            &schema,
            &json!({"to": "1", "text": {"body": "hi"}, "x": 1}),
            &[": unknown field `x`"],
        );
        fails_with(
            &schema,
            &json!({"text": {"body": 1}}),
            &[
                ": missing required field `to`",
                "/text/body: expected string, found integer",
            ],
        );
        // An open branch opens the object.
        let open = json!({"allOf": [
            {"type": "object", "properties": {"to": {}}},
            {"type": "object", "additionalProperties": true},
        ]});
        passes(&open, &json!({"to": 1, "x": 2}));
    }

    fn messages() -> Value {
        json!({"oneOf": [
            {"type": "object", "required": ["type", "text"], "properties": {
                "type": {"enum": ["text"]},
                "text": {"type": "object", "required": ["body"], "properties": {"body": {"type": "string"}}},
            }},
            {"type": "object", "required": ["type", "image"], "properties": {
                "type": {"enum": ["image"]},
                "image": {"type": "object", "properties": {"id": {"type": "string"}}},
            }},
            {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["read"]}}},
        ]})
    }

    #[test]
    fn one_of_reports_the_branch_the_type_selects() {
        let schema = messages();
        passes(&schema, &json!({"type": "text", "text": {"body": "hi"}}));
        passes(&schema, &json!({"type": "image", "image": {"id": "1"}}));
        passes(&schema, &json!({"status": "read"}));
        fails_with(
            &schema,
            &json!({"type": "image", "image": {"idd": "1"}}),
            &["/image: unknown field `idd`"],
        );
        fails_with(
            &schema,
            &json!({"type": "text", "text": {}}),
            &["/text: missing required field `body`"],
        );
        fails_with(
            &schema,
            &json!({"type": "video"}),
            &[
                r#"/type: "video" selects none of the oneOf alternatives, expected one of ["text", "image"]"#,
            ],
        );
        // Without the field, the closest branch.
        fails_with(
            &schema,
            &json!({"status": "sent"}),
            &[
                ": matches none of the 3 oneOf alternatives; the closest, #2, fails with:",
                r#"/status: "sent" is not one of ["read"]"#,
            ],
        );
        // The same through a discriminator on another field, with allOf branches.
        let schema = json!({
            "discriminator": {"propertyName": "kind"},
            "oneOf": [
                {"allOf": [{"properties": {"kind": {"enum": ["a"]}}}, {"required": ["a"]}]},
                {"allOf": [{"properties": {"kind": {"enum": ["b"]}}}, {"required": ["b"]}]},
            ],
        });
        fails_with(
            &schema,
            &json!({"kind": "b"}),
            &[": missing required field `b`"],
        );
    }

    #[test]
    fn one_of_wants_exactly_one() {
        let schema = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
        passes(&schema, &json!(1.5));
        fails_with(
            &schema,
            &json!(1),
            &[": matches 2 of the oneOf alternatives (#0, #1), expected exactly one"],
        );
    }

    #[test]
    fn one_of_branches_see_the_parent_fields() {
        let schema = json!({
            "type": "object",
            "properties": {"id": {"type": "string"}},
            "oneOf": [
                {"properties": {"a": {}}, "required": ["a"]},
                {"properties": {"b": {}}, "required": ["b"]},
            ],
        });
        passes(&schema, &json!({"id": "1", "a": 1}));
        fails_with(
            &schema,
            &json!({"id": "1", "a": 1, "c": 1}),
            &[
                ": unknown field `c`",
                ": matches none of the 2 oneOf alternatives; the closest, #0, fails with:",
                ": unknown field `c`",
            ],
        );
    }

    #[test]
    fn any_of_and_not() {
        let schema = json!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]});
        passes(&schema, &json!("x"));
        passes(&schema, &json!(3));
        fails_with(
            &schema,
            &json!(-1),
            &[
                ": matches none of the 2 anyOf alternatives; the closest, #1, fails with:",
                ": -1 is less than minimum 0",
            ],
        );
        let schema = json!({"type": "object", "not": {"required": ["contacts"]}});
        passes(&schema, &json!({"statuses": []}));
        assert_eq!(errors(&schema, &json!({"contacts": []})).len(), 1);
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
        let found: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                ": missing required field `agent_id`",
                ": unknown field `agent_idd`"
            ]
        );
        assert!(
            op.validate_request(&json!({"agent_id": ""})).is_err(),
            "minLength 1"
        );
        assert!(
            op.validate_request(&json!({"agent_id": "a", "agent_version": "2"}))
                .is_err()
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
        assert_eq!(end.response(204), None);
        let get = retell.operation("getChat");
        assert_eq!(get.method, "GET");
        let error = get.response(400).expect("the error response schema");
        validate(error, &json!({"status": "error", "message": "bad"})).unwrap();
        assert!(validate(error, &json!({"status": "ok"})).is_err());
        assert!(get.response(200).is_some());
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
        let found = validate(
            schema,
            &json!({"messages": [{"message_id": "m1", "role": "agent", "created_timestamp": 1}]}),
        )
        .unwrap_err();
        assert_eq!(
            found,
            vec![SchemaViolation {
                path: "/messages/0".into(),
                message: "missing required field `content`".into(),
            }]
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
            "/document: unknown field `caption`",
        ),
        (
            "Send Document Message by URL",
            "/document: unknown field `caption`",
        ),
        (
            "Send Reply to Document Message by ID",
            "/document: unknown field `caption`",
        ),
        (
            "Send Reply to Document Message by URL",
            "/document: unknown field `caption`",
        ),
        (
            "Send Video Message by ID",
            "/video: unknown field `caption`",
        ),
        (
            "Send Video Message by URL",
            "/video: unknown field `caption`",
        ),
        (
            "Send Reply to Video Message by ID",
            "/video: unknown field `caption`",
        ),
        (
            "Send Reply to Video Message by URL",
            "/video: unknown field `caption`",
        ),
        (
            "Send Location Message",
            "/location/latitude: expected string, found number",
        ),
        (
            "Send Reply to Location Message",
            "/location/latitude: expected string, found number",
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
            ": missing required field `type`",
        ),
        // A template, but its quick-reply buttons have `text: true` / `false` (booleans: a
        // YAML 1.1 "Yes"/"No" in the source, most likely) where a string is wanted.
        (
            "Send Sample Issue Resolution Template",
            "/template/components/1/parameters/0/text: expected string, found boolean",
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
            let found = send.validate_request(body).err().unwrap_or_default();
            let found: Vec<String> = found.iter().map(ToString::to_string).collect();
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

    #[test]
    fn whatsapp_send_rejects_mistakes() {
        let send = ApiSpec::whatsapp().operation("sendMessage");
        let text = |text: Value| {
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": "16505551234", "type": "text", "text": text})
        };
        send.validate_request(&text(json!({"body": "hola", "preview_url": false})))
            .unwrap();
        let found = send
            .validate_request(&text(json!({"bodyy": "hola"})))
            .unwrap_err();
        assert_eq!(
            found,
            vec![SchemaViolation {
                path: "/text".into(),
                message: "unknown field `bodyy`".into(),
            }]
        );
        let mut unknown = text(json!({"body": "hola"}));
        unknown["priority"] = json!("high");
        let found = send.validate_request(&unknown).unwrap_err();
        assert!(
            found
                .iter()
                .all(|v| v.message == "unknown field `priority`"),
            "{found:#?}"
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
        let found: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(
            found.contains(
                &"/template/components/0/parameters/0: missing required field `text`".to_owned()
            ),
            "{found:#?}"
        );
        let found = send
            .validate_request(&template(json!([{"type": "footer"}])))
            .unwrap_err();
        assert_eq!(found[0].path, "/template/components/0/type", "{found:#?}");

        let read =
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"});
        send.validate_request(&read).unwrap();
        let mut typing = read.clone();
        typing["typing_indicator"] = json!({"type": "text"});
        send.validate_request(&typing).unwrap();
        typing["typing_indicator"] = json!({"type": "audio"});
        assert!(send.validate_request(&typing).is_err());
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
            "/entry/0/changes/0/field: \"group_participants_update\"",
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
            let found = webhook.validate_request(payload).err().unwrap_or_default();
            let found: Vec<String> = found.iter().map(ToString::to_string).collect();
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
        assert!(webhook.validate_request(&text).is_err());
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
