//! What the stand-ins share: an HTTP server on its own thread, and scripted faults.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// An HTTP server on a loopback port, served from a thread of its own so that it outlives any
/// one test's runtime and answers while a test blocks. Dropping it stops it.
pub struct Server {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(router: axum::Router) -> Server {
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
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
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

/// Faults a test has queued for an operation, used up one request each, in order.
#[derive(Debug)]
pub struct FaultQueue<Op, Fault> {
    queued: VecDeque<(Op, Fault)>,
}

impl<Op, Fault> Default for FaultQueue<Op, Fault> {
    fn default() -> Self {
        Self {
            queued: VecDeque::new(),
        }
    }
}

impl<Op: PartialEq, Fault> FaultQueue<Op, Fault> {
    pub fn push(&mut self, op: Op, fault: Fault) {
        self.queued.push_back((op, fault));
    }

    /// The next fault queued for `op`, if any.
    pub fn take(&mut self, op: &Op) -> Option<Fault> {
        let index = self.queued.iter().position(|(queued, _)| queued == op)?;
        self.queued.remove(index).map(|(_, fault)| fault)
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
