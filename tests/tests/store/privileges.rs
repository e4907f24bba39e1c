//! Under Supabase's default grants, the public API roles can neither read nor write our tables
//! nor call our functions, and it is PostgreSQL that refuses them: each refusal carries its
//! SQLSTATE 42501 (insufficient privilege) in the error body, not merely a 401 or 403 that any
//! other failure could produce. The tables, views and functions are read from the catalog, so
//! anything a later migration adds is covered too. Each is tried as `anon`, with the anon key
//! and with no key at all, and as `authenticated`, with a JWT signed with the API's secret.

use reqwest::{Method, StatusCode};
use sandbox::sign_jwt;
use serde_json::{Map, Value, json};

use crate::support::stack;

/// Whoever the API lets in without the service key.
struct Outsider {
    who: &'static str,
    key: Option<String>,
    /// The request runs as a role other than the API's anonymous role (`anon`).
    authenticated: bool,
}

fn outsiders() -> [Outsider; 3] {
    let secret = stack()
        .jwt_secret
        .as_deref()
        .filter(|secret| !secret.is_empty())
        .expect("the authenticated role is tried with a JWT signed with the API's secret: set SUPABASE_JWT_SECRET");
    [
        Outsider {
            who: "anon (anon key)",
            key: Some(stack().anon_key.clone()),
            authenticated: false,
        },
        Outsider {
            who: "anon (no key)",
            key: None,
            authenticated: false,
        },
        Outsider {
            who: "authenticated",
            key: Some(sign_jwt("authenticated", secret)),
            authenticated: true,
        },
    ]
}

/// The statuses PostgreSQL's 42501 may come with.
///
/// PostgREST answers 401 when the request ran as its anonymous role and 403 otherwise
/// (`mapSQLtoHTTP` in `src/PostgREST/Error.hs`: `"42501" -> if authed then status403 else
/// status401`, where `authed` is "the request's role is not db-anon-role"). postrust 3.1.0, the
/// PostgREST-compatible server of the local stack, answers 401 whoever asks
/// (`postrust_core::Error::status_code`), so an `authenticated` refusal may be either; the
/// SQLSTATE in the body is what shows that the database refused the role.
fn refusal_statuses(outsider: &Outsider) -> &'static [StatusCode] {
    if outsider.authenticated {
        &[StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED]
    } else {
        &[StatusCode::UNAUTHORIZED]
    }
}

/// What the API answered: the status and the error body's `code`, with the body for messages.
struct Answer {
    status: StatusCode,
    code: Option<String>,
    body: String,
}

impl Answer {
    async fn of(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|body| body["code"].as_str().map(str::to_owned));
        Answer { status, code, body }
    }

    /// Why this is not PostgreSQL refusing the outsider's role, if it is not.
    fn not_a_refusal_of(&self, outsider: &Outsider) -> Option<String> {
        let statuses = refusal_statuses(outsider);
        let refused = self.code.as_deref() == Some("42501") && statuses.contains(&self.status);
        (!refused).then(|| {
            format!(
                "expected 42501 with {statuses:?}, got {} {}",
                self.status, self.body
            )
        })
    }
}

fn request(method: Method, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
    let mut request =
        reqwest::Client::new().request(method, format!("{}/{path}", stack().rest_url));
    if let Some(key) = key {
        request = request.header("apikey", key).bearer_auth(key);
    }
    request
}

struct Relation {
    name: String,
    /// A column of it, so a write names only what exists and is refused for the role alone.
    column: String,
    /// What PostgreSQL can write through it at all (`pg_relation_is_updatable`, triggers and
    /// rules included): always for a table, only some views.
    insertable: bool,
    updatable: bool,
    deletable: bool,
}

impl Relation {
    fn writable_by(&self, method: &Method) -> bool {
        match *method {
            Method::POST => self.insertable,
            Method::PATCH => self.updatable,
            Method::DELETE => self.deletable,
            _ => unreachable!("{method} is not a write"),
        }
    }
}

/// Every table, view, materialized view and foreign table in `public` no extension owns: what
/// PostgREST's schema cache lists, whatever the requesting role's privileges.
async fn our_relations() -> Vec<Relation> {
    let db = stack().database().await.unwrap();
    let rows = db
        .query(
            "select c.relname::text, \
             (select a.attname::text from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 \
              and not a.attisdropped and a.attidentity = '' and a.attgenerated = '' \
              order by a.attnum limit 1), \
             pg_relation_is_updatable(c.oid, true) \
             from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = 'public' and c.relkind in ('r', 'v', 'm', 'p', 'f') \
             and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass \
                             and d.objid = c.oid and d.deptype = 'e') \
             order by 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let name: String = row.get(0);
            let column: Option<String> = row.get(1);
            // The bits of CmdType: 1 << CMD_UPDATE, 1 << CMD_INSERT, 1 << CMD_DELETE.
            let events: i32 = row.get(2);
            Relation {
                column: column.unwrap_or_else(|| panic!("{name} has no column a write can name")),
                name,
                updatable: events & (1 << 2) != 0,
                insertable: events & (1 << 3) != 0,
                deletable: events & (1 << 4) != 0,
            }
        })
        .collect()
}

/// How a function's arguments travel in a call, as PostgREST finds the function.
enum Arguments {
    /// By name, in a JSON object (or in the query string of a GET).
    Named(Vec<(String, String)>),
    /// A single unnamed json, jsonb, text, xml or bytea argument: the body itself.
    Single(String),
}

struct Function {
    name: String,
    arguments: Arguments,
}

/// Every function in `public` no extension owns that PostgREST offers as `rpc/<name>`: a plain
/// function (not a procedure or aggregate), not a trigger function, whose input arguments are all
/// named or are a single unnamed json, jsonb, text, xml or bytea (`funcsSqlQuery` in PostgREST's
/// `src/PostgREST/SchemaCache.hs`, which does not look at privileges). Any other function is not
/// reachable through the API at all; supabase/tests/database/00_privileges.test.sql checks the
/// privileges of every one.
async fn our_functions() -> Vec<Function> {
    let db = stack().database().await.unwrap();
    let rows = db
        .query(
            "select p.proname::text, \
             array(select coalesce(a.name, '') from unnest(p.proargnames, \
                     coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargmodes) \
                     with ordinality as a (name, type, mode, idx) \
                   where coalesce(a.mode, 'i') in ('i', 'b', 'v') order by a.idx)::text[], \
             array(select format_type(a.type, null) from unnest(p.proargnames, \
                     coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargmodes) \
                     with ordinality as a (name, type, mode, idx) \
                   where coalesce(a.mode, 'i') in ('i', 'b', 'v') order by a.idx)::text[] \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname = 'public' and p.prokind = 'f' and p.prorettype <> 'trigger'::regtype \
             and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass \
                             and d.objid = p.oid and d.deptype = 'e') \
             order by 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .filter_map(|row| {
            let (names, types): (Vec<String>, Vec<String>) = (row.get(1), row.get(2));
            let arguments = match names.iter().filter(|name| name.is_empty()).count() {
                0 => Arguments::Named(names.into_iter().zip(types).collect()),
                1 if types.len() == 1
                    && ["json", "jsonb", "text", "xml", "bytea"].contains(&types[0].as_str()) =>
                {
                    Arguments::Single(types[0].clone())
                }
                _ => return None,
            };
            Some(Function {
                name: row.get(0),
                arguments,
            })
        })
        .collect()
}

/// A well-typed value of a SQL type, so a call fails on its privileges and not on its input.
fn sample(sql_type: &str) -> Value {
    match sql_type {
        "integer" | "bigint" | "smallint" | "numeric" => json!(1),
        "boolean" => json!(true),
        "uuid" => json!("00000000-0000-0000-0000-000000000000"),
        "jsonb" | "json" => json!([]),
        "timestamp with time zone" => json!("2026-01-01T00:00:00Z"),
        _ => json!("x"),
    }
}

/// The same value in a query string.
fn query_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn fail_unless_empty(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} refusal(s) not as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_public_roles_can_neither_read_nor_write_any_table() {
    let relations = our_relations().await;
    for expected in [
        "chat_sessions",
        "chat_history",
        "whatsapp_messages",
        "form_submissions",
        "unprocessed_webhook_events",
        "chat_session_overview",
    ] {
        assert!(
            relations.iter().any(|r| r.name == expected),
            "{expected} is one of our tables"
        );
    }
    let outsiders = outsiders();
    let mut failures = Vec::new();
    for relation in &relations {
        let Relation { name, column, .. } = relation;
        // The service role can: the refusals below are about the role, not the request.
        let read = Answer::of(request(Method::GET, name, Some(&stack().service_role_key))).await;
        if read.status != StatusCode::OK {
            failures.push(format!(
                "service_role GET {name}: {} {}",
                read.status, read.body
            ));
        }

        let writes = [
            (Method::POST, name.clone()),
            (Method::PATCH, format!("{name}?{column}=is.null")),
            (Method::DELETE, format!("{name}?{column}=is.null")),
        ];
        for outsider in &outsiders {
            let key = outsider.key.as_deref();
            let read = Answer::of(request(Method::GET, &format!("{name}?select=*"), key)).await;
            if let Some(why) = read.not_a_refusal_of(outsider) {
                failures.push(format!("{} GET {name}: {why}", outsider.who));
            }

            for (method, path) in &writes {
                let write = |key| request(method.clone(), path, key).json(&json!({ column: null }));
                let answer = Answer::of(write(key)).await;
                if relation.writable_by(method) {
                    if let Some(why) = answer.not_a_refusal_of(outsider) {
                        failures.push(format!("{} {method} {name}: {why}", outsider.who));
                    }
                    continue;
                }
                // A view PostgreSQL cannot write through (not automatically updatable, no
                // INSTEAD OF trigger or rule) is refused by its rewriter, SQLSTATE 55000, before
                // the executor checks any privilege: nobody gets a 42501 for it. PostgREST
                // answers that with 500, postrust with 405. What matters is that the refusal
                // does not depend on the role: service_role is refused in the same words.
                let service_role = Answer::of(write(Some(&stack().service_role_key))).await;
                let same = answer.status == service_role.status
                    && answer.code == service_role.code
                    && answer.status.as_u16() >= 400;
                if !same {
                    failures.push(format!(
                        "{} {method} {name} (which nobody can write): got {} {}, while \
                         service_role got {} {}",
                        outsider.who,
                        answer.status,
                        answer.body,
                        service_role.status,
                        service_role.body
                    ));
                }
            }
        }
    }
    fail_unless_empty(failures);
}

#[tokio::test]
async fn the_public_roles_cannot_call_any_function() {
    let functions = our_functions().await;
    for expected in [
        "record_inbound_messages",
        "record_form_submission",
        "claim_turn",
        "attach_chat",
        "complete_turn",
        "fail_turn",
        "record_delivery_statuses",
        "record_webhook",
        "defer_form_submission",
        "sweep_stranded_work",
        "retry_failed",
    ] {
        assert!(
            functions.iter().any(|f| f.name == expected),
            "{expected} is one of our functions"
        );
    }
    let outsiders = outsiders();
    let mut failures = Vec::new();
    for Function { name, arguments } in &functions {
        // Every argument named and well typed, so the server finds the function and the
        // database decides on the privilege alone.
        let (body, query) = match arguments {
            Arguments::Named(arguments) => {
                let body: Map<String, Value> = arguments
                    .iter()
                    .map(|(name, ty)| (name.clone(), sample(ty)))
                    .collect();
                let query: Vec<(String, String)> = body
                    .iter()
                    .map(|(name, value)| (name.clone(), query_value(value)))
                    .collect();
                (Value::Object(body), Some(query))
            }
            // A GET cannot pass an unnamed argument.
            Arguments::Single(ty) => (sample(ty), None),
        };
        let path = format!("rpc/{name}");

        let allowed =
            Answer::of(request(Method::POST, &path, Some(&stack().service_role_key)).json(&body))
                .await;
        if allowed.status == StatusCode::UNAUTHORIZED
            || allowed.status == StatusCode::FORBIDDEN
            || allowed.code.as_deref() == Some("42501")
            || allowed.code.as_deref() == Some("PGRST202")
        {
            failures.push(format!(
                "service_role POST {path} is refused or not found: {} {}",
                allowed.status, allowed.body
            ));
        }

        for outsider in &outsiders {
            let key = outsider.key.as_deref();
            let call = Answer::of(request(Method::POST, &path, key).json(&body)).await;
            if let Some(why) = call.not_a_refusal_of(outsider) {
                failures.push(format!("{} POST {path}: {why}", outsider.who));
            }
            if let Some(query) = &query {
                let call = Answer::of(request(Method::GET, &path, key).query(query)).await;
                if let Some(why) = call.not_a_refusal_of(outsider) {
                    failures.push(format!("{} GET {path}: {why}", outsider.who));
                }
            }
        }
    }
    fail_unless_empty(failures);
}
