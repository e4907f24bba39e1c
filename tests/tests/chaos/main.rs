//! The short chaos runs (`make chaos` runs the full one): duplicates, out-of-order bursts,
//! Retell and Graph failures, killed workers, and the store, the queue, Graph's token and
//! Retell's account each taken away for 5 s; every message answered once and in order at the
//! end. Each run has a stack of its own: its sweeper sweeps the whole database.

use bridge_tests::chaos::{self, ChaosPlan};
use sandbox::LocalStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_answered_once_and_in_order_through_faults_kills_and_outages() {
    let stack = LocalStack::start().unwrap();
    let plan = ChaosPlan::short();
    let report = chaos::run(&plan, &stack).await.unwrap();
    println!("{report}");
    // The run did what it claims: faults happened, every customer wrote, every outage bit.
    let volume = &report.volume;
    assert_eq!(volume.customers, plan.customers);
    assert_eq!(volume.messages, plan.customers * plan.messages_per_customer);
    assert!(
        volume.duplicate_deliveries > 0 && volume.late_deliveries > 0,
        "{volume:?}"
    );
    assert!(volume.workers_killed > 0, "{volume:?}");
    let moments = &report.kill_moments;
    assert!(
        moments.after_retell + moments.after_graph > 0,
        "kills only before any call out: {moments:?}"
    );
    assert!(
        volume.retell_failures > 0 && volume.graph_failures > 0,
        "{volume:?}"
    );
    assert_eq!(report.windows.len(), plan.outages.len(), "{report}");
    for window in &report.windows {
        assert!(window.refused > 0, "{window:?} refused nothing\n{report}");
    }
    assert!(report.passed(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_kills_late_answers_or_outages_nothing_is_sent_twice() {
    // Resends come only from a part Graph took whose record never happened: a worker killed in
    // between, an answer that came after the client gave up, the store down.
    let stack = LocalStack::start().unwrap();
    let report = chaos::run(&ChaosPlan::calm(), &stack).await.unwrap();
    println!("{report}");
    assert!(report.passed(), "{report}");
    assert_eq!(report.resent.total(), 0, "{report}");
    assert_eq!(report.volume.graph_slow_answers, 0, "{report}");
}
