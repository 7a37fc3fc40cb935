//! One timer kept armed while messages come, for every transport (see [`keep_a_timer_armed`]).

use std::sync::Arc;

use tokio::sync::Notify;

/// How long the timer [`keep_a_timer_armed`] keeps is set for: no longer than the least time
/// any read gives its client-side deadline beyond its own timeout (the adapters' grace).
const ARMED_FOR: std::time::Duration = std::time::Duration::from_millis(250);

/// Keeps a timer armed while messages keep coming. tokio's timer wakes its own event loop (an
/// eventfd write, then one more turn of the loop) whenever a timer is set to fire before every
/// timer already armed; each read sets a deadline, so with none armed each call paid for that
/// wake. One armed timer due no later than any read's deadline spares them. It is re-armed
/// while messages arrive and lapses after a quiet period, so an idle server does not wake.
/// Only a cost depends on it: a deadline set before it fires still wakes the loop, as before.
pub(crate) async fn keep_a_timer_armed(activity: Arc<Notify>) {
    use futures_util::FutureExt as _;
    loop {
        activity.notified().await;
        loop {
            tokio::time::sleep(ARMED_FOR).await;
            // Another period only if a message came during this one.
            if activity.notified().now_or_never().is_none() {
                break;
            }
        }
    }
}
