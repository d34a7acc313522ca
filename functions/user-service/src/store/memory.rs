//! An in-memory [`UserStore`] with the same semantics as the DynamoDB one, for unit tests.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use service_core::memory::{check_version, page, Locked};
use service_core::paging::Page;
use service_core::StoreError;

use super::UserStore;
use crate::domain::{User, UserError};

#[derive(Default)]
struct State {
    users: BTreeMap<String, User>,
    /// Lower-cased email -> user id.
    emails: HashMap<String, String>,
}

#[derive(Default)]
pub struct MemoryUserStore {
    state: Locked<State>,
}

impl MemoryUserStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Number of email reservations held: lets tests check nothing leaks.
    pub fn email_records(&self) -> usize {
        self.lock().emails.len()
    }
}

#[async_trait]
impl UserStore for MemoryUserStore {
    async fn create(&self, user: &User) -> Result<(), UserError> {
        let mut state = self.lock();
        if state.emails.contains_key(&user.email_key()) {
            return Err(UserError::EmailTaken);
        }
        if state.users.contains_key(&user.id) {
            return Err(StoreError::Internal(format!("duplicate user id {}", user.id)).into());
        }
        state.emails.insert(user.email_key(), user.id.clone());
        state.users.insert(user.id.clone(), user.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<User>, StoreError> {
        Ok(self.lock().users.get(id).cloned())
    }

    async fn list(&self, limit: usize, after: Option<&str>) -> Result<Page<User>, UserError> {
        Ok(page(&self.lock().users, after, limit, |_| true))
    }

    async fn replace(&self, current: &User, next: &User) -> Result<(), UserError> {
        let mut state = self.lock();
        check_version(
            state.users.get(&current.id).map(|u| u.version),
            current.version,
        )?;
        let (old_key, new_key) = (current.email_key(), next.email_key());
        if old_key != new_key {
            if state.emails.contains_key(&new_key) {
                return Err(UserError::EmailTaken);
            }
            state.emails.remove(&old_key);
            state.emails.insert(new_key, next.id.clone());
        }
        state.users.insert(next.id.clone(), next.clone());
        Ok(())
    }

    async fn delete(&self, current: &User) -> Result<(), UserError> {
        let mut state = self.lock();
        check_version(
            state.users.get(&current.id).map(|u| u.version),
            current.version,
        )?;
        state.users.remove(&current.id);
        state.emails.remove(&current.email_key());
        Ok(())
    }
}
