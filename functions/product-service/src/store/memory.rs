//! An in-memory [`ProductStore`] with the same semantics as the DynamoDB one, for unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use service_core::paging::Page;
use service_core::ApiError;

use super::{
    has_open_reservations, insufficient_stock, sku_taken, too_many_reservations, ProductStore,
};
use crate::domain::{Product, MAX_OPEN_RESERVATIONS};

#[derive(Default)]
struct State {
    products: BTreeMap<String, Product>,
    skus: HashMap<String, String>,
    /// (product id, reservation id) -> quantity.
    reservations: HashMap<(String, String), u32>,
}

#[derive(Default)]
pub struct MemoryProductStore {
    state: Mutex<State>,
}

impl MemoryProductStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn check_version(state: &State, current: &Product) -> Result<(), ApiError> {
    match state.products.get(&current.id) {
        Some(stored) if stored.version == current.version => Ok(()),
        _ => Err(ApiError::VersionMismatch),
    }
}

#[async_trait]
impl ProductStore for MemoryProductStore {
    async fn create(&self, product: &Product) -> Result<(), ApiError> {
        let mut state = self.lock();
        if state.skus.contains_key(&product.sku) {
            return Err(sku_taken());
        }
        state.skus.insert(product.sku.clone(), product.id.clone());
        state.products.insert(product.id.clone(), product.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Product>, ApiError> {
        Ok(self.lock().products.get(id).cloned())
    }

    async fn list(
        &self,
        limit: usize,
        after: Option<&str>,
        category: Option<&str>,
    ) -> Result<Page<Product>, ApiError> {
        let state = self.lock();
        let lower = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut matching = state
            .products
            .range::<str, _>((lower, std::ops::Bound::Unbounded))
            .map(|(_, p)| p)
            .filter(|p| category.is_none() || p.category.as_deref() == category);
        let items: Vec<Product> = matching.by_ref().take(limit).cloned().collect();
        let next = if matching.next().is_some() {
            items.last().map(|p| p.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn replace(&self, current: &Product, next: &Product) -> Result<(), ApiError> {
        let mut state = self.lock();
        check_version(&state, current)?;
        state.products.insert(next.id.clone(), next.clone());
        Ok(())
    }

    async fn delete(&self, current: &Product) -> Result<(), ApiError> {
        let mut state = self.lock();
        check_version(&state, current)?;
        if current.open_reservations > 0 {
            return Err(has_open_reservations());
        }
        state.products.remove(&current.id);
        state.skus.remove(&current.sku);
        Ok(())
    }

    async fn reserve(
        &self,
        product_id: &str,
        reservation_id: &str,
        quantity: u32,
    ) -> Result<u32, ApiError> {
        let mut state = self.lock();
        let product = state
            .products
            .get_mut(product_id)
            .ok_or(ApiError::NotFound)?;
        if product.stock < quantity {
            return Err(insufficient_stock());
        }
        if product.open_reservations >= MAX_OPEN_RESERVATIONS {
            return Err(too_many_reservations());
        }
        product.stock -= quantity;
        product.open_reservations += 1;
        product.version += 1;
        product.updated_at = chrono::Utc::now();
        let remaining = product.stock;
        state.reservations.insert(
            (product_id.to_string(), reservation_id.to_string()),
            quantity,
        );
        Ok(remaining)
    }

    async fn release(&self, product_id: &str, reservation_id: &str) -> Result<(), ApiError> {
        let mut state = self.lock();
        let key = (product_id.to_string(), reservation_id.to_string());
        let quantity = *state.reservations.get(&key).ok_or(ApiError::NotFound)?;
        let product = state
            .products
            .get_mut(product_id)
            .ok_or(ApiError::NotFound)?;
        product.stock = product.stock.checked_add(quantity).ok_or_else(|| {
            ApiError::conflict(
                "stock_overflow",
                "releasing this reservation would take stock past its maximum",
            )
        })?;
        product.open_reservations -= 1;
        product.version += 1;
        product.updated_at = chrono::Utc::now();
        state.reservations.remove(&key);
        Ok(())
    }
}
