//! The table of poller keys.

/// Values stored under small integer keys, the keys the poller reports.
///
/// A removed key is not reused until [`release_retired`](Slab::release_retired):
/// events for it may still be in the batch being dispatched, and must not
/// reach whatever would take its place.
pub(crate) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    retired: Vec<usize>,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            retired: Vec::new(),
        }
    }

    /// The key the next [`insert`](Self::insert) will use.
    pub(crate) fn vacant_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    pub(crate) fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.slots[key] = Some(value);
                key
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        self.slots.get(key).and_then(Option::as_ref)
    }

    /// Replaces the value under a live key.
    pub(crate) fn replace(&mut self, key: usize, value: T) {
        if let Some(slot @ Some(_)) = self.slots.get_mut(key) {
            *slot = Some(value);
        }
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.slots.get_mut(key)?.take();
        if value.is_some() {
            self.retired.push(key);
        }
        value
    }

    /// Makes the keys removed since the last call available again.
    pub(crate) fn release_retired(&mut self) {
        self.free.append(&mut self.retired);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn removed_keys_wait_for_release() {
        let mut slab = Slab::new();
        let a = slab.insert('a');
        assert_eq!(slab.remove(a), Some('a'));
        let b = slab.insert('b');
        assert_ne!(a, b, "a key is not reused before release");
        slab.release_retired();
        assert_eq!(slab.vacant_key(), a);
        assert_eq!(slab.insert('c'), a);
        assert_eq!(slab.get(a), Some(&'c'));
    }
}
