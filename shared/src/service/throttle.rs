//! Checking and counting an attempt in its throttling lanes
//! ([`crate::domain::throttle`]): every lane is read and written at once,
//! so that three lanes cost one store round trip, not three.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::Services;
use crate::domain::throttle::{FAILURE_TTL, Lane};
use crate::ports::{Store, StoreError};

/// What the lanes of one attempt said.
#[derive(Debug)]
pub(crate) struct Checked {
    /// Seconds the caller must still wait (the longest of the lanes).
    pub wait: Option<i64>,
    /// The keys a success resets: those that have counted something.
    to_reset: Vec<String>,
}

/// Runs `op` for every key at once; the first error wins.
async fn each<T, F, Fut>(
    store: &Arc<dyn Store>,
    keys: Vec<String>,
    op: F,
) -> Result<Vec<T>, StoreError>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for (i, key) in keys.into_iter().enumerate() {
        let fut = op(store.clone(), key);
        set.spawn(async move { (i, fut.await) });
    }
    let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(set.len()).collect();
    while let Some(joined) = set.join_next().await {
        let (i, result) =
            joined.map_err(|e| StoreError::Unavailable(format!("throttle task: {e}")))?;
        out[i] = Some(result?);
    }
    Ok(out.into_iter().flatten().collect())
}

impl Services {
    /// Reads the lanes of an attempt: whether it must wait, and what a
    /// success would reset.
    pub(crate) async fn throttle_check(
        &self,
        lanes: &[Lane],
        now: i64,
    ) -> Result<Checked, StoreError> {
        let keys = lanes.iter().map(|l| l.key.clone()).collect();
        let counts = each(&self.store, keys, move |store, key| async move {
            store.get_failures(&key, now).await
        })
        .await?;
        let mut checked = Checked {
            wait: None,
            to_reset: Vec::new(),
        };
        for (lane, f) in lanes.iter().zip(counts) {
            let wait = lane.backoff.retry_after(f.count, f.last_at, now);
            checked.wait = checked.wait.max(wait);
            if lane.reset_on_success && f.count > 0 {
                checked.to_reset.push(lane.key.clone());
            }
        }
        Ok(checked)
    }

    /// Counts a failed attempt in every lane.
    pub(crate) async fn throttle_failed(&self, lanes: &[Lane], now: i64) -> Result<(), StoreError> {
        let keys = lanes.iter().map(|l| l.key.clone()).collect();
        each(&self.store, keys, move |store, key| async move {
            store.add_failure(&key, now, FAILURE_TTL).await
        })
        .await
        .map(drop)
    }

    /// A success: resets the lanes that reset (never the per-address one).
    pub(crate) async fn throttle_passed(&self, checked: Checked) -> Result<(), StoreError> {
        each(&self.store, checked.to_reset, |store, key| async move {
            store.clear_failures(&key).await
        })
        .await
        .map(drop)
    }
}

/// "N second(s)", for the messages that say how long to wait.
pub(crate) fn seconds(wait: i64) -> String {
    format!("{wait} second{}", if wait == 1 { "" } else { "s" })
}
