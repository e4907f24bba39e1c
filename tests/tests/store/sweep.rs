//! Work that cannot be stranded, through the adapter: the sweeper finds each kind of stranded
//! work once, two sweepers at once never find the same work, a turn put back keeps its messages
//! waiting (its attempt given back when it says so), and the operator's `retry_failed` puts
//! failed work back for the sweeper. Each sweep test runs on a stack of its own, so that what a
//! sweep finds is exactly what the test left there; time passes by backdating rows.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::future::join_all;
use sandbox::LocalStack;
use serde_json::{Value, json};
use shared::domain::{
    CountryId, CustomerKey, OutreachLimits, PhoneNumber, StrandedWork, SubmissionId, TurnClaim,
    TurnRetry,
};
use shared::store::{PostgrestStore, SessionStore};

use crate::support::{MAX_ATTEMPTS, at, form, new_customer, stack, text_from, wamid};

const LEASE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(60);

/// No cooldown and no daily limit to speak of: every form here is accepted (queued).
const ACCEPT_ALL: OutreachLimits = OutreachLimits {
    cooldown: Duration::ZERO,
    daily_limit: 1_000_000,
};

/// A Tijuana mobile (664 + 7 digits) no other test of this run uses.
fn unique_phone() -> PhoneNumber {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let local = (std::process::id() % 1_000) * 10_000 + n % 10_000;
    PhoneNumber::parse(&format!("+52 664 {local:07}"), CountryId::MX).unwrap()
}

/// A customer with one message waiting, recorded as the webhook records it.
async fn waiting_customer(store: &PostgrestStore, sent_at_seconds: i64) -> CustomerKey {
    let customer = new_customer();
    let message = text_from(&customer, wamid("sweep"), "hola", at(sent_at_seconds));
    let recorded = store
        .record_webhook(&[message], &[], &[], &[])
        .await
        .unwrap();
    assert!(recorded.messages[0].is_new);
    customer
}

/// A queued form submission.
async fn queued_submission(store: &PostgrestStore, label: &str) -> (SubmissionId, CustomerKey) {
    let submission = form(&unique_phone(), "Sara", label);
    let recorded = store
        .record_form_submission(&submission, ACCEPT_ALL)
        .await
        .unwrap();
    assert_eq!(
        recorded.status,
        shared::domain::SubmissionStatus::Queued,
        "{recorded:?}"
    );
    (recorded.submission_id, submission.customer_key)
}

/// Runs `sql` with `key` as its `$1`, behind the API.
async fn execute(stack: &LocalStack, sql: &str, key: &str) {
    let db = stack.database().await.unwrap();
    let changed = db.execute(sql, &[&key]).await.unwrap();
    assert!(changed > 0, "{sql} changed nothing for {key}");
}

/// The customer's waiting messages last changed `minutes` ago.
async fn age_messages(stack: &LocalStack, customer: &CustomerKey, minutes: i32) {
    execute(
        stack,
        &format!(
            "update whatsapp_messages set updated_at = now() - interval '{minutes} minutes' \
             where customer_key = $1"
        ),
        customer.as_str(),
    )
    .await;
}

/// The submission last changed `minutes` ago.
async fn age_submission(stack: &LocalStack, id: SubmissionId, minutes: i32) {
    execute(
        stack,
        &format!(
            "update form_submissions set updated_at = now() - interval '{minutes} minutes' \
             where id = $1::text::uuid"
        ),
        &id.to_string(),
    )
    .await;
}

fn turns(work: &StrandedWork) -> BTreeSet<&str> {
    work.turns.iter().map(CustomerKey::as_str).collect()
}

fn submissions(work: &StrandedWork) -> BTreeSet<String> {
    work.submissions
        .iter()
        .map(|(id, _)| id.to_string())
        .collect()
}

#[tokio::test]
async fn the_sweeper_finds_each_kind_of_stranded_work_once() {
    let own = LocalStack::start().unwrap();
    let store = own.store();

    // A message recorded whose job never reached the queue.
    let unqueued = waiting_customer(&store, 0).await;
    age_messages(&own, &unqueued, 2).await;
    // A turn whose worker died, and whose fail_turn never came: its lease ran out.
    let dead = waiting_customer(&store, 10).await;
    let TurnClaim::Claimed(_) = store.claim_turn(&dead, LEASE, MAX_ATTEMPTS).await.unwrap() else {
        panic!("claimed")
    };
    execute(
        &own,
        "update chat_sessions set turn_lease_expires_at = now() - interval '2 minutes' \
         where customer_key = $1",
        dead.as_str(),
    )
    .await;
    age_messages(&own, &dead, 3).await;
    // A turn put back for a retry in a second: the queue retries it, the sweeper waits.
    let released = waiting_customer(&store, 20).await;
    let TurnClaim::Claimed(turn) = store
        .claim_turn(&released, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("claimed")
    };
    let retry = TurnRetry::After {
        delay: Duration::from_secs(1),
        count_attempt: true,
    };
    let failure = store
        .fail_turn(turn.turn_id, "Retell answered 500", retry)
        .await
        .unwrap();
    assert_eq!(failure.released, 1);
    age_messages(&own, &released, 5).await;
    // A live turn, a message waiting behind it.
    let live = waiting_customer(&store, 30).await;
    store.claim_turn(&live, LEASE, MAX_ATTEMPTS).await.unwrap();
    store
        .record_webhook(
            &[text_from(&live, wamid("behind"), "¿hola?", at(31))],
            &[],
            &[],
            &[],
        )
        .await
        .unwrap();
    age_messages(&own, &live, 5).await;
    // A message recorded just now: its job is on its way.
    let fresh = waiting_customer(&store, 40).await;
    // A submission queued and never started, one just queued, and one deferred.
    let (stranded_form, stranded_form_customer) = queued_submission(&store, "stranded").await;
    age_submission(&own, stranded_form, 2).await;
    let (fresh_form, _) = queued_submission(&store, "fresh").await;
    let (deferred_form, _) = queued_submission(&store, "deferred").await;
    assert!(
        store
            .defer_form_submission(deferred_form, "Retell answered 429", Duration::from_secs(5))
            .await
            .unwrap()
    );
    age_submission(&own, deferred_form, 2).await;

    let first = store.sweep_stranded_work(GRACE).await.unwrap();
    assert_eq!(
        first.turns,
        [unqueued.clone(), dead.clone()],
        "the unqueued message and the dead turn, oldest first"
    );
    assert_eq!(
        first.submissions,
        [(stranded_form, stranded_form_customer)],
        "the submission never started"
    );
    assert_eq!((first.gave_up_messages, first.gave_up_submissions), (0, 0));

    let second = store.sweep_stranded_work(GRACE).await.unwrap();
    assert_eq!(
        second,
        StrandedWork::default(),
        "a second sweep right after finds nothing"
    );

    // Later: the released turn and the deferred submission once their time has come, and the
    // fresh ones once the grace has passed. What was found before is not found again.
    execute(
        &own,
        "update chat_sessions set sweep_after = now() - interval '1 second' where customer_key = $1",
        released.as_str(),
    )
    .await;
    execute(
        &own,
        "update form_submissions set sweep_after = now() - interval '1 second' where id = $1::text::uuid",
        &deferred_form.to_string(),
    )
    .await;
    age_messages(&own, &fresh, 2).await;
    age_submission(&own, fresh_form, 2).await;
    let third = store.sweep_stranded_work(GRACE).await.unwrap();
    assert_eq!(
        turns(&third),
        BTreeSet::from([released.as_str(), fresh.as_str()])
    );
    assert_eq!(
        submissions(&third),
        BTreeSet::from([deferred_form.to_string(), fresh_form.to_string()])
    );
    assert!(
        !third.turns.contains(&live),
        "a customer a live turn holds is never found"
    );
    assert_eq!(
        store.sweep_stranded_work(GRACE).await.unwrap(),
        StrandedWork::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweepers_at_the_same_moment_never_find_the_same_work() {
    const CUSTOMERS: usize = 40;
    const SUBMISSIONS: usize = 20;
    const SWEEPERS: usize = 4;
    let own = LocalStack::start().unwrap();
    let store = own.store();
    let mut customers = BTreeSet::new();
    for i in 0..CUSTOMERS {
        customers.insert(waiting_customer(&store, i as i64).await.as_str().to_owned());
    }
    let mut forms = BTreeSet::new();
    for i in 0..SUBMISSIONS {
        let (id, _) = queued_submission(&store, &format!("race-{i}")).await;
        forms.insert(id.to_string());
    }
    let db = own.database().await.unwrap();
    db.batch_execute(
        "update whatsapp_messages set updated_at = now() - interval '5 minutes'; \
         update form_submissions set updated_at = now() - interval '5 minutes';",
    )
    .await
    .unwrap();

    for round in 0..3 {
        let sweeps = (0..SWEEPERS).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.sweep_stranded_work(GRACE).await.unwrap() })
        });
        let found: Vec<StrandedWork> = join_all(sweeps)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let mut seen_turns = Vec::new();
        let mut seen_forms = Vec::new();
        for work in &found {
            seen_turns.extend(work.turns.iter().map(|c| c.as_str().to_owned()));
            seen_forms.extend(work.submissions.iter().map(|(id, _)| id.to_string()));
        }
        let distinct_turns: BTreeSet<_> = seen_turns.iter().cloned().collect();
        let distinct_forms: BTreeSet<_> = seen_forms.iter().cloned().collect();
        assert_eq!(
            seen_turns.len(),
            distinct_turns.len(),
            "round {round}: a customer found twice"
        );
        assert_eq!(
            seen_forms.len(),
            distinct_forms.len(),
            "round {round}: a submission found twice"
        );
        if round == 0 {
            assert_eq!(distinct_turns, customers, "every customer found once");
            assert_eq!(distinct_forms, forms, "every submission found once");
        } else {
            assert!(
                seen_turns.is_empty() && seen_forms.is_empty(),
                "round {round}: found again: {found:?}"
            );
        }
    }
}

#[tokio::test]
async fn retry_failed_puts_failed_work_back_for_the_sweeper() {
    let own = LocalStack::start().unwrap();
    let store = own.store();
    let (form_id, customer) = queued_submission(&store, "retry").await;
    store
        .fail_form_submission(form_id, "Retell answered 401")
        .await
        .unwrap();
    store
        .record_webhook(
            &[text_from(&customer, wamid("retry"), "hola", at(0))],
            &[],
            &[],
            &[],
        )
        .await
        .unwrap();
    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("claimed")
    };
    store
        .fail_turn(
            turn.turn_id,
            "Graph error 190: token expired",
            TurnRetry::No,
        )
        .await
        .unwrap();
    let other = waiting_customer(&store, 0).await;
    let TurnClaim::Claimed(turn) = store.claim_turn(&other, LEASE, MAX_ATTEMPTS).await.unwrap()
    else {
        panic!("claimed")
    };
    store
        .fail_turn(
            turn.turn_id,
            "Graph error 190: token expired",
            TurnRetry::No,
        )
        .await
        .unwrap();

    let later: Value = store
        .call(
            "retry_failed",
            &json!({ "p_customer_key": customer, "p_since": "2999-01-01T00:00:00Z" }),
        )
        .await
        .unwrap();
    assert_eq!(later, json!({ "messages": 0, "submissions": 0 }), "since");
    let retried: Value = store
        .call("retry_failed", &json!({ "p_customer_key": customer }))
        .await
        .unwrap();
    assert_eq!(retried, json!({ "messages": 1, "submissions": 1 }));

    let db = own.database().await.unwrap();
    let row = db
        .query_one(
            "select state, attempts, turn_id is null, failure_reason from whatsapp_messages \
             where customer_key = $1",
            &[&customer.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, bool>(2),
            row.get::<_, String>(3)
        ),
        (
            "pending".to_owned(),
            0,
            true,
            "Graph error 190: token expired".to_owned()
        ),
        "pending again, no attempts, the reason kept"
    );
    let other_state: String = db
        .query_one(
            "select state from whatsapp_messages where customer_key = $1",
            &[&other.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(other_state, "failed", "another customer's stays failed");

    let found = store.sweep_stranded_work(GRACE).await.unwrap();
    assert_eq!(
        found.turns,
        std::slice::from_ref(&customer),
        "queued at the next sweep"
    );
    assert_eq!(found.submissions, [(form_id, customer.clone())]);
    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("the message put back is claimed")
    };
    assert_eq!(turn.messages[0].attempts, 1, "its attempts start again");
}

#[tokio::test]
async fn a_turn_put_back_keeps_its_messages_waiting_and_can_give_its_attempt_back() {
    let store = stack().store();
    let customer = new_customer();
    store
        .record_inbound(&[text_from(&customer, wamid("back"), "hola", at(0))])
        .await
        .unwrap();
    let claim = || async {
        match store.claim_turn(&customer, LEASE, 2).await.unwrap() {
            TurnClaim::Claimed(turn) => turn,
            other => panic!("claimed: {other:?}"),
        }
    };

    // Out of time: put back, the attempt not counted.
    let turn = claim().await;
    assert_eq!(turn.messages[0].attempts, 1);
    let out_of_time = TurnRetry::After {
        delay: Duration::ZERO,
        count_attempt: false,
    };
    let failure = store
        .fail_turn(turn.turn_id, "out of time", out_of_time)
        .await
        .unwrap();
    assert_eq!((failure.released, failure.failed), (1, 0));
    let db = stack().database().await.unwrap();
    let in_seconds = seconds_to_sweep(&db, &customer).await;
    assert!(
        (50.0..=60.0).contains(&in_seconds),
        "the sweeper may look a minute later: {in_seconds}"
    );
    let turn = claim().await;
    assert_eq!(turn.messages[0].attempts, 1, "the attempt was given back");

    // Transient failures, counted, past the maximum of 2: still waiting, still claimed (the
    // queue's receive count bounds the job; a redriven job answers it).
    let transient = TurnRetry::After {
        delay: Duration::from_millis(1_500),
        count_attempt: true,
    };
    store
        .fail_turn(turn.turn_id, "Retell answered 500", transient)
        .await
        .unwrap();
    let in_seconds = seconds_to_sweep(&db, &customer).await;
    assert!(
        (52.0..=62.0).contains(&in_seconds),
        "the retry (rounded up to 2 s) plus a minute: {in_seconds}"
    );
    let turn = claim().await;
    assert_eq!(turn.messages[0].attempts, 2);
    store
        .fail_turn(turn.turn_id, "Retell answered 500", transient)
        .await
        .unwrap();
    let turn = claim().await;
    assert_eq!(
        turn.messages[0].attempts, 3,
        "put back past the maximum, it is claimed again"
    );
    let done = store
        .complete_turn(turn.turn_id, &customer, None, &[])
        .await
        .unwrap();
    assert_eq!(done.answered, 1);
}

/// How long until the sweeper may look at `customer` again.
async fn seconds_to_sweep(db: &tokio_postgres::Client, customer: &CustomerKey) -> f64 {
    db.query_one(
        "select extract(epoch from sweep_after - now())::float8 from chat_sessions \
         where customer_key = $1",
        &[&customer.as_str()],
    )
    .await
    .unwrap()
    .get(0)
}
