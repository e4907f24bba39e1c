//! The outreach limits hold under concurrency: `record_form_submission` decides in SQL, under
//! the customer's row lock and the day's counter, so forms posted at the same moment cannot
//! start two outreaches for one customer, nor more than the day's limit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::future::join_all;
use sandbox::LocalStack;
use shared::domain::{
    CountryId, CustomerKey, CustomerName, FormSubmission, IdempotencyKey, OutcomeReason,
    OutreachLimits, PhoneNumber, RecordedSubmission, SubmissionStatus,
};
use shared::store::{PostgrestStore, SessionStore};

use crate::support::{at, text_from, wamid};

/// A Mérida mobile (999 + 7 digits) no other test of this run uses.
fn unique_phone() -> PhoneNumber {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let local = (std::process::id() % 1_000) * 10_000 + n % 10_000;
    PhoneNumber::parse(&format!("+52 999 {local:07}"), CountryId::MX).unwrap()
}

fn submission(phone: &PhoneNumber, key: &str) -> FormSubmission {
    FormSubmission {
        idempotency_key: IdempotencyKey::parse(format!("{key}-{}", std::process::id())).unwrap(),
        customer_key: CustomerKey::from_phone(phone),
        phone: phone.clone(),
        name: CustomerName::parse("Lía").unwrap(),
        fields: BTreeMap::new(),
    }
}

/// Records `submission`, again while the API answers "unavailable" (a pool busy with the other
/// callers): the same idempotency key is the same submission, so a retry is safe.
async fn record(
    store: PostgrestStore,
    submission: FormSubmission,
    limits: OutreachLimits,
) -> RecordedSubmission {
    for _ in 0..100 {
        match store.record_form_submission(&submission, limits).await {
            Ok(recorded) => return recorded,
            Err(error) if error.is_transient() => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("{error:?}"),
        }
    }
    panic!("the store stayed unavailable")
}

/// How many results had each status and reason.
fn tally(results: &[RecordedSubmission]) -> BTreeMap<(String, Option<&'static str>), usize> {
    let mut tally = BTreeMap::new();
    for recorded in results {
        let status = format!("{:?}", recorded.status);
        let reason = recorded.outcome_reason.map(OutcomeReason::as_str);
        *tally.entry((status, reason)).or_default() += 1;
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_forms_for_one_customer_start_exactly_one_outreach() {
    let stack = LocalStack::shared();
    let phone = unique_phone();
    // A customer who wrote long ago: their session exists, so no caller waits on another's
    // insert of it, and only the row lock keeps the fifty apart.
    let customer = CustomerKey::from_phone(&phone);
    let old_message = text_from(&customer, wamid("long-ago"), "hola", at(0));
    stack.store().record_inbound(&[old_message]).await.unwrap();
    let posts = (0..50).map(|i| {
        let submission = submission(&phone, &format!("one-customer-{i}"));
        tokio::spawn(record(stack.store(), submission, OutreachLimits::DEFAULT))
    });
    let results: Vec<_> = join_all(posts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    assert!(results.iter().all(|r| r.is_new), "fifty submissions");
    assert_eq!(
        tally(&results),
        BTreeMap::from([
            (("Queued".to_owned(), None), 1),
            (("Skipped".to_owned(), Some("conversation_live")), 49),
        ])
    );
    let db = stack.database().await.unwrap();
    let rows = db
        .query(
            "select status, count(*) from form_submissions where customer_key = $1 group by 1 order by 1",
            &[&CustomerKey::from_phone(&phone).as_str()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect::<Vec<_>>();
    assert_eq!(
        rows,
        [("queued".to_owned(), 1), ("skipped".to_owned(), 49)],
        "all fifty recorded, one queued"
    );
}

/// On a stack of its own: the day's counter is the whole bridge's, and other tests of this
/// binary record forms on the shared stack at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_limit_of_ten_fifty_concurrent_forms_contact_exactly_ten() {
    let own = LocalStack::start().unwrap();
    let limits = OutreachLimits {
        daily_limit: 10,
        ..OutreachLimits::DEFAULT
    };
    let submissions: Vec<_> = (0..50)
        .map(|i| submission(&unique_phone(), &format!("limit-{i}")))
        .collect();
    let posts = submissions
        .iter()
        .map(|submission| tokio::spawn(record(own.store(), submission.clone(), limits)));
    let results: Vec<_> = join_all(posts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    assert_eq!(
        tally(&results),
        BTreeMap::from([
            (("Queued".to_owned(), None), 10),
            (("Held".to_owned(), Some("daily_limit")), 40),
        ])
    );
    let db = own.database().await.unwrap();
    let contacted: i32 = db
        .query_one("select contacted from outreach_days", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(contacted, 10, "the day counted ten");
    let held: i64 = db
        .query_one(
            "select count(*) from form_submissions where status = 'held' and outcome_reason = 'daily_limit'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 40, "the held forms are kept, with their reason");

    // A held form posted again stays held, even once the limit is raised.
    let held = results
        .iter()
        .position(|r| r.status == SubmissionStatus::Held)
        .unwrap();
    let raised = OutreachLimits {
        daily_limit: 100,
        ..limits
    };
    let again = record(own.store(), submissions[held].clone(), raised).await;
    assert_eq!(
        (again.is_new, again.status, again.submission_id),
        (false, SubmissionStatus::Held, results[held].submission_id)
    );
}
