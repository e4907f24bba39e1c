//! What the stand-ins share: an HTTP server on its own thread, and scripted faults.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// An HTTP server on a loopback port, served from a thread of its own so that it outlives any
/// one test's runtime and answers while a test blocks. Dropping it stops it.
pub struct Server {
    pub address: SocketAddr,
    service: Arc<ServiceMeter>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The time the server's handlers took, summed, and how many requests they answered: what the
/// benchmark subtracts from a turn to leave the bridge's own time.
#[derive(Default)]
struct ServiceMeter {
    nanos: AtomicU64,
    requests: AtomicU64,
}

async fn meter_service(
    axum::extract::State(meter): axum::extract::State<Arc<ServiceMeter>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let nanos = started.elapsed().as_nanos().try_into().unwrap_or(u64::MAX);
    meter.nanos.fetch_add(nanos, Ordering::Relaxed);
    meter.requests.fetch_add(1, Ordering::Relaxed);
    response
}

impl Server {
    pub fn start(router: axum::Router) -> Server {
        let service = Arc::new(ServiceMeter::default());
        let router = router.layer(axum::middleware::from_fn_with_state(
            service.clone(),
            meter_service,
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the port's address");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the stand-in serves");
            });
        });
        Server {
            address,
            service,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The time spent in handlers since the server started, and the requests answered: both
    /// only grow, so a caller takes the difference over what it measures.
    pub fn service_time(&self) -> (Duration, u64) {
        (
            Duration::from_nanos(self.service.nanos.load(Ordering::Relaxed)),
            self.service.requests.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Faults a test has queued for an operation, used up one request each, in order; and, for the
/// chaos run, faults drawn at random for a share of every operation's requests.
#[derive(Debug)]
pub struct FaultQueue<Op, Fault> {
    queued: VecDeque<(Op, Fault)>,
    random: Option<(f64, Vec<Fault>)>,
}

impl<Op, Fault> Default for FaultQueue<Op, Fault> {
    fn default() -> Self {
        Self {
            queued: VecDeque::new(),
            random: None,
        }
    }
}

impl<Op: PartialEq, Fault: Clone> FaultQueue<Op, Fault> {
    pub fn push(&mut self, op: Op, fault: Fault) {
        self.queued.push_back((op, fault));
    }

    /// From now on a `rate` share (0–1) of the requests not given a queued fault fail with one
    /// of `faults`, chosen at random.
    pub fn fail_at_random(&mut self, rate: f64, faults: Vec<Fault>) {
        self.random = (rate > 0.0 && !faults.is_empty()).then_some((rate, faults));
    }

    /// The next fault queued for `op`, if any, else a random one when they are on.
    pub fn take(&mut self, op: &Op) -> Option<Fault> {
        if let Some(index) = self.queued.iter().position(|(queued, _)| queued == op) {
            return self.queued.remove(index).map(|(_, fault)| fault);
        }
        let (rate, faults) = self.random.as_ref()?;
        (fastrand::f64() < *rate).then(|| faults[fastrand::usize(..faults.len())].clone())
    }
}

/// State behind a mutex that a panicking handler cannot poison for the rest of a test.
pub fn lock<T>(state: &Arc<Mutex<T>>) -> MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An id no other stand-in of this process, nor of another test process, hands out: the tests
/// share one database, where chat ids and wamids are unique.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}_{}_{n:05}", std::process::id())
}
