//! Every webhook example in Meta's spec goes through our signature check and parser.

use sandbox::schema::ApiSpec;
use shared::signature::hmac_sha256_hex;
use shared::whatsapp::webhook::{WebhookEvent, WebhookPayload, events, verify_signature};

const APP_SECRET: &[u8] = b"app-secret-of-the-test";

fn sign(body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(APP_SECRET, &[body]))
}

#[test]
fn every_webhook_example_in_metas_spec_verifies_and_parses_into_events() {
    let examples = ApiSpec::whatsapp().webhook_examples();
    assert!(examples.len() >= 10, "{} examples", examples.len());
    for (name, example) in examples {
        let body = serde_json::to_vec(example).unwrap();
        verify_signature(APP_SECRET, &body, Some(&sign(&body)))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let payload: WebhookPayload =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let events = events(&payload);
        assert!(!events.is_empty(), "{name}: no event");
        let errors: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, WebhookEvent::Error(_)))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn metas_text_example_is_the_customers_message_with_its_text() {
    let example = &ApiSpec::whatsapp().webhook_examples()["Text Message"];
    let payload: WebhookPayload = serde_json::from_value(example.clone()).unwrap();
    let messages: Vec<_> = events(&payload)
        .into_iter()
        .filter_map(|e| {
            if let WebhookEvent::Message(m) = e {
                Some(m)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(messages.len(), 1);
    let text = example["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"]
        .as_str()
        .unwrap();
    assert_eq!(messages[0].body.as_deref(), Some(text));
    assert_eq!(messages[0].message_type, "text");
}

#[test]
fn interactive_and_button_examples_count_as_their_titles() {
    for name in [
        "Interactive Button Reply Message",
        "Interactive List Reply Message",
        "Button Message",
    ] {
        let payload: WebhookPayload =
            serde_json::from_value(ApiSpec::whatsapp().webhook_examples()[name].clone()).unwrap();
        let body = events(&payload).into_iter().find_map(|e| match e {
            WebhookEvent::Message(m) => m.body,
            _ => None,
        });
        assert!(body.is_some_and(|b| !b.is_empty()), "{name} has text");
    }
}
