//! The SAM template and the code agree on configuration: each function gets every variable it
//! requires, sets none it does not read, and whatever it reads that the template leaves out is
//! documented as optional in `.env.example`.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;
use shared::config::{ConfigError, Env};

const TEMPLATE: &str = include_str!("../../../template.yaml");
const ENV_EXAMPLE: &str = include_str!("../../../.env.example");

/// A valid value for each variable the code knows, standing in for what AWS resolves.
fn sample(name: &str) -> Option<&'static str> {
    Some(match name {
        "SUPABASE_URL" | "SUPABASE_REST_URL" => "https://abcdefgh.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY" => "sb_secret_sample",
        "SUPABASE_TIMEOUT_MS"
        | "RETELL_TIMEOUT_MS"
        | "RETELL_COMPLETION_TIMEOUT_MS"
        | "WHATSAPP_TIMEOUT_MS" => "5000",
        "RETELL_API_KEY" => "key_sample",
        "RETELL_AGENT_ID" => "agent_sample",
        "RETELL_AGENT_VERSION" => "1",
        "RETELL_BASE_URL" => "https://api.retellai.com",
        "WHATSAPP_ACCESS_TOKEN"
        | "WHATSAPP_APP_SECRET"
        | "WHATSAPP_VERIFY_TOKEN"
        | "FORM_SHARED_SECRET" => "secret",
        "WHATSAPP_PHONE_NUMBER_ID" => "106540352242922",
        "WHATSAPP_GRAPH_URL" => "https://graph.facebook.com",
        "WHATSAPP_API_VERSION" => "v23.0",
        "WHATSAPP_TEMPLATE_NAME" => "primer_contacto",
        "WHATSAPP_TEMPLATE_LANGUAGE" => "es_MX",
        "FORM_DEFAULT_COUNTRY" => "MX",
        "FORM_ALLOWED_ORIGINS" => "https://www.example.com",
        "FORM_MAX_BODY_BYTES" => "65536",
        "TURN_QUEUE_URL" => "https://sqs.us-east-1.amazonaws.com/123456789012/turns.fifo",
        "SQS_ENDPOINT_URL" => "http://127.0.0.1:5000",
        "OPT_OUT_WORDS" | "OPT_IN_WORDS" => "STOP",
        "OPT_OUT_CONFIRMATION"
        | "OPT_IN_CONFIRMATION"
        | "UNSUPPORTED_MESSAGE_REPLY"
        | "CUSTOMER_NAME_FALLBACK" => "ok",
        "FIRST_CONTACT_COMPLETION" => "empty",
        "TURN_LEASE_SECONDS" => "300",
        "CARRY_OVER_MESSAGES" => "10",
        "RUST_LOG" | "AWS_LAMBDA_LOG_LEVEL" => "info",
        _ => return None,
    })
}

fn keys(value: &Value) -> BTreeSet<String> {
    value["Environment"]["Variables"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The variables the template gives each function, by the function's folder name.
fn template_environments() -> BTreeMap<String, BTreeSet<String>> {
    let template: Value = serde_yaml::from_str(TEMPLATE).expect("template.yaml is YAML");
    let global = keys(&template["Globals"]["Function"]);
    let mut functions = BTreeMap::new();
    for resource in template["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
    {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let code = resource["Properties"]["CodeUri"]
            .as_str()
            .expect("a CodeUri");
        let name = code
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let mut variables = global.clone();
        variables.extend(keys(&resource["Properties"]));
        functions.insert(name, variables);
    }
    functions
}

/// Runs a function's configuration on exactly the template's variables.
fn check(function: &str, configure: fn(&Env) -> Result<(), ConfigError>) {
    let environments = template_environments();
    let variables = environments
        .get(function)
        .unwrap_or_else(|| panic!("template.yaml has no {function}"));
    let pairs: Vec<(&str, &str)> = variables
        .iter()
        .map(|name| {
            (
                name.as_str(),
                sample(name).unwrap_or_else(|| {
                    panic!("{function}: template sets {name}, which no code reads")
                }),
            )
        })
        .collect();
    let env = Env::from_pairs(pairs);
    configure(&env).unwrap_or_else(|e| panic!("{function}: with the template's variables, {e}"));
    let read: BTreeSet<String> = env.names_read().into_iter().map(str::to_owned).collect();
    let unread: Vec<_> = variables.difference(&read).collect();
    assert!(
        unread.is_empty(),
        "{function}: the template sets {unread:?}, which the function does not read"
    );
    let undocumented: Vec<_> = read
        .difference(variables)
        .filter(|name| {
            !ENV_EXAMPLE.lines().any(|line| {
                line.trim_start_matches("# ")
                    .starts_with(&format!("{name}="))
            })
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "{function}: reads {undocumented:?}, neither set by the template nor in .env.example"
    );
}

#[test]
fn whatsapp_inbound_and_the_template_agree() {
    check("whatsapp-inbound", |env| {
        whatsapp_inbound::Config::from_env(env).map(drop)
    });
}

#[test]
fn form_intake_and_the_template_agree() {
    check("form-intake", |env| {
        form_intake::Config::from_env(env).map(drop)
    });
}

#[test]
fn the_conversation_worker_and_the_template_agree() {
    check("conversation-worker", |env| {
        conversation_worker::Config::from_env(env).map(drop)
    });
}
