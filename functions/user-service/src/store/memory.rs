//! An in-memory [`UserStore`] with the same semantics as the DynamoDB one, for unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use service_core::paging::Page;
use service_core::ApiError;

use super::{email_taken, UserStore};
use crate::domain::User;

#[derive(Default)]
struct State {
    users: BTreeMap<String, User>,
    /// Lower-cased email -> user id.
    emails: HashMap<String, String>,
}

#[derive(Default)]
pub struct MemoryUserStore {
    state: Mutex<State>,
}

impl MemoryUserStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of email reservations held: lets tests check nothing leaks.
    pub fn email_records(&self) -> usize {
        self.lock().emails.len()
    }
}

#[async_trait]
impl UserStore for MemoryUserStore {
    async fn create(&self, user: &User) -> Result<(), ApiError> {
        let mut state = self.lock();
        if state.emails.contains_key(&user.email_key()) {
            return Err(email_taken());
        }
        if state.users.contains_key(&user.id) {
            return Err(ApiError::Internal(format!("duplicate user id {}", user.id)));
        }
        state.emails.insert(user.email_key(), user.id.clone());
        state.users.insert(user.id.clone(), user.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<User>, ApiError> {
        Ok(self.lock().users.get(id).cloned())
    }

    async fn list(&self, limit: usize, after: Option<&str>) -> Result<Page<User>, ApiError> {
        let state = self.lock();
        let mut iter: Box<dyn Iterator<Item = &User>> = match after {
            Some(after) => Box::new(
                state
                    .users
                    .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    .map(|(_, u)| u),
            ),
            None => Box::new(state.users.values()),
        };
        let items: Vec<User> = iter.by_ref().take(limit).cloned().collect();
        let more = iter.next().is_some();
        let next = if more {
            items.last().map(|u| u.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn replace(&self, current: &User, next: &User) -> Result<(), ApiError> {
        let mut state = self.lock();
        match state.users.get(&current.id) {
            Some(stored) if stored.version == current.version => {}
            _ => return Err(ApiError::VersionMismatch),
        }
        let (old_key, new_key) = (current.email_key(), next.email_key());
        if old_key != new_key {
            if state.emails.contains_key(&new_key) {
                return Err(email_taken());
            }
            state.emails.remove(&old_key);
            state.emails.insert(new_key, next.id.clone());
        }
        state.users.insert(next.id.clone(), next.clone());
        Ok(())
    }

    async fn delete(&self, current: &User) -> Result<(), ApiError> {
        let mut state = self.lock();
        match state.users.get(&current.id) {
            Some(stored) if stored.version == current.version => {}
            _ => return Err(ApiError::VersionMismatch),
        }
        state.users.remove(&current.id);
        state.emails.remove(&current.email_key());
        Ok(())
    }
}
