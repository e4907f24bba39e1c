//! The short chaos run: duplicates, out-of-order bursts, Retell and Graph failures and killed
//! workers, and nothing lost, doubled or out of order at the end (`make chaos` runs the full one).

use bridge_tests::chaos::{self, ChaosPlan};
use sandbox::LocalStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_doubled_or_reordered_under_faults_duplicates_and_kills() {
    let plan = ChaosPlan::short();
    let report = chaos::run(&plan, LocalStack::shared()).await.unwrap();
    println!("{report}");
    // The run did what it claims: faults happened, and every customer wrote.
    let volume = &report.volume;
    assert_eq!(volume.customers, plan.customers);
    assert_eq!(volume.messages, plan.customers * plan.messages_per_customer);
    assert!(
        volume.duplicate_deliveries > 0 && volume.late_deliveries > 0,
        "{volume:?}"
    );
    assert!(volume.workers_killed > 0, "{volume:?}");
    assert!(
        volume.retell_failures > 0 && volume.graph_failures > 0,
        "{volume:?}"
    );
    assert!(report.passed(), "{report}");

    // Without kills not even a reply part goes out twice: resends come only from a worker that
    // died between Graph's acceptance and the store's record.
    let calm = ChaosPlan {
        kill_rate: 0.0,
        ..ChaosPlan::short()
    };
    let report = chaos::run(&calm, LocalStack::shared()).await.unwrap();
    println!("{report}");
    assert!(report.passed(), "{report}");
    assert_eq!(report.parts_resent_after_kills, 0, "{report}");
}
