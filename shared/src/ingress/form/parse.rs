//! The body as sent: its content type (JSON or urlencoded, UTF-8) and its syntax, giving the
//! fields in order for [`super::fields`] to check.

use serde_json::Value;

use super::FormError;
use super::fields::ValidForm;
use crate::domain::{AllowedFields, CountryId};

/// The field a browser's bot-check token comes in: the name Turnstile's widget gives its hidden
/// input. It is never one of the form's fields (a field name has no `-`).
pub const BOT_CHECK_FIELD: &str = "cf-turnstile-response";

/// The bot-check token in the body, if it has the field (its value as text, empty if it is not
/// text): `None` when the body cannot be read as its `Content-Type` says or lacks the field.
/// The first of repeated fields wins.
pub(super) fn bot_check_token(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let fields = Encoding::of(content_type).ok()?.parse(body).ok()?;
    let (_, value) = fields
        .into_iter()
        .find(|(name, _)| name == BOT_CHECK_FIELD)?;
    Some(match value {
        Input::Text(token) => token,
        _ => String::new(),
    })
}

/// The content type, the body's syntax and the fields, checked as `POST /form` checks them
/// (without the credentials and the `Idempotency-Key`): the form, with only the extra fields
/// `allowed` names, or why it is refused.
pub fn read_form(
    content_type: Option<&str>,
    body: &[u8],
    default_country: CountryId,
    allowed: &AllowedFields,
) -> Result<ValidForm, FormError> {
    Encoding::of(content_type)?.read(body, default_country, allowed)
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Json,
    UrlEncoded,
}

impl Encoding {
    /// `application/json` or `application/x-www-form-urlencoded`, with parameters; a charset,
    /// if named, must be UTF-8.
    pub(super) fn of(content_type: Option<&str>) -> Result<Encoding, FormError> {
        let Some(content_type) = content_type else {
            return Err(FormError::UnsupportedMediaType(
                "no Content-Type".to_owned(),
            ));
        };
        let mut parts = content_type.split(';');
        let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let encoding = match media_type.as_str() {
            "application/json" => Encoding::Json,
            "application/x-www-form-urlencoded" => Encoding::UrlEncoded,
            _ => {
                let shown: String = media_type.chars().take(100).collect();
                return Err(FormError::UnsupportedMediaType(format!(
                    "Content-Type {shown:?}"
                )));
            }
        };
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=') {
                let value = value.trim().trim_matches('"');
                if name.trim().eq_ignore_ascii_case("charset")
                    && !value.eq_ignore_ascii_case("utf-8")
                    && !value.eq_ignore_ascii_case("utf8")
                {
                    let shown: String = value.chars().take(40).collect();
                    return Err(FormError::UnsupportedMediaType(format!(
                        "charset {shown:?}"
                    )));
                }
            }
        }
        Ok(encoding)
    }

    /// The body's syntax, then its fields.
    pub(super) fn read(
        self,
        body: &[u8],
        country: CountryId,
        allowed: &AllowedFields,
    ) -> Result<ValidForm, FormError> {
        let input = self.parse(body)?;
        ValidForm::from_input(input, country, self, allowed)
    }

    /// The body's fields, in order, before validation. A urlencoded body may repeat a field;
    /// [`ValidForm::from_input`] refuses a repeat of one it keeps.
    fn parse(self, body: &[u8]) -> Result<Vec<(String, Input)>, FormError> {
        let malformed = |message: &str| FormError::MalformedBody(message.to_owned());
        match self {
            Encoding::Json => {
                let value: Value = serde_json::from_slice(body).map_err(|e| {
                    FormError::MalformedBody(format!("the body is not valid JSON: {e}"))
                })?;
                let Value::Object(object) = value else {
                    return Err(malformed("the body must be a JSON object"));
                };
                Ok(object
                    .into_iter()
                    .map(|(name, value)| (name, Input::from_json(value)))
                    .collect())
            }
            Encoding::UrlEncoded => {
                let text =
                    std::str::from_utf8(body).map_err(|_| malformed("the body is not UTF-8"))?;
                let mut fields: Vec<(String, Input)> = Vec::new();
                for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
                    if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
                        return Err(malformed("the body's percent-encoded bytes are not UTF-8"));
                    }
                    fields.push((name.into_owned(), Input::Text(value.into_owned())));
                }
                Ok(fields)
            }
        }
    }
}

/// One field's value as sent.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Input {
    Text(String),
    Bool(bool),
    Number(String),
    Null,
    /// An object or an array.
    Nested,
}

impl Input {
    fn from_json(value: Value) -> Input {
        match value {
            Value::String(text) => Input::Text(text),
            Value::Bool(b) => Input::Bool(b),
            Value::Number(n) => Input::Number(n.to_string()),
            Value::Null => Input::Null,
            Value::Array(_) | Value::Object(_) => Input::Nested,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{allowed, refusal};
    use super::*;

    #[test]
    fn json_and_urlencoded_are_read_with_any_case_and_parameters() {
        for (content_type, expected) in [
            ("application/json", Encoding::Json),
            ("Application/JSON; charset=UTF-8", Encoding::Json),
            ("application/json;charset=\"utf8\"", Encoding::Json),
            ("application/x-www-form-urlencoded", Encoding::UrlEncoded),
            (
                "application/x-www-form-urlencoded;charset=utf-8",
                Encoding::UrlEncoded,
            ),
        ] {
            assert_eq!(Encoding::of(Some(content_type)).unwrap(), expected);
        }
    }

    #[test]
    fn other_content_types_get_415() {
        for content_type in [
            None,
            Some("text/plain"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            Some("application/json; charset=latin1"),
        ] {
            let error = read_form(content_type, b"{}", CountryId::MX, &allowed()).unwrap_err();
            assert_eq!(
                refusal(&error),
                (415, "unsupported_media_type".into(), None),
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn malformed_bodies_get_400() {
        for body in [
            &b"{\"name\": \"Ana\""[..],
            b"",
            b"[1, 2]",
            b"\"name\"",
            b"null",
            b"{\"name\": \"\xff\"}",
        ] {
            let error =
                read_form(Some("application/json"), body, CountryId::MX, &allowed()).unwrap_err();
            assert_eq!(
                refusal(&error),
                (400, "malformed_body".into(), None),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [
            &b"name=Ana%FF&phone=5512345678&consent=on"[..],
            b"name=\xff",
        ] {
            let error = read_form(
                Some("application/x-www-form-urlencoded"),
                body,
                CountryId::MX,
                &allowed(),
            )
            .unwrap_err();
            assert_eq!(
                refusal(&error),
                (400, "malformed_body".into(), None),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_field_repeated_in_a_urlencoded_form_is_named_if_it_is_kept() {
        let read = |body: &str| {
            read_form(
                Some("application/x-www-form-urlencoded"),
                body.as_bytes(),
                CountryId::MX,
                &allowed(),
            )
            .map_err(|error| refusal(&error))
        };
        for (body, field) in [
            (
                "name=Ana&phone=5512345678&consent=on&ciudad=Puebla&ciudad=Toluca",
                "ciudad",
            ),
            ("name=Ana&phone=5512345678&consent=on&name=Beto", "name"),
            ("name=Ana&phone=5512345678&consent=on&consent=on", "consent"),
        ] {
            assert_eq!(
                read(body).unwrap_err(),
                (422, "invalid_field".into(), Some(field.into())),
                "{body}"
            );
        }
        // A field the agent does not get may come any number of times (checkboxes).
        let body = "name=Ana&phone=5512345678&consent=on&color=rojo&color=azul&ciudad=Puebla";
        let form = read(body).unwrap();
        assert_eq!(form.fields.keys().collect::<Vec<_>>(), ["ciudad"]);
    }

    #[test]
    fn the_bot_check_token_is_read_from_json_or_urlencoded_bodies() {
        let json = Some("application/json");
        let form = Some("application/x-www-form-urlencoded");
        for (content_type, body, expected) in [
            (
                json,
                &br#"{"name":"Ana","cf-turnstile-response":"tok.1"}"#[..],
                Some("tok.1"),
            ),
            (
                form,
                b"name=Ana&cf-turnstile-response=tok%2B1&cf-turnstile-response=2",
                Some("tok+1"),
            ),
            (form, b"name=Ana&cf-turnstile-response=", Some("")),
            (json, br#"{"cf-turnstile-response":7}"#, Some("")),
            (json, br#"{"name":"Ana"}"#, None),
            (json, b"cf-turnstile-response=tok", None),
            (Some("text/plain"), b"cf-turnstile-response=tok", None),
            (None, b"cf-turnstile-response=tok", None),
        ] {
            assert_eq!(
                bot_check_token(content_type, body).as_deref(),
                expected,
                "{content_type:?} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn json_values_keep_their_kind() {
        let body = br#"{"b": "x", "a": 1.5, "c": true, "d": null, "e": [1], "f": {}}"#;
        let mut fields = Encoding::Json.parse(body).unwrap();
        fields.sort_by(|(a, _), (b, _)| a.cmp(b));
        let expected = [
            ("a", Input::Number("1.5".into())),
            ("b", Input::Text("x".into())),
            ("c", Input::Bool(true)),
            ("d", Input::Null),
            ("e", Input::Nested),
            ("f", Input::Nested),
        ]
        .map(|(name, value)| (name.to_owned(), value));
        assert_eq!(fields, expected);
    }
}
