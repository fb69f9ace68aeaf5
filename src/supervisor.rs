//! Supervision of the agent's long-lived tasks (HTTP server, WAL writer,
//! scheduler, each sender).
//!
//! Owns: restarting a task that panicked, with backoff; counting restarts
//! (`cairn_task_restarts_total{task}`); and the verdict "a task keeps
//! failing", which stops the systemd watchdog notifications so systemd
//! restarts the whole agent. Must never: restart a task that ended
//! normally (that is how tasks stop), or hide a panic (each one is logged
//! with its message).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::metrics::{Emitter, MetricType};
use crate::telemetry::Telemetry;

/// How restarts are paced and when a task counts as failing for good.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A run at least this long resets the backoff and the failure streak.
    pub stable_after: Duration,
    /// This many panics in a row, each within `stable_after` of its start,
    /// and the agent is declared unhealthy.
    pub give_up_after: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            give_up_after: 5,
        }
    }
}

#[derive(Default)]
struct TaskState {
    restarts: AtomicU64,
    streak: AtomicU64,
}

/// Shared by every supervised task; rendered as `cairn_task_restarts_total`.
#[derive(Default)]
pub struct Supervisor {
    policy: Policy,
    tasks: Mutex<BTreeMap<String, Arc<TaskState>>>,
}

impl Supervisor {
    pub fn new(policy: Policy) -> Arc<Self> {
        Arc::new(Supervisor {
            policy,
            tasks: Mutex::new(BTreeMap::new()),
        })
    }

    fn task(&self, name: &str) -> Arc<TaskState> {
        let mut t = match self.tasks.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        Arc::clone(t.entry(name.to_owned()).or_default())
    }

    /// False once some task has failed `give_up_after` times in a row:
    /// then the watchdog stops being fed.
    pub fn healthy(&self) -> bool {
        let t = match self.tasks.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        t.values()
            .all(|s| s.streak.load(Ordering::Relaxed) < u64::from(self.policy.give_up_after))
    }

    pub fn restarts(&self, name: &str) -> u64 {
        self.task(name).restarts.load(Ordering::Relaxed)
    }

    /// Runs the future `factory` makes as a task named `name`; when it
    /// panics, logs and counts it and, after a backoff, runs a fresh one.
    /// Returns once a run ends normally. Dropping or aborting the returned
    /// handle aborts the running task too.
    pub fn supervise<F, Fut>(self: &Arc<Self>, name: &str, mut factory: F) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let st = self.task(name);
        let policy = self.policy;
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut backoff = policy.min_backoff;
            loop {
                let started = tokio::time::Instant::now();
                let task = AbortOnDrop(tokio::spawn(factory()));
                let res = task.join().await;
                let e = match res {
                    Ok(()) => return,
                    Err(e) if e.is_cancelled() => return,
                    Err(e) => e,
                };
                let msg = panic_message(e);
                if started.elapsed() >= policy.stable_after {
                    st.streak.store(0, Ordering::Relaxed);
                    backoff = policy.min_backoff;
                }
                let streak = st.streak.fetch_add(1, Ordering::Relaxed) + 1;
                st.restarts.fetch_add(1, Ordering::Relaxed);
                if streak >= u64::from(policy.give_up_after) {
                    tracing::error!(task = %name, panic = %msg, streak, "task keeps failing; restarting it, and no longer feeding the systemd watchdog");
                } else {
                    tracing::error!(task = %name, panic = %msg, "task panicked; restarting it in {backoff:?}");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(policy.max_backoff);
            }
        })
    }
}

/// A task handle that aborts the task when dropped, so aborting the
/// supervisor stops what it supervises.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl AbortOnDrop {
    pub async fn join(mut self) -> Result<(), tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned()),
        Err(e) => e.to_string(),
    }
}

impl Telemetry for Supervisor {
    fn render(&self, out: &mut Emitter) {
        let t = match self.tasks.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let mut f = out.family(
            "cairn_task_restarts_total",
            "Restarts of a long-lived task after it panicked.",
            MetricType::Counter,
        );
        for (name, s) in t.iter() {
            f.sample(&[("task", name)], s.restarts.load(Ordering::Relaxed) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn quick(give_up_after: u32) -> Policy {
        Policy {
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            stable_after: Duration::from_secs(60),
            give_up_after,
        }
    }

    #[tokio::test]
    async fn restarts_a_panicking_task_counts_it_and_stops_when_it_ends() {
        let sup = Supervisor::new(quick(5));
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        let h = sup.supervise("writer", move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("boom {n}");
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "two panics, then a normal end"
        );
        assert_eq!(sup.restarts("writer"), 2);
        assert!(sup.healthy(), "two failures are under the limit");
        let mut e = Emitter::new();
        sup.render(&mut e);
        let mut text = Vec::new();
        crate::metrics::render_text(e.families(), &mut text);
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("cairn_task_restarts_total{task=\"writer\"} 2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_task_that_keeps_failing_makes_the_agent_unhealthy() {
        let sup = Supervisor::new(quick(3));
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        let h = sup.supervise("sender/a", move || {
            r.fetch_add(1, Ordering::SeqCst);
            async { panic!("always") }
        });
        let calm = sup.supervise("http", std::future::pending::<()>);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while sup.healthy() {
            assert!(tokio::time::Instant::now() < deadline, "never unhealthy");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(sup.restarts("sender/a") >= 3);
        assert_eq!(sup.restarts("http"), 0);
        // Still restarted (with backoff): systemd decides when to kill.
        let before = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(runs.load(Ordering::SeqCst) > before);
        h.abort();
        calm.abort();
    }

    #[tokio::test]
    async fn aborting_the_supervisor_aborts_the_task() {
        let sup = Supervisor::new(quick(3));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let h = sup.supervise("scheduler", move || {
            let tx = tx.take();
            async move {
                let _keep = tx;
                std::future::pending::<()>().await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        h.abort();
        // The task's sender half is dropped when the task is aborted.
        tokio::time::timeout(Duration::from_secs(2), rx)
            .await
            .expect("task still running after its supervisor was aborted")
            .unwrap_err();
    }
}
