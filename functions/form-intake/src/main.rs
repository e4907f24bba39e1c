//! The form-intake Lambda: configuration and clients built once at INIT (the SQS client at the
//! first job queued: see `SqsQueue::from_config`), then each request handed to the form as
//! `lambda_http` gives it, with the address it came from, and its answer handed back. With
//! `FORM_TURNSTILE_SITE_KEY` set the form also serves its page and takes browsers' posts,
//! verified with Turnstile's siteverify.

use lambda_http::{Error, Request, service_fn};
use shared::bot_check::{BotCheck, TurnstileClient};
use shared::config::Env;
use shared::ingress::form::{BrowserForms, FormIntake};
use shared::queue::SqsQueue;
use shared::store::PostgrestStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // The secret's keys (BRIDGE_SECRET_ID), else the environment's: see shared::secrets.
    let env = shared::secrets::read_into(Env::from_process(), form_intake::SECRETS).await?;
    let config = form_intake::Config::from_env(&env)?;
    let client = shared::http::client();
    let store = PostgrestStore::new(&config.store, client.clone());
    let queue = SqsQueue::from_config(&config.queue).await;
    let intake = FormIntake::new(store, queue, config.form);
    match config.browser {
        None => serve(intake).await,
        Some(browser) => {
            let bot_check =
                TurnstileClient::new(browser.verify_url.as_str(), browser.secret.clone(), client);
            serve(intake.with_browser_forms(BrowserForms {
                config: browser,
                bot_check,
            }))
            .await
        }
    }
}

async fn serve<B: BotCheck>(intake: FormIntake<PostgrestStore, SqsQueue, B>) -> Result<(), Error> {
    let intake = &intake;
    lambda_http::run(service_fn(move |request: Request| async move {
        let request = form_intake::with_source_ip(request);
        Ok::<_, Error>(intake.handle(&request).await)
    }))
    .await
}
