//! What the stores' in-memory stand-ins share: state behind a lock that one panicking test
//! cannot poison for the next, pages over a map ordered by key, and the version check every
//! conditional write makes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use crate::paging::Page;
use crate::StoreError;

/// A store's state behind one lock.
#[derive(Debug, Default)]
pub struct Locked<T>(Mutex<T>);

impl<T> Locked<T> {
    /// The state; a lock poisoned by a panic elsewhere is taken over as it is.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `Ok` when the version stored now (`None` if the item is gone) is still the one `read`.
pub fn check_version(stored: Option<u64>, read: u64) -> Result<(), StoreError> {
    match stored {
        Some(stored) if stored == read => Ok(()),
        _ => Err(StoreError::VersionMismatch),
    }
}

/// One page of an in-memory collection ordered by key (what the stores' in-memory stand-ins
/// list): up to `limit` values after the key `after` that `keep` accepts, and the last key
/// returned when more follow.
pub fn page<T: Clone>(
    entries: &BTreeMap<String, T>,
    after: Option<&str>,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> Page<T> {
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut matching = entries
        .range::<str, _>((lower, Bound::Unbounded))
        .filter(|(_, value)| keep(value));
    let page: Vec<(&String, &T)> = matching.by_ref().take(limit).collect();
    let next = if matching.next().is_some() {
        page.last().map(|(key, _)| (*key).clone())
    } else {
        None
    };
    Page {
        items: page.into_iter().map(|(_, value)| value.clone()).collect(),
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_pages_continue_after_the_last_key() {
        let entries: BTreeMap<String, u32> = (1..=5).map(|i| (format!("k{i}"), i)).collect();
        let first = page(&entries, None, 2, |_| true);
        assert_eq!(
            (first.items, first.next.as_deref()),
            (vec![1, 2], Some("k2"))
        );
        let last = page(&entries, Some("k4"), 2, |_| true);
        assert_eq!((last.items, last.next), (vec![5], None));
        let odd = page(&entries, None, 2, |v| v % 2 == 1);
        assert_eq!((odd.items, odd.next.as_deref()), (vec![1, 3], Some("k3")));
    }

    #[test]
    fn versions_must_match_and_exist() {
        assert_eq!(check_version(Some(3), 3), Ok(()));
        assert_eq!(check_version(Some(4), 3), Err(StoreError::VersionMismatch));
        assert_eq!(check_version(None, 3), Err(StoreError::VersionMismatch));
    }
}
