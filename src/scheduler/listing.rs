//! The library listing, refreshed by a task of its own every `rescan` (sooner when the
//! scheduler has nothing to play, and every `retry_after` while storage is down), so that a slow or hanging listing never stands between the
//! pipeline and its next track: the scheduler takes the newest result when it picks, without
//! waiting. This task owns the listing's logs (once per change) and metrics.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::metrics::Metrics;

/// The newest listing: the tracks, or why storage could not be listed.
pub(super) use crate::analysis::worker::Listing;

/// Listings are at least this far apart, however often the scheduler asks.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Starts listing at once; `wake` asks for a listing before the next `rescan` is due.
pub(super) fn spawn<C: Catalog>(
    catalog: Arc<C>,
    rescan: Duration,
    metrics: Metrics,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) -> watch::Receiver<Listing> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            // A listing made while storage is down comes from the cache: if storage returns
            // meanwhile, the full listing must still come soon, not a rescan later.
            let down_before = catalog.relist_after();
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = catalog.list() => r.map_err(|e| e.to_string()),
            };
            match &result {
                Ok(_) => {
                    if std::mem::replace(&mut failing, false) {
                        tracing::info!(library = %catalog.describe(), "library readable again");
                    }
                }
                Err(e) => {
                    metrics.storage_errors.with_label_values(&["list"]).inc();
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!(library = %catalog.describe(), error = %e,
                            "cannot list the library; playing what is already loaded");
                    }
                }
            }
            if tx.send(Some(Arc::new(result))).is_err() {
                return; // the scheduler is gone
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(MIN_INTERVAL) => {}
            }
            // With rescans off, the library is listed again only when the scheduler asks
            // (nothing playable) or storage is down.
            let interval = match (rescan.is_zero(), catalog.relist_after().or(down_before)) {
                (false, Some(retry)) => Some(rescan.min(retry)),
                (true, Some(retry)) => Some(retry),
                (false, None) => Some(rescan),
                (true, None) => None,
            };
            let due = async {
                match interval {
                    Some(i) => tokio::time::sleep(i.saturating_sub(MIN_INTERVAL)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = due => {}
                _ = wake.notified() => {}
            }
        }
    });
    rx
}
