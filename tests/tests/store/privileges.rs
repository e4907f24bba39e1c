//! Under Supabase's default grants, the public API roles can neither read nor write our tables
//! nor call our functions. The tables and functions are read from the catalog, so anything a
//! later migration adds is covered too.

use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::support::stack;

struct Table {
    name: String,
    is_view: bool,
    /// A column of it, so a write names only what exists and is refused for the role alone.
    column: String,
}

struct Function {
    name: String,
    /// Each input argument's name and type.
    arguments: Vec<(String, String)>,
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

async fn our_tables() -> Vec<Table> {
    let db = stack().database().await.unwrap();
    let rows = db
        .query(
            "select c.relname::text, c.relkind = 'v', \
             (select a.attname::text from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 \
              and not a.attisdropped and a.attidentity = '' and a.attgenerated = '' \
              order by a.attnum limit 1) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = 'public' and c.relkind in ('r', 'v', 'm', 'p', 'f') \
             and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'e') \
             order by 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| Table {
            name: row.get(0),
            is_view: row.get(1),
            column: row.get(2),
        })
        .collect()
}

async fn our_functions() -> Vec<Function> {
    let db = stack().database().await.unwrap();
    let rows = db
        .query(
            "select p.proname::text, coalesce(p.proargnames[1:p.pronargs], '{}')::text[], \
             array(select format_type(t, null) from unnest(p.proargtypes) as t)::text[] \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname = 'public' \
             and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e') \
             order by 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let (names, types): (Vec<String>, Vec<String>) = (row.get(1), row.get(2));
            Function {
                name: row.get(0),
                arguments: names.into_iter().zip(types).collect(),
            }
        })
        .collect()
}

/// The API keys to try: the anon key, and no key at all.
fn outsiders() -> [(&'static str, Option<String>); 2] {
    [
        ("anon key", Some(stack().anon_key.clone())),
        ("no key", None),
    ]
}

fn request(method: reqwest::Method, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
    let mut request =
        reqwest::Client::new().request(method, format!("{}/{path}", stack().rest_url));
    if let Some(key) = key {
        request = request.header("apikey", key).bearer_auth(key);
    }
    request
}

fn is_refused(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

#[tokio::test]
async fn the_public_roles_can_neither_read_nor_write_any_table() {
    let tables = our_tables().await;
    for expected in [
        "chat_sessions",
        "chat_history",
        "whatsapp_messages",
        "form_submissions",
        "chat_session_overview",
    ] {
        assert!(
            tables.iter().any(|t| t.name == expected),
            "{expected} is one of our tables"
        );
    }
    for Table {
        name: table,
        is_view,
        column,
    } in &tables
    {
        // The service role can: the refusals below are about the role, not the request.
        let read = request(reqwest::Method::GET, table, Some(&stack().service_role_key))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), StatusCode::OK, "service_role reads {table}");

        for (who, key) in outsiders() {
            let read = request(
                reqwest::Method::GET,
                &format!("{table}?select=*"),
                key.as_deref(),
            )
            .send()
            .await
            .unwrap();
            let status = read.status();
            let body = read.text().await.unwrap();
            assert!(is_refused(status), "{who} read {table}: {status} {body}");

            for method in [
                reqwest::Method::POST,
                reqwest::Method::PATCH,
                reqwest::Method::DELETE,
            ] {
                let write = request(
                    method.clone(),
                    &format!("{table}?{column}=is.null"),
                    key.as_deref(),
                )
                .json(&json!({ column: null }))
                .send()
                .await
                .unwrap();
                // A view that cannot be written at all answers 405 before privileges are checked.
                let refused = is_refused(write.status())
                    || (*is_view && write.status() == StatusCode::METHOD_NOT_ALLOWED);
                assert!(refused, "{who} {method} {table}: {}", write.status());
            }
        }
    }
}

#[tokio::test]
async fn the_public_roles_cannot_call_any_function() {
    let functions = our_functions().await;
    assert!(
        functions.len() >= 7,
        "{:?}",
        functions.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
    for function in &functions {
        // Every argument named and well typed, so the server finds the function and the
        // database decides on the privilege alone.
        let args: Map<String, Value> = function
            .arguments
            .iter()
            .map(|(name, ty)| (name.clone(), sample(ty)))
            .collect();
        let path = format!("rpc/{}", function.name);

        let allowed = request(
            reqwest::Method::POST,
            &path,
            Some(&stack().service_role_key),
        )
        .json(&args)
        .send()
        .await
        .unwrap();
        let status = allowed.status();
        let body = allowed.text().await.unwrap();
        assert!(
            !is_refused(status),
            "service_role calls {}: {status} {body}",
            function.name
        );
        assert!(
            !body.contains("PGRST202"),
            "{} is found: {body}",
            function.name
        );

        for (who, key) in outsiders() {
            let call = request(reqwest::Method::POST, &path, key.as_deref())
                .json(&args)
                .send()
                .await
                .unwrap();
            let status = call.status();
            let body: Value = call.json().await.unwrap();
            assert!(
                is_refused(status),
                "{who} called {}: {status} {body}",
                function.name
            );
            assert_eq!(
                body["code"], "42501",
                "{who} calling {}: {body}",
                function.name
            );
        }
    }
}
