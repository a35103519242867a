//! Worker slots: a semaphore whose permits have numbers.
//!
//! The dispatcher takes a slot before it takes a delivery, so deliveries the
//! broker prefetched stay in the consumer's buffer until a worker is free —
//! which is what lets a drain requeue them untouched. The number names the
//! worker in log lines.

use tokio::sync::mpsc;

/// The free list of worker numbers.
pub struct Slots {
    free: mpsc::Receiver<usize>,
    give_back: mpsc::Sender<usize>,
}

/// A taken slot; dropping it (even by a panic) frees it.
pub struct Slot {
    id: usize,
    give_back: mpsc::Sender<usize>,
}

impl Slots {
    /// `n` free slots numbered 1..=n.
    pub fn new(n: usize) -> Self {
        let (give_back, free) = mpsc::channel(n.max(1));
        for id in 1..=n {
            give_back.try_send(id).expect("capacity is n");
        }
        Slots { free, give_back }
    }

    /// Waits for a free worker.
    pub async fn take(&mut self) -> Slot {
        let id = self.free.recv().await.expect("Slots holds a sender");
        Slot {
            id,
            give_back: self.give_back.clone(),
        }
    }
}

impl Slot {
    /// The worker number (1-based).
    pub fn id(&self) -> usize {
        self.id
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Never full: there are only n ids and the channel holds n.
        let _ = self.give_back.try_send(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn at_most_n_slots_are_out() {
        let mut slots = Slots::new(2);
        let a = slots.take().await;
        let b = slots.take().await;
        assert_ne!(a.id(), b.id());
        let third = tokio::time::timeout(Duration::from_millis(20), slots.take()).await;
        assert!(third.is_err(), "a third slot must wait");
        drop(a);
        let c = tokio::time::timeout(Duration::from_millis(200), slots.take()).await;
        assert!(c.is_ok(), "a freed slot is reusable");
    }
}
