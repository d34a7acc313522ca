//! An in-memory [`ProductStore`] with the same semantics as the DynamoDB one, for unit tests.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use service_core::memory::{page, Locked};
use service_core::paging::Page;
use service_core::StoreError;

use super::{listing_key, ProductStore};
use crate::domain::{Ending, Product, ProductError, ProductPatch, Reservation, ReservationStatus};

#[derive(Default)]
struct State {
    products: BTreeMap<String, Product>,
    skus: HashMap<String, String>,
    reservations: HashMap<String, Reservation>,
}

#[derive(Default)]
pub struct MemoryProductStore {
    state: Locked<State>,
}

impl MemoryProductStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Every reservation stored, in no particular order (for tests that check the books).
    pub fn all_reservations(&self) -> Vec<Reservation> {
        self.lock().reservations.values().cloned().collect()
    }
}

fn pinned(product: &Product, expected: Option<u64>) -> Result<(), StoreError> {
    match expected {
        Some(version) => service_core::memory::check_version(Some(product.version), version),
        None => Ok(()),
    }
}

#[async_trait]
impl ProductStore for MemoryProductStore {
    async fn create(&self, product: &Product) -> Result<(), ProductError> {
        let mut state = self.lock();
        if state.skus.contains_key(&product.sku) {
            return Err(ProductError::SkuTaken);
        }
        state.skus.insert(product.sku.clone(), product.id.clone());
        state.products.insert(product.id.clone(), product.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError> {
        Ok(self.lock().products.get(id).cloned())
    }

    async fn list(
        &self,
        limit: usize,
        after: Option<&str>,
        category: Option<&str>,
    ) -> Result<Page<Product>, ProductError> {
        let state = self.lock();
        Ok(page(&state.products, after, limit, |p| {
            category.is_none() || p.category.as_deref() == category
        }))
    }

    async fn patch(
        &self,
        id: &str,
        patch: &ProductPatch,
        expected: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Product, ProductError> {
        let mut state = self.lock();
        let product = state.products.get_mut(id).ok_or(ProductError::NotFound)?;
        pinned(product, expected)?;
        *product = patch.apply_at(product, now);
        Ok(product.clone())
    }

    async fn delete(&self, current: &Product, expected: Option<u64>) -> Result<(), ProductError> {
        let mut state = self.lock();
        let stored = state
            .products
            .get(&current.id)
            .ok_or(ProductError::NotFound)?;
        pinned(stored, expected)?;
        if stored.open_reservations > 0 {
            return Err(ProductError::HasOpenReservations);
        }
        state.products.remove(&current.id);
        state.skus.remove(&current.sku);
        Ok(())
    }

    async fn reserve(&self, reservation: &Reservation) -> Result<(), ProductError> {
        let mut state = self.lock();
        if state.reservations.contains_key(&reservation.reservation_id) {
            return Err(StoreError::Internal("reservation id in use".into()).into());
        }
        let product = state
            .products
            .get_mut(&reservation.product_id)
            .ok_or(ProductError::NotFound)?;
        if product.stock < reservation.quantity {
            return Err(ProductError::InsufficientStock);
        }
        product.stock -= reservation.quantity;
        product.open_reservations += 1;
        product.version += 1;
        product.updated_at = reservation.created_at;
        state
            .reservations
            .insert(reservation.reservation_id.clone(), reservation.clone());
        Ok(())
    }

    async fn reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        Ok(self.lock().reservations.get(id).cloned())
    }

    async fn open_reservations_of(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page<Reservation>, ProductError> {
        let state = self.lock();
        let open: BTreeMap<String, Reservation> = state
            .reservations
            .values()
            .filter(|r| r.owner == owner && r.status_at(now) == ReservationStatus::Open)
            .map(|r| (listing_key(r), r.clone()))
            .collect();
        Ok(page(&open, after, limit, |_| true))
    }

    async fn end(
        &self,
        reservation: &Reservation,
        ending: Ending,
        now: DateTime<Utc>,
    ) -> Result<Reservation, ProductError> {
        let mut state = self.lock();
        let stored = state
            .reservations
            .get(&reservation.reservation_id)
            .ok_or(ProductError::NotFound)?
            .clone();
        stored.may_end(ending, now)?;
        let product = state
            .products
            .get_mut(&stored.product_id)
            .ok_or_else(|| StoreError::Internal("open reservation without product".into()))?;
        if ending.returns_stock() {
            product.stock = product
                .stock
                .checked_add(stored.quantity)
                .ok_or(ProductError::StockOverflow)?;
        }
        product.open_reservations -= 1;
        product.version += 1;
        product.updated_at = now;
        let ended = stored.ended(ending, now);
        state
            .reservations
            .insert(ended.reservation_id.clone(), ended.clone());
        Ok(ended)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Reservation>, StoreError> {
        let state = self.lock();
        let mut due: Vec<Reservation> = state
            .reservations
            .values()
            .filter(|r| r.status == ReservationStatus::Open && r.hold_until <= now)
            .cloned()
            .collect();
        due.sort_by_key(listing_key);
        due.truncate(limit);
        Ok(due)
    }
}

#[cfg(test)]
mod properties {
    //! The books balance whatever happens: for any sequence of reservations, releases,
    //! confirms, expiries, restocks and clock moves, `stock + open units + confirmed units`
    //! equals the initial stock plus every restock, and the open count is the number of open
    //! reservations.

    use chrono::Duration;
    use proptest::prelude::*;

    use super::*;
    use crate::sweeper::sweep;
    use crate::testkit::{product, reservation};

    #[derive(Debug, Clone)]
    enum Op {
        Reserve { quantity: u32, hold_seconds: i64 },
        Release(usize),
        Confirm(usize),
        SetStock(u32),
        Advance(i64),
        Sweep,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u32..5, 1i64..30).prop_map(|(quantity, hold_seconds)| Op::Reserve { quantity, hold_seconds }),
            2 => any::<usize>().prop_map(Op::Release),
            2 => any::<usize>().prop_map(Op::Confirm),
            1 => (0u32..40).prop_map(Op::SetStock),
            2 => (1i64..20).prop_map(Op::Advance),
            1 => Just(Op::Sweep),
        ]
    }

    fn check_books(store: &MemoryProductStore, id: &str, initial: u64, restocks: i64) {
        let state = store.lock();
        let product = &state.products[id];
        let units = |status| {
            state
                .reservations
                .values()
                .filter(|r| r.status == status)
                .map(|r| u64::from(r.quantity))
                .sum::<u64>()
        };
        let open = state
            .reservations
            .values()
            .filter(|r| r.status == ReservationStatus::Open)
            .count();
        assert_eq!(
            (u64::from(product.stock)
                + units(ReservationStatus::Open)
                + units(ReservationStatus::Confirmed)) as i64,
            initial as i64 + restocks,
            "the books balance"
        );
        assert_eq!(product.open_reservations as usize, open);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn stock_is_never_lost_or_made(initial in 0u32..30, ops in proptest::collection::vec(op(), 1..60)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let store = MemoryProductStore::new();
                let mut now = Utc::now();
                let lamp = product(initial);
                store.create(&lamp).await.unwrap();
                let mut made: Vec<Reservation> = Vec::new();
                let mut restocks: i64 = 0;
                for op in ops {
                    match op {
                        Op::Reserve { quantity, hold_seconds } => {
                            let reservation = reservation(
                                &lamp,
                                "jwt:alice",
                                quantity,
                                now + Duration::seconds(hold_seconds),
                            );
                            let before = store.get(&lamp.id).await.unwrap().unwrap().stock;
                            match store.reserve(&reservation).await {
                                Ok(()) => made.push(reservation),
                                Err(ProductError::InsufficientStock) => assert!(before < quantity),
                                Err(other) => panic!("reserve: {other:?}"),
                            }
                        }
                        Op::Release(pick) | Op::Confirm(pick) if made.is_empty() => { let _ = pick; }
                        Op::Release(pick) => {
                            let chosen = &made[pick % made.len()];
                            let _ = store.end(chosen, Ending::Release, now).await;
                        }
                        Op::Confirm(pick) => {
                            let chosen = &made[pick % made.len()];
                            let _ = store.end(chosen, Ending::Confirm, now).await;
                        }
                        Op::SetStock(stock) => {
                            let before = store.get(&lamp.id).await.unwrap().unwrap().stock;
                            let patch = ProductPatch { stock: Some(stock), ..Default::default() };
                            store.patch(&lamp.id, &patch, None, now).await.unwrap();
                            restocks += i64::from(stock) - i64::from(before);
                        }
                        Op::Advance(seconds) => now += Duration::seconds(seconds),
                        Op::Sweep => {
                            sweep(&store, now, 7, 1000).await.unwrap();
                            assert!(store.due(now, 1).await.unwrap().is_empty());
                        }
                    }
                    check_books(&store, &lamp.id, u64::from(initial), restocks);
                }
            });
        }
    }
}
