//! Runs an engine whose future is not `Send` (the files and calendar engines borrow inside
//! their transfer streams) on a blocking thread of the same runtime — and stops it with its
//! step. A step is aborted when its lease is lost; the blocking thread would otherwise go on
//! copying beside the worker that took the step over, two writers on one library or home.

use tokio::sync::oneshot;

/// Drives `work()` to completion on a blocking thread, or drops it there as soon as the future
/// returned here is dropped (the step aborted). Dropping an engine mid-way is no worse than a
/// kill -9, which every engine survives. `Err` only if the engine panicked.
pub async fn off_the_runtime<T, F, Fut>(work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let runtime = tokio::runtime::Handle::current();
    // Held by this future only: dropping it (the step aborted) wakes `stopped` below.
    let (_stop, stopped) = oneshot::channel::<()>();
    let run = tokio::task::spawn_blocking(move || {
        // The future is built on the blocking thread: only its inputs cross threads.
        runtime.block_on(async move {
            tokio::select! {
                out = work() => Some(out),
                _ = stopped => None,
            }
        })
    });
    match run.await {
        Ok(Some(out)) => Ok(out),
        // `_stop` lives as long as this future, so the engine cannot have been stopped while
        // someone still waits for it; said rather than assumed.
        Ok(None) => Err("the engine was stopped".into()),
        Err(e) => Err(format!("the engine stopped: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Sets its flag when dropped: proof the engine's future was dropped, not left running.
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_step_stops_its_engine() {
        let (ticks, dropped) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (t, d) = (ticks.clone(), dropped.clone());
        let step = tokio::spawn(off_the_runtime(move || async move {
            let _guard = Dropped(d);
            // An engine that would copy for a long time.
            for _ in 0..100_000 {
                t.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        while ticks.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        step.abort();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the engine ran on after its step was aborted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = ticks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            after,
            "no work after the stop"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finished_engine_hands_back_its_result() {
        let out = off_the_runtime(|| async { 6 * 7 }).await;
        assert_eq!(out, Ok(42));
    }
}
