//! Holds that ran out give their stock back while nobody is looking: the sweeper finds open
//! reservations past `hold_until` (an index query, [`ProductStore::due`]) and expires each in
//! its own conditional transaction, so a reservation confirmed or released meanwhile is left
//! alone and no stock comes back twice, however many sweeps overlap. On AWS a schedule invokes
//! the `reservation-sweeper` function every minute; locally the stack invokes it every two
//! seconds. Reads never wait for it: a reservation past its hold reads `expired` at once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use service_core::StoreError;

use crate::domain::{Ending, ProductError};
use crate::store::ProductStore;

/// Reservations asked for per index query.
pub const BATCH: usize = 100;
/// At most this many reservations are looked at per sweep; the next sweep continues.
pub const MAX_PER_SWEEP: usize = 2_000;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sweep {
    /// Expired now, their stock given back.
    pub expired: usize,
    /// Found due but ended meanwhile (confirmed, released, or expired by another sweep).
    pub skipped: usize,
    /// Could not be expired this time (logged); the next sweep tries again.
    pub failed: usize,
}

/// Expires what is due at `now`, in batches of `batch`, up to `max` reservations.
pub async fn sweep(
    store: &dyn ProductStore,
    now: DateTime<Utc>,
    batch: usize,
    max: usize,
) -> Result<Sweep, StoreError> {
    let mut outcome = Sweep::default();
    let mut seen = 0;
    while seen < max {
        let due = store.due(now, batch.min(max - seen)).await?;
        if due.is_empty() {
            break;
        }
        seen += due.len();
        let before = outcome.expired;
        for reservation in &due {
            match store.end(reservation, Ending::Expire, now).await {
                Ok(_) => {
                    outcome.expired += 1;
                    tracing::info!(
                        reservation_id = %reservation.reservation_id,
                        product_id = %reservation.product_id,
                        quantity = reservation.quantity,
                        "reservation expired"
                    );
                }
                Err(ProductError::ReservationEnded(_) | ProductError::NotFound) => {
                    outcome.skipped += 1;
                }
                Err(error) => {
                    outcome.failed += 1;
                    tracing::warn!(
                        reservation_id = %reservation.reservation_id,
                        %error,
                        "could not expire a reservation; the next sweep tries again"
                    );
                }
            }
        }
        // A short batch was the last; a batch that expired nothing would come back the same
        // (the index lags, or every one failed): leave it to the next sweep.
        if due.len() < batch || outcome.expired == before {
            break;
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Duration;

    use super::*;
    use crate::domain::{Product, Reservation, ReservationStatus};
    use crate::store::MemoryProductStore;
    use crate::testkit::{product, reservation};

    fn hold(product: &Product, until: DateTime<Utc>) -> Reservation {
        reservation(product, "jwt:alice", 1, until)
    }

    #[tokio::test]
    async fn expires_what_is_due_once_and_leaves_the_rest() {
        let store = Arc::new(MemoryProductStore::new());
        let lamp = product(300);
        store.create(&lamp).await.unwrap();
        let now = Utc::now();
        let mut due = Vec::new();
        for _ in 0..250 {
            let reservation = hold(&lamp, now - Duration::seconds(1));
            store.reserve(&reservation).await.unwrap();
            due.push(reservation);
        }
        let running = hold(&lamp, now + Duration::seconds(60));
        store.reserve(&running).await.unwrap();
        // One of the due ones was confirmed just in time (before its hold ended).
        store
            .end(&due[0], Ending::Confirm, now - Duration::seconds(2))
            .await
            .unwrap();

        let first = sweep(store.as_ref(), now, 100, MAX_PER_SWEEP)
            .await
            .unwrap();
        assert_eq!(
            first,
            Sweep {
                expired: 249,
                skipped: 0,
                failed: 0
            }
        );
        let after = store.get(&lamp.id).await.unwrap().unwrap();
        assert_eq!((after.stock, after.open_reservations), (300 - 2, 1));
        assert_eq!(
            store
                .reservation(&due[1].reservation_id)
                .await
                .unwrap()
                .unwrap()
                .status,
            ReservationStatus::Expired
        );
        assert_eq!(
            store
                .reservation(&due[0].reservation_id)
                .await
                .unwrap()
                .unwrap()
                .status,
            ReservationStatus::Confirmed
        );
        // A second sweep changes nothing.
        let second = sweep(store.as_ref(), now, 100, MAX_PER_SWEEP)
            .await
            .unwrap();
        assert_eq!(second, Sweep::default());
        assert_eq!(store.get(&lamp.id).await.unwrap().unwrap(), after);
    }

    #[tokio::test]
    async fn a_sweep_stops_at_its_maximum_and_the_next_goes_on() {
        let store = MemoryProductStore::new();
        let lamp = product(10);
        store.create(&lamp).await.unwrap();
        let now = Utc::now();
        for _ in 0..10 {
            store
                .reserve(&hold(&lamp, now - Duration::seconds(1)))
                .await
                .unwrap();
        }
        assert_eq!(sweep(&store, now, 3, 6).await.unwrap().expired, 6);
        assert_eq!(sweep(&store, now, 3, 6).await.unwrap().expired, 4);
        assert_eq!(store.get(&lamp.id).await.unwrap().unwrap().stock, 10);
    }
}
