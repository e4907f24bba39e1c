//! The hosted form (`GET /form`) in a real browser: headless Chromium, driven over WebDriver
//! (chromedriver, with the `fantoccini` client), on `make dev`'s sandbox assembly with its
//! Turnstile stand-in. A person fills the form on a phone-sized window: a bad phone is caught on
//! the page, a good one is sent, the confirmation shows and the template reaches the customer
//! through the Graph stand-in. The business's page (examples/embed.html) embeds the form from an
//! allowed origin, and is refused from another; the business's own form
//! (examples/own-page.html) posts across origins only where CORS allows it. axe-core checks the
//! page against WCAG 2 A and AA, and a screenshot is left at `target/form-screenshot.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` and the npm package axe-core, which
//! `scripts/install-test-deps.sh` installs (as `make test` does): without them this test fails.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Html;
use fantoccini::{Client, ClientBuilder, Locator};
use sandbox::dev::DevBridge;
use serde_json::{Value, json};

const INSTALL: &str = "run scripts/install-test-deps.sh (it installs Debian's chromium and \
                       chromium-driver and the npm package axe-core; CI does)";

/// Where the example pages say the bridge is (`make dev`'s address); served with the test's.
const EXAMPLES_BRIDGE: &str = "http://127.0.0.1:3000";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("target"))
}

/// A program on the PATH, or the failure that says how to install it.
fn required(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed: {INSTALL}"))
}

fn axe_source() -> String {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    let path = cache.join("whatsapp-retell-bridge/axe-core/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("axe-core is not at {}: {e}; {INSTALL}", path.display()))
}

/// chromedriver on a free port, stopped when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_chromedriver() -> Chromedriver {
    let program = required("chromedriver");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("chromedriver did not start: {e}; {INSTALL}"));
    let driver = Chromedriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(answer) = http.get(format!("{}/status", driver.url)).send().await {
            if answer.status().is_success() {
                return driver;
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(driver: &Chromedriver) -> Client {
    let chromium = required("chromium");
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=390,844", "--lang=es-MX"],
            // A phone's viewport (the window alone stays at least 500 px wide).
            "mobileEmulation": { "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2 } },
            // A Mexican visitor's browser: the page picks Spanish from Accept-Language.
            "prefs": { "intl.accept_languages": "es-MX,es" },
        },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("Chromium did not start under chromedriver: {e}; {INSTALL}"))
}

/// Serves examples/*.html on a free port, pointing them at the bridge at `bridge`.
async fn serve_examples(listener: tokio::net::TcpListener, bridge: String) {
    let page = |name: &'static str| {
        let bridge = bridge.clone();
        move || {
            let text = std::fs::read_to_string(repository().join("examples").join(name))
                .expect("the example");
            async move { Html(text.replace(EXAMPLES_BRIDGE, &bridge)) }
        }
    };
    let router = Router::new()
        .route("/embed.html", axum::routing::get(page("embed.html")))
        .route("/own-page.html", axum::routing::get(page("own-page.html")));
    axum::serve(listener, router).await.unwrap();
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

/// Waits until `script` (a function body) returns true in the page.
async fn until(client: &Client, what: &str, script: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if client.execute(script, vec![]).await.unwrap() == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts the page's `fetch` calls in `window.__posts` (lost if the page navigates).
const COUNT_POSTS: &str = "window.__posts = 0; const fetch = window.fetch; \
     window.fetch = function () { window.__posts += 1; return fetch.apply(this, arguments); };";

/// axe-core's WCAG 2 A and AA rules on the current page: the violations, none expected.
async fn accessibility_violations(client: &Client, axe: &str) -> Vec<Value> {
    client.execute(axe, vec![]).await.expect("axe-core loads");
    let answer = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] })
                .then(result => done({ passes: result.passes.length,
                    violations: result.violations.map(v => ({
                        id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary) })) }))
                .catch(error => done({ passes: 0,
                    violations: [{ id: 'axe-error', help: String(error) }] }));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    // Labels, names, contrast, ARIA, language, …: a page checked by no rule passed nothing.
    assert!(
        answer["passes"].as_u64().unwrap_or(0) >= 10,
        "axe-core checked too little: {answer}"
    );
    answer["violations"].as_array().cloned().unwrap_or_default()
}

fn assert_accessible(state: &str, violations: &[Value]) {
    assert!(
        violations.is_empty(),
        "axe-core (WCAG 2 A, AA) on the form {state}:\n{}",
        serde_json::to_string_pretty(violations).unwrap()
    );
}

/// Fills the form as a person would: name, national phone, consent; then waits for the
/// widget's token and sends.
async fn fill_and_send(client: &Client, name: &str, phone: &str) {
    client
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    let field = client.find(Locator::Id("phone")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(phone).await.unwrap();
    let consent = client.find(Locator::Id("consent")).await.unwrap();
    if !consent.is_selected().await.unwrap() {
        consent.click().await.unwrap();
    }
    widget_token(client).await;
    click(client, Locator::Id("submit")).await;
    until(
        client,
        "the confirmation",
        "const c = document.getElementById('confirmation'); return !!c && !c.hidden;",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_fills_the_hosted_form_in_chromium_and_gets_the_template() {
    let started = Instant::now();
    let axe = axe_source();
    let driver = start_chromedriver().await;

    let (bridge_listener, bridge_address) = listener().await;
    let (allowed_listener, allowed) = listener().await;
    let (other_listener, other) = listener().await;
    let base = format!("http://{bridge_address}");
    let env = HashMap::from([(
        "FORM_ALLOWED_ORIGINS".to_owned(),
        format!("http://{allowed}"),
    )]);
    let bridge = DevBridge::assemble(&env).unwrap();
    let service = bridge.service();
    tokio::spawn(async move { axum::serve(bridge_listener, service).await.unwrap() });
    tokio::spawn(serve_examples(allowed_listener, base.clone()));
    tokio::spawn(serve_examples(other_listener, base.clone()));
    let graph = bridge.graph.clone().unwrap();
    let client = browser(&driver).await;

    // The page: labels, the default country, a bad phone caught without a request.
    client.goto(&format!("{base}/form")).await.unwrap();
    for (field, label) in [
        ("name", "Nombre"),
        ("phone", "WhatsApp"),
        ("consent", "Acepto"),
    ] {
        let text = client
            .find(Locator::Css(&format!("label[for={field}]")))
            .await
            .unwrap_or_else(|e| panic!("no label for #{field}: {e}"))
            .text()
            .await
            .unwrap();
        assert!(
            text.to_lowercase().contains(&label.to_lowercase()),
            "#{field}'s label: {text:?}"
        );
    }
    let country = client.find(Locator::Id("country")).await.unwrap();
    let selected = client
        .execute(
            "const s = document.getElementById('country'); \
             return s.options[s.selectedIndex].getAttribute('data-code');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        selected,
        json!("52"),
        "FORM_DEFAULT_COUNTRY is MX: {country:?}"
    );
    assert_accessible("as opened", &accessibility_violations(&client, &axe).await);
    std::fs::create_dir_all(target_dir()).unwrap();
    let screenshot = target_dir().join("form-screenshot.png");
    std::fs::write(&screenshot, client.screenshot().await.unwrap()).unwrap();

    client.execute(COUNT_POSTS, vec![]).await.unwrap();
    client
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys("Ana")
        .await
        .unwrap();
    client
        .find(Locator::Id("phone"))
        .await
        .unwrap()
        .send_keys("12")
        .await
        .unwrap();
    click(&client, Locator::Id("consent")).await;
    click(&client, Locator::Id("submit")).await;
    let error = client.find(Locator::Id("phone-error")).await.unwrap();
    assert!(
        !error.text().await.unwrap().trim().is_empty(),
        "#phone-error says nothing"
    );
    let invalid = client.find(Locator::Id("phone")).await.unwrap();
    assert_eq!(
        invalid.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(
        client
            .execute("return window.__posts;", vec![])
            .await
            .unwrap(),
        json!(0),
        "the page posted a bad phone"
    );
    assert_accessible(
        "showing a field error",
        &accessibility_violations(&client, &axe).await,
    );

    // Corrected and sent: the confirmation, then the template to that phone.
    client
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    fill_and_send(&client, "Ana", "55 1234 5678").await;
    let confirmation = client.find(Locator::Id("confirmation")).await.unwrap();
    let thanks = confirmation.text().await.unwrap();
    assert!(thanks.contains("WhatsApp"), "{thanks}");
    assert_eq!(
        client
            .execute("return window.__posts;", vec![])
            .await
            .unwrap(),
        json!(1)
    );
    bridge.queue.idle().await;
    let sent: Vec<_> = graph
        .accepted()
        .into_iter()
        .filter(|m| m.to == "+525512345678")
        .collect();
    assert_eq!(sent.len(), 1, "{:?}", graph.accepted());
    assert_eq!(sent[0].message_type, "template");
    assert_accessible(
        "after sending",
        &accessibility_violations(&client, &axe).await,
    );

    // Embedded by the business's page on an allowed origin: the form is there and works.
    client
        .goto(&format!("http://{allowed}/embed.html"))
        .await
        .unwrap();
    let frame = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("lead-form-frame"))
        .await
        .unwrap();
    frame.enter_frame().await.unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("lead-form"))
        .await
        .expect("the form in the allowed origin's frame");
    fill_and_send(&client, "Beto", "33 1234 5678").await;
    client.enter_parent_frame().await.unwrap();
    bridge.queue.idle().await;
    assert!(
        graph.accepted().iter().any(|m| m.to == "+523312345678"),
        "the form sent from the frame reached the customer"
    );

    // The same page on another origin: the browser refuses the frame (frame-ancestors).
    client
        .goto(&format!("http://{other}/embed.html"))
        .await
        .unwrap();
    until(
        &client,
        "the page",
        "return document.readyState === 'complete';",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frame = client.find(Locator::Id("lead-form-frame")).await.unwrap();
    frame.enter_frame().await.unwrap();
    let inside = client.find_all(Locator::Id("lead-form")).await.unwrap();
    assert!(
        inside.is_empty(),
        "a page on {other} shows the form in a frame"
    );
    let shown = client
        .execute("return document.URL;", vec![])
        .await
        .unwrap();
    assert!(
        shown
            .as_str()
            .is_some_and(|url| url.starts_with("chrome-error:")),
        "the refused frame shows {shown}"
    );
    client.enter_parent_frame().await.unwrap();

    // The business's own form posting across origins: allowed by CORS, and not from elsewhere.
    let before = graph.accepted().len();
    client
        .goto(&format!("http://{allowed}/own-page.html"))
        .await
        .unwrap();
    own_page_send(&client, "Caro", "81 1234 5678").await;
    until(
        &client,
        "the own page's answer",
        "return !!document.getElementById('sent');",
    )
    .await;
    bridge.queue.idle().await;
    assert!(
        graph.accepted().iter().any(|m| m.to == "+528112345678"),
        "the own page's post reached the customer"
    );
    client
        .goto(&format!("http://{other}/own-page.html"))
        .await
        .unwrap();
    own_page_send(&client, "Dani", "81 8765 4321").await;
    until(
        &client,
        "the own page's failure",
        "return document.getElementById('status').textContent.length > 0;",
    )
    .await;
    bridge.queue.idle().await;
    assert_eq!(
        graph.accepted().len(),
        before + 1,
        "a page on an origin not allowed posted the form"
    );

    client.close().await.unwrap();
    println!(
        "browser test: {:.1} s; screenshot at {}",
        started.elapsed().as_secs_f64(),
        screenshot.display()
    );
}

async fn own_page_send(client: &Client, name: &str, phone: &str) {
    client
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    client
        .find(Locator::Id("phone"))
        .await
        .unwrap()
        .send_keys(phone)
        .await
        .unwrap();
    click(client, Locator::Id("consent")).await;
    widget_token(client).await;
    click(client, Locator::Css("#own-form button[type=submit]")).await;
}

/// Clicks the element `locator` finds.
async fn click(client: &Client, locator: Locator<'_>) {
    client.find(locator).await.unwrap().click().await.unwrap();
}

/// Waits for the (fake) Turnstile widget to put its token in the form.
async fn widget_token(client: &Client) {
    until(
        client,
        "the widget's token",
        "const t = document.querySelector('[name=\"cf-turnstile-response\"]'); \
         return !!(t && t.value);",
    )
    .await;
}
