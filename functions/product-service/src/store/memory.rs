//! An in-memory [`ProductStore`] with the same semantics as the DynamoDB one, for unit tests.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use service_core::memory::{page, Locked};
use service_core::paging::Page;
use service_core::StoreError;

use super::ProductStore;
use crate::domain::{Product, ProductError, MAX_OPEN_RESERVATIONS};

#[derive(Default)]
struct State {
    products: BTreeMap<String, Product>,
    skus: HashMap<String, String>,
    /// (product id, reservation id) -> quantity.
    reservations: HashMap<(String, String), u32>,
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
}

fn check_version(state: &State, current: &Product) -> Result<(), StoreError> {
    service_core::memory::check_version(
        state.products.get(&current.id).map(|p| p.version),
        current.version,
    )
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

    async fn replace(&self, current: &Product, next: &Product) -> Result<(), ProductError> {
        let mut state = self.lock();
        check_version(&state, current)?;
        state.products.insert(next.id.clone(), next.clone());
        Ok(())
    }

    async fn delete(&self, current: &Product) -> Result<(), ProductError> {
        let mut state = self.lock();
        check_version(&state, current)?;
        if current.open_reservations > 0 {
            return Err(ProductError::HasOpenReservations);
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
    ) -> Result<u32, ProductError> {
        let mut state = self.lock();
        let product = state
            .products
            .get_mut(product_id)
            .ok_or(ProductError::NotFound)?;
        if product.stock < quantity {
            return Err(ProductError::InsufficientStock);
        }
        if product.open_reservations >= MAX_OPEN_RESERVATIONS {
            return Err(ProductError::TooManyReservations);
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

    async fn release(&self, product_id: &str, reservation_id: &str) -> Result<(), ProductError> {
        let mut state = self.lock();
        let key = (product_id.to_string(), reservation_id.to_string());
        let quantity = *state.reservations.get(&key).ok_or(ProductError::NotFound)?;
        let product = state
            .products
            .get_mut(product_id)
            .ok_or(ProductError::NotFound)?;
        product.stock = product
            .stock
            .checked_add(quantity)
            .ok_or(ProductError::StockOverflow)?;
        product.open_reservations -= 1;
        product.version += 1;
        product.updated_at = chrono::Utc::now();
        state.reservations.remove(&key);
        Ok(())
    }
}
