//! `GET /form`: the hosted lead form. One HTML answer with its style and script inline (the
//! files beside this one), rendered once per language when the form is built, so a request only
//! picks a body. Its only other request is the Turnstile widget's script.
//!
//! The Content-Security-Policy allows the inline style and script by their SHA-256 hashes, the
//! widget's script and frame by its origin, the logo by its origin, requests to the page's own
//! origin, and embedding by the page's origin and `FORM_ALLOWED_ORIGINS`.

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use url::Url;

use super::{MAX_FIELD_VALUE_CHARS, MAX_NAME_CHARS};
use crate::config::BrowserFormConfig;
use crate::domain::{AllowedFields, CountryId};
use crate::ingress::Response;

/// The action the widget is rendered with, and a token must have been issued for.
pub const TURNSTILE_ACTION: &str = "lead-form";

/// The most a page may weigh, in bytes: fast on a phone.
pub const MAX_PAGE_BYTES: usize = 30 * 1024;

const HTML: &str = include_str!("page/form.html");
const CSS: &str = include_str!("page/form.css");
const JS: &str = include_str!("page/form.js");

/// The page's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Es,
    En,
}

impl Language {
    /// `?lang=es|en`, else the first of the browser's languages (by weight) that is Spanish or
    /// English, else Spanish.
    pub fn choose(query: Option<&str>, accept_language: Option<&str>) -> Self {
        let asked = query.into_iter().flat_map(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .filter(|(key, _)| key == "lang")
                .map(|(_, value)| value.into_owned())
        });
        if let Some(language) = asked.filter_map(|value| Self::named(&value)).next() {
            return language;
        }
        let mut preferred: Vec<(f32, Self)> = accept_language
            .unwrap_or("")
            .split(',')
            .filter_map(|entry| {
                let mut parts = entry.split(';');
                let language = Self::named(parts.next()?.trim())?;
                let weight = parts
                    .filter_map(|part| part.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                (weight > 0.0).then_some((weight, language))
            })
            .collect();
        // Stable: of equal weights, the first listed wins.
        preferred.sort_by(|a, b| b.0.total_cmp(&a.0));
        preferred
            .first()
            .map_or(Self::Es, |(_, language)| *language)
    }

    /// `es`, `es-MX`, `EN_us`, …
    fn named(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "es" => Some(Self::Es),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Self::Es => "es",
            Self::En => "en",
        }
    }

    fn texts(self) -> &'static Texts {
        match self {
            Self::Es => &ES,
            Self::En => &EN,
        }
    }
}

/// The page in each language, with its headers.
#[derive(Debug, Clone)]
pub struct Pages {
    es: String,
    en: String,
    headers: HeaderMap,
}

impl Pages {
    /// Renders both languages from the configuration: at start-up, never per request.
    pub fn render(
        browser: &BrowserFormConfig,
        default_country: CountryId,
        fields: &AllowedFields,
    ) -> Self {
        let style = style(&browser.brand_color);
        let render = |language| render(language, browser, default_country, fields, &style);
        Self {
            es: render(Language::Es),
            en: render(Language::En),
            headers: headers(browser, &style),
        }
    }

    /// The page in `language`: 200, HTML, with its policy and cache headers.
    pub fn response(&self, language: Language) -> Response {
        let body = match language {
            Language::Es => &self.es,
            Language::En => &self.en,
        };
        let mut response = Response::new(body.clone());
        *response.status_mut() = StatusCode::OK;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// The page's texts in one language. Error texts reach the script as `data-` attributes.
struct Texts {
    title: &'static str,
    intro: &'static str,
    name: &'static str,
    phone: &'static str,
    phone_hint: &'static str,
    country: &'static str,
    optional: &'static str,
    submit: &'static str,
    thanks_title: &'static str,
    thanks: &'static str,
    open_whatsapp: &'static str,
    new_tab: &'static str,
    other_language: &'static str,
    bad_name: &'static str,
    bad_phone: &'static str,
    missing_consent: &'static str,
    /// `data-` attribute (camelCase in the script's `dataset`) and text.
    script: [(&'static str, &'static str); 9],
}

const ES: Texts = Texts {
    title: "Déjanos tus datos",
    intro: "Te escribiremos por WhatsApp para atenderte.",
    name: "Nombre",
    phone: "Teléfono con WhatsApp",
    phone_hint: "Elige el país y escribe tu número.",
    country: "País",
    optional: "(opcional)",
    submit: "Enviar",
    thanks_title: "¡Gracias! Recibimos tus datos.",
    thanks: "Te escribiremos por WhatsApp en unos minutos. Revisa tus mensajes.",
    open_whatsapp: "Abrir WhatsApp",
    new_tab: "(se abre en otra pestaña)",
    other_language: "English",
    bad_name: "Escribe tu nombre, sin enlaces ni números de teléfono.",
    bad_phone: "Escribe un número de teléfono válido, por ejemplo 55 1234 5678.",
    missing_consent: "Marca la casilla para que podamos escribirte.",
    script: [
        ("missing-name", "Escribe tu nombre."),
        ("bad-field", "Revisa este campo."),
        ("fix", "Revisa los campos marcados."),
        (
            "wait",
            "Espera a que termine la verificación de seguridad e inténtalo de nuevo.",
        ),
        ("sending", "Enviando…"),
        (
            "denied",
            "No pudimos comprobar que eres una persona. Inténtalo de nuevo.",
        ),
        (
            "limited",
            "Recibimos demasiados formularios desde tu conexión. Inténtalo más tarde.",
        ),
        (
            "down",
            "El servicio no está disponible por ahora. Inténtalo en unos minutos.",
        ),
        (
            "failed",
            "No se pudo enviar. Revisa tu conexión e inténtalo de nuevo.",
        ),
    ],
};

const EN: Texts = Texts {
    title: "Leave us your details",
    intro: "We'll message you on WhatsApp to help you.",
    name: "Name",
    phone: "WhatsApp phone number",
    phone_hint: "Choose the country and type your number.",
    country: "Country",
    optional: "(optional)",
    submit: "Send",
    thanks_title: "Thank you! We got your details.",
    thanks: "We'll message you on WhatsApp in a few minutes. Keep an eye on your messages.",
    open_whatsapp: "Open WhatsApp",
    new_tab: "(opens in a new tab)",
    other_language: "Español",
    bad_name: "Type your name, without links or phone numbers.",
    bad_phone: "Type a valid phone number, for example 55 1234 5678.",
    missing_consent: "Tick the box so we can message you.",
    script: [
        ("missing-name", "Type your name."),
        ("bad-field", "Check this field."),
        ("fix", "Check the marked fields."),
        (
            "wait",
            "Wait for the security check to finish and try again.",
        ),
        ("sending", "Sending…"),
        (
            "denied",
            "We couldn't check that you're a person. Try again.",
        ),
        (
            "limited",
            "We got too many forms from your connection. Try again later.",
        ),
        (
            "down",
            "The service is unavailable right now. Try again in a few minutes.",
        ),
        (
            "failed",
            "Couldn't send. Check your connection and try again.",
        ),
    ],
};

/// The countries offered before the number: ISO code, calling code, names in Spanish and
/// English. The default country is added when it is not here.
const COUNTRIES: &[(&str, u16, &str, &str)] = &[
    ("AR", 54, "Argentina", "Argentina"),
    ("BO", 591, "Bolivia", "Bolivia"),
    ("BR", 55, "Brasil", "Brazil"),
    ("CL", 56, "Chile", "Chile"),
    ("CO", 57, "Colombia", "Colombia"),
    ("CR", 506, "Costa Rica", "Costa Rica"),
    ("DO", 1, "República Dominicana", "Dominican Republic"),
    ("EC", 593, "Ecuador", "Ecuador"),
    ("SV", 503, "El Salvador", "El Salvador"),
    ("ES", 34, "España", "Spain"),
    ("US", 1, "Estados Unidos", "United States"),
    ("GT", 502, "Guatemala", "Guatemala"),
    ("HN", 504, "Honduras", "Honduras"),
    ("MX", 52, "México", "Mexico"),
    ("NI", 505, "Nicaragua", "Nicaragua"),
    ("PA", 507, "Panamá", "Panama"),
    ("PY", 595, "Paraguay", "Paraguay"),
    ("PE", 51, "Perú", "Peru"),
    ("PR", 1, "Puerto Rico", "Puerto Rico"),
    ("UY", 598, "Uruguay", "Uruguay"),
    ("VE", 58, "Venezuela", "Venezuela"),
];

fn render(
    language: Language,
    browser: &BrowserFormConfig,
    default_country: CountryId,
    fields: &AllowedFields,
    style: &str,
) -> String {
    let texts = language.texts();
    let other = match language {
        Language::Es => Language::En,
        Language::En => Language::Es,
    };
    let script_texts: String = std::iter::once(("lang", language.code()))
        .chain(texts.script.iter().copied())
        .map(|(name, text)| format!(" data-{name}=\"{}\"", escape(text)))
        .collect();
    let logo = browser.logo_url.as_ref().map_or(String::new(), |url| {
        format!(
            "<img src=\"{}\" alt=\"\" height=\"48\">",
            escape(url.as_str())
        )
    });
    let whatsapp = browser
        .whatsapp_number
        .as_ref()
        .map_or(String::new(), |number| {
            format!(
                "<p><a id=\"whatsapp\" href=\"https://wa.me/{number}\" target=\"_blank\" \
             rel=\"noopener\">{}<span class=\"sr\"> {}</span></a></p>\n",
                texts.open_whatsapp, texts.new_tab
            )
        });
    fill(HTML, |key| match key {
        "lang" => language.code().to_owned(),
        "business" => escape(&browser.business_name),
        "title" => texts.title.to_owned(),
        "style" => style.to_owned(),
        "logo" => logo.clone(),
        "texts" => script_texts.trim_start().to_owned(),
        "intro" => texts.intro.to_owned(),
        "name_label" => texts.name.to_owned(),
        "name_max" => MAX_NAME_CHARS.to_string(),
        "bad_name" => escape(texts.bad_name),
        "phone_label" => texts.phone.to_owned(),
        "phone_hint" => texts.phone_hint.to_owned(),
        "country_label" => texts.country.to_owned(),
        "countries" => countries(language, default_country),
        "bad_phone" => escape(texts.bad_phone),
        "fields" => extra_fields(fields, texts),
        "missing_consent" => escape(texts.missing_consent),
        "consent" => escape(&browser.consent()),
        "site_key" => escape(&browser.site_key),
        "action" => TURNSTILE_ACTION.to_owned(),
        "submit" => texts.submit.to_owned(),
        "thanks_title" => texts.thanks_title.to_owned(),
        "thanks" => texts.thanks.to_owned(),
        "whatsapp" => whatsapp.clone(),
        "other" => other.code().to_owned(),
        "other_name" => texts.other_language.to_owned(),
        "script_url" => escape(browser.script_url.as_str()),
        "script" => JS.to_owned(),
        unknown => unreachable!("form.html names {{{{{unknown}}}}}, which the page does not fill"),
    })
}

/// `template` with each `{{key}}` replaced by `value(key)`, in one pass: a value is never
/// read as a template.
fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut page = String::with_capacity(template.len() * 3);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").expect("a closed placeholder") + start;
        page.push_str(&rest[..start]);
        page.push_str(&value(&rest[start + 2..end]));
        rest = &rest[end + 2..];
    }
    page.push_str(rest);
    page
}

/// The `<option>`s of the country select, by name in `language`, `default` selected.
fn countries(language: Language, default: CountryId) -> String {
    let mut countries: Vec<(&str, u16, &str)> = COUNTRIES
        .iter()
        .map(|&(id, code, es, en)| (id, code, if language == Language::Es { es } else { en }))
        .collect();
    let default = default.as_ref();
    if !countries.iter().any(|(id, ..)| *id == default) {
        let code = phonenumber::metadata::DATABASE
            .by_id(default)
            .map_or(0, |metadata| metadata.country_code());
        countries.push((default, code, default));
    }
    countries.sort_by_key(|&(_, _, name)| name);
    countries
        .iter()
        .map(|&(id, code, name)| {
            let selected = if id == default { " selected" } else { "" };
            format!(
                "<option value=\"{id}\" data-code=\"{code}\"{selected}>{name} (+{code})</option>"
            )
        })
        .collect()
}

/// A text input for each of `FORM_FIELDS`, labelled by its name made readable.
fn extra_fields(fields: &AllowedFields, texts: &Texts) -> String {
    fields
        .names()
        .map(|name| {
            let name = name.as_str();
            format!(
                "<div class=\"field\">\n<label for=\"x-{name}\">{} <span class=\"hint\">{}</span></label>\n\
                 <input id=\"x-{name}\" name=\"{name}\" type=\"text\" maxlength=\"{MAX_FIELD_VALUE_CHARS}\" \
                 aria-describedby=\"x-{name}-error\" data-extra>\n\
                 <p id=\"x-{name}-error\" class=\"error\"></p>\n</div>\n",
                humanize(name),
                texts.optional,
            )
        })
        .collect()
}

/// `utm_source` → `Utm source`.
fn humanize(name: &str) -> String {
    let spaced = name.replace('_', " ");
    let mut chars = spaced.trim().chars();
    chars.next().map_or(String::new(), |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// The inline style: the brand colour and the text colour readable on it, then `form.css`.
fn style(brand: &str) -> String {
    format!(
        ":root{{--brand:{brand};--on-brand:{}}}\n{CSS}",
        text_color_on(brand)
    )
}

/// White or near-black, whichever contrasts more with `brand` (`#rrggbb`).
fn text_color_on(brand: &str) -> &'static str {
    const WHITE: &str = "#ffffff";
    const NEAR_BLACK: &str = "#111111";
    if contrast(brand, WHITE) >= contrast(brand, NEAR_BLACK) {
        WHITE
    } else {
        NEAR_BLACK
    }
}

/// WCAG 2 contrast ratio of two `#rrggbb` colours, 1 to 21.
fn contrast(a: &str, b: &str) -> f64 {
    let (a, b) = (luminance(a), luminance(b));
    (a.max(b) + 0.05) / (a.min(b) + 0.05)
}

/// WCAG 2 relative luminance of `#rrggbb`.
fn luminance(color: &str) -> f64 {
    let channel = |i: usize| {
        let value = f64::from(u8::from_str_radix(&color[i..i + 2], 16).unwrap_or(0)) / 255.0;
        if value <= 0.040_45 {
            value / 12.92
        } else {
            ((value + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
}

/// The answer's headers: the same for both languages (the script and style are).
fn headers(browser: &BrowserFormConfig, style: &str) -> HeaderMap {
    let widget = origin(&browser.script_url);
    let images: String = browser
        .logo_url
        .as_ref()
        .map(|logo| format!("{} ", origin(logo)))
        .unwrap_or_default();
    let ancestors: String = browser
        .allowed_origins
        .iter()
        .map(|origin| format!(" {origin}"))
        .collect();
    let policy = format!(
        "default-src 'none'; script-src '{}' {widget}; style-src '{}'; img-src {images}data:; \
         connect-src 'self'; frame-src {widget}; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'self'{ancestors}",
        hash(JS),
        hash(style),
    );
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
        (header::CACHE_CONTROL, "public, max-age=300".to_owned()),
        (header::VARY, "Accept-Language".to_owned()),
    ] {
        insert(&mut headers, name, &value);
    }
    headers
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let value = HeaderValue::from_str(value).expect("ASCII: origins are serialized as ASCII");
    headers.insert(name, value);
}

/// `scheme://host[:port]`.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A CSP source for inline text: `sha256-<base64 of its SHA-256>`.
fn hash(text: &str) -> String {
    format!("sha256-{}", base64(&Sha256::digest(text.as_bytes())))
}

/// Standard base64, padded.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &byte)| n | u32::from(byte) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Text safe in HTML content and in double-quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::super::testing::{allowed, browser_config};
    use super::*;
    use crate::domain::FieldName;

    fn pages(browser: &BrowserFormConfig) -> Pages {
        Pages::render(browser, CountryId::MX, &allowed())
    }

    fn page(browser: &BrowserFormConfig, language: Language) -> (String, String) {
        let response = pages(browser).response(language);
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        (response.into_body(), policy)
    }

    /// The text between `open` and the next `close`.
    fn between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
        let start = page
            .find(open)
            .unwrap_or_else(|| panic!("{open} in the page"))
            + open.len();
        let end = page[start..].find(close).expect("closed") + start;
        &page[start..end]
    }

    #[test]
    fn the_largest_page_weighs_under_30_kb() {
        // Every field FORM_FIELDS allows, each name as long as allowed, a long consent text.
        let names: Vec<String> = (0..AllowedFields::MAX_FIELDS)
            .map(|i| format!("{i:02}{}", "x".repeat(FieldName::MAX_CHARS - 2)))
            .collect();
        let fields = AllowedFields::parse(&names.join(",")).unwrap();
        let mut browser = browser_config();
        browser.consent_text = "Acepto que {business} me contacte. ".repeat(10);
        browser.business_name = "Ñ".repeat(60);
        browser.allowed_origins = (0..10)
            .map(|i| format!("https://site{i}.example.com"))
            .collect();
        let pages = Pages::render(&browser, CountryId::GB, &fields);
        for language in [Language::Es, Language::En] {
            let response = pages.response(language);
            let size = response.body().len();
            assert!(size < MAX_PAGE_BYTES, "{language:?}: {size} bytes");
            let headers: usize = response
                .headers()
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum();
            assert!(headers < 2048, "{headers} bytes of headers");
        }
        // The usual page is far lighter.
        let usual = pages_size(&browser_config());
        assert!(usual < 16 * 1024, "{usual} bytes");
    }

    fn pages_size(browser: &BrowserFormConfig) -> usize {
        pages(browser).response(Language::Es).body().len()
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_script_and_style_by_hash() {
        for language in [Language::Es, Language::En] {
            let (page, policy) = page(&browser_config(), language);
            let inline_script = between(&page, "<script>", "</script>");
            let inline_style = between(&page, "<style>", "</style>");
            assert_eq!(inline_script, JS);
            assert_eq!(page.matches("<script").count(), 2, "the widget's and ours");
            assert_eq!(page.matches("<style").count(), 1);
            assert!(
                !page.contains(" style="),
                "no style attribute: the policy forbids them"
            );
            let handlers = page.match_indices(" on").filter(|(at, _)| {
                let name: String = page[at + 3..]
                    .chars()
                    .take_while(char::is_ascii_lowercase)
                    .collect();
                page[at + 3 + name.len()..].starts_with('=')
            });
            assert_eq!(
                handlers.count(),
                0,
                "no inline handler: the policy forbids them"
            );
            let directive = |name: &str| {
                policy
                    .split("; ")
                    .find(|d| d.starts_with(&format!("{name} ")))
                    .unwrap_or_else(|| panic!("{name} in {policy}"))
                    .to_owned()
            };
            assert_eq!(
                directive("script-src"),
                format!(
                    "script-src '{}' https://challenges.cloudflare.com",
                    hash(inline_script)
                )
            );
            assert_eq!(
                directive("style-src"),
                format!("style-src '{}'", hash(inline_style))
            );
            assert_eq!(directive("default-src"), "default-src 'none'");
            assert_eq!(
                directive("img-src"),
                "img-src https://cdn.example.com data:"
            );
            assert_eq!(directive("connect-src"), "connect-src 'self'");
            assert_eq!(
                directive("frame-src"),
                "frame-src https://challenges.cloudflare.com"
            );
            assert_eq!(directive("form-action"), "form-action 'self'");
            assert_eq!(directive("base-uri"), "base-uri 'none'");
            assert_eq!(
                directive("frame-ancestors"),
                "frame-ancestors 'self' https://www.example.com"
            );
        }
        // The hashes are of what the browser hashes: no carriage return, no early close.
        assert!(!JS.contains('\r') && !CSS.contains('\r'));
        assert!(!JS.to_ascii_lowercase().contains("</script"));
        assert!(!CSS.to_ascii_lowercase().contains("</style"));
    }

    #[test]
    fn the_policy_follows_the_configuration() {
        let mut browser = browser_config();
        browser.logo_url = None;
        browser.allowed_origins = vec![];
        browser.script_url =
            Url::parse("http://127.0.0.1:4010/turnstile/v0/api.js?render=explicit").unwrap();
        let (page, policy) = page(&browser, Language::Es);
        assert!(policy.contains("; img-src data:;"), "{policy}");
        assert!(policy.ends_with("; frame-ancestors 'self'"), "{policy}");
        assert!(policy.contains(" http://127.0.0.1:4010;"), "{policy}");
        assert!(
            policy.contains("; frame-src http://127.0.0.1:4010;"),
            "{policy}"
        );
        assert!(page.contains(
            "<script src=\"http://127.0.0.1:4010/turnstile/v0/api.js?render=explicit\" async defer>"
        ));
        assert!(!page.contains("<img"));
    }

    #[test]
    fn the_answer_has_its_type_and_cache_headers() {
        let response = pages(&browser_config()).response(Language::En);
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        for (name, value) in [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::VARY, "Accept-Language"),
        ] {
            assert_eq!(headers[&name], value, "{name}");
        }
    }

    #[test]
    fn the_page_has_the_ids_the_script_and_the_browser_test_use() {
        for language in [Language::Es, Language::En] {
            let (page, _) = page(&browser_config(), language);
            for id in [
                "lead-form",
                "name",
                "phone",
                "country",
                "consent",
                "submit",
                "form-status",
                "confirmation",
                "name-error",
                "phone-error",
                "consent-error",
                "whatsapp",
            ] {
                assert_eq!(page.matches(&format!(" id=\"{id}\"")).count(), 1, "#{id}");
            }
            for input in ["name", "phone", "country", "consent", "x-producto"] {
                assert!(page.contains(&format!("<label for=\"{input}\"")), "{input}");
            }
            assert!(page.contains("aria-live=\"polite\""));
            assert!(page.contains(
                "<div class=\"cf-turnstile\" data-sitekey=\"1x00000000000000000000AA\" \
                 data-action=\"lead-form\""
            ));
            assert!(page.contains("href=\"https://wa.me/5215512345678\""));
            assert!(!page.contains("{{"), "every placeholder filled");
        }
    }

    #[test]
    fn texts_follow_the_language() {
        let (es, _) = page(&browser_config(), Language::Es);
        assert!(es.starts_with("<!doctype html>\n<html lang=\"es\">"));
        assert!(es.contains("Te escribiremos por WhatsApp en unos minutos."));
        assert!(es.contains(">Nombre</label>"));
        assert!(es.contains(">México (+52)</option>"));
        assert!(es.contains("data-lang=\"es\""));
        assert!(es.contains("<a href=\"?lang=en\" lang=\"en\""));
        let (en, _) = page(&browser_config(), Language::En);
        assert!(en.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(en.contains("We'll message you on WhatsApp in a few minutes."));
        assert!(en.contains(">Name</label>"));
        assert!(en.contains(">Mexico (+52)</option>"));
        assert!(en.contains("data-lang=\"en\""));
        assert!(!en.contains("Nombre"));
    }

    #[test]
    fn the_business_name_and_consent_text_are_escaped() {
        let mut browser = browser_config();
        browser.business_name = "Café <b>\"Ñoño\"</b> & 'Hijos'".to_owned();
        browser.consent_text =
            "Acepto que {business} me escriba <script>alert(1)</script>".to_owned();
        let (page, _) = page(&browser, Language::Es);
        let escaped = "Café &lt;b&gt;&quot;Ñoño&quot;&lt;/b&gt; &amp; &#39;Hijos&#39;";
        assert!(page.contains(&format!("<h1>{escaped}</h1>")));
        assert!(page.contains(&format!("<title>{escaped} · ")));
        assert!(page.contains(&format!(
            "<label for=\"consent\">Acepto que {escaped} me escriba &lt;script&gt;alert(1)&lt;/script&gt;</label>"
        )));
        assert!(!page.contains("<b>"));
        assert_eq!(page.matches("<script").count(), 2);
    }

    #[test]
    fn the_default_country_is_selected_and_added_when_not_listed() {
        let mx = countries(Language::Es, CountryId::MX);
        assert!(
            mx.contains("<option value=\"MX\" data-code=\"52\" selected>México (+52)</option>")
        );
        assert_eq!(mx.matches(" selected").count(), 1);
        assert_eq!(mx.matches("<option").count(), COUNTRIES.len());
        let gb = countries(Language::En, CountryId::GB);
        assert!(gb.contains("<option value=\"GB\" data-code=\"44\" selected>GB (+44)</option>"));
        assert_eq!(gb.matches("<option").count(), COUNTRIES.len() + 1);
        let en = countries(Language::En, CountryId::US);
        assert!(en.find(">Spain").unwrap() < en.find(">United States").unwrap());
    }

    #[test]
    fn extra_fields_are_text_inputs_labelled_by_their_name() {
        assert_eq!(humanize("utm_source"), "Utm source");
        assert_eq!(humanize("cliente_nuevo"), "Cliente nuevo");
        assert_eq!(humanize("x"), "X");
        let fields = extra_fields(&allowed(), Language::Es.texts());
        assert!(fields.contains(
            "<label for=\"x-utm_source\">Utm source <span class=\"hint\">(opcional)</span></label>"
        ));
        assert!(fields.contains(
            "<input id=\"x-utm_source\" name=\"utm_source\" type=\"text\" maxlength=\"500\""
        ));
        assert_eq!(fields.matches("<input").count(), allowed().names().count());
    }

    #[test]
    fn the_text_on_the_brand_colour_is_the_more_readable() {
        for (brand, text) in [
            ("#128c7e", "#111111"),
            ("#075e54", "#ffffff"),
            ("#000080", "#ffffff"),
            ("#ffff00", "#111111"),
            ("#ffffff", "#111111"),
            ("#000000", "#ffffff"),
        ] {
            assert_eq!(text_color_on(brand), text, "{brand}");
        }
        assert!((contrast("#000000", "#ffffff") - 21.0).abs() < 1e-9);
        assert!(contrast("#128c7e", "#111111") >= 4.5);
        assert!(style("#075e54").starts_with(":root{--brand:#075e54;--on-brand:#ffffff}\n"));
    }

    #[test]
    fn the_language_is_asked_then_preferred_then_spanish() {
        for (query, accept, expected) in [
            (None, None, Language::Es),
            (Some("lang=en"), None, Language::En),
            (Some("a=1&lang=EN"), Some("es"), Language::En),
            (Some("lang=es"), Some("en-US"), Language::Es),
            (Some("lang=de"), Some("en-US,en;q=0.9"), Language::En),
            (None, Some("de-DE, fr;q=0.9"), Language::Es),
            (None, Some("de-DE,en;q=0.7,es-MX;q=0.8"), Language::Es),
            (None, Some("en-GB;q=0.2, es;q=0"), Language::En),
            (None, Some("en, es"), Language::En),
            (None, Some("*"), Language::Es),
        ] {
            assert_eq!(
                Language::choose(query, accept),
                expected,
                "{query:?} {accept:?}"
            );
        }
    }

    #[test]
    fn hashes_are_base64_of_sha256() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            hash(""),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
