//! Coalesced acks: one `basic.ack(multiple)` for a contiguous run of finished
//! deliveries instead of one frame each.
//!
//! Workers do not ack themselves. The dispatcher registers every delivery tag
//! (in delivery order) and workers report completions; a per-channel task
//! acks, after each burst of reports:
//! - the run of finished tags at the head of the unsettled ones with a single
//!   `multiple` ack (every tag up to it is finished, so nothing is acked early);
//! - every other finished tag on its own, at once, so a long task at the head
//!   never holds finished ones back (they would block prefetch credit).
//!
//! Under load most completions are in order, so most acks are coalesced and
//! the broker (often on the same cores) has fewer frames to process.

use lapin::Acker;
use lapin::options::BasicAckOptions;
use prometheus::IntCounter;
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// What the batcher hears about.
enum Report {
    /// The dispatcher handed this tag to a worker.
    Delivered(u64),
    /// Ack this one (handler succeeded, or its copy was confirmed).
    Completed(u64, Acker),
    /// Settled another way (nacked with requeue): stop waiting for it.
    Forget(u64),
}

/// Sends reports to a channel's ack batcher. Cheap to clone.
#[derive(Clone)]
pub struct Acks {
    tx: mpsc::UnboundedSender<Report>,
}

/// How a worker settles its one delivery.
pub struct Ticket {
    tag: u64,
    acker: Acker,
    acks: Acks,
}

impl Ticket {
    /// Registers the delivery with the batcher and returns its ticket; call
    /// before handing the delivery to a worker (registration order matters).
    pub fn issue(acks: &Acks, tag: u64, acker: Acker) -> Ticket {
        acks.delivered(tag);
        Ticket {
            tag,
            acker,
            acks: acks.clone(),
        }
    }

    /// Acks it, coalesced with its neighbours when they are done too.
    pub fn ack(&self) {
        self.acks.ack(self.tag, self.acker.clone());
        tracing::debug!("acked");
    }

    /// Gives it back to the broker (`nack` with requeue), at once.
    pub async fn requeue(&self) -> lapin::Result<bool> {
        let requeue = lapin::options::BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        let result = self.acker.nack(requeue).await;
        self.acks.forget(self.tag);
        result
    }
}

/// The bookkeeping, separate from I/O so it can be tested alone.
#[derive(Default)]
pub struct AckWindow {
    /// Delivered, not yet settled.
    unsettled: BTreeSet<u64>,
    /// Finished and waiting to be acked, with the acker to do it.
    finished: BTreeMap<u64, Acker>,
}

/// One ack to send: through `acker`, for its tag, `multiple` or not.
pub struct Ack {
    pub tag: u64,
    pub multiple: bool,
    pub acker: Acker,
}

impl AckWindow {
    fn apply(&mut self, report: Report) {
        match report {
            Report::Delivered(tag) => {
                self.unsettled.insert(tag);
            }
            Report::Completed(tag, acker) => {
                self.finished.insert(tag, acker);
            }
            Report::Forget(tag) => {
                self.unsettled.remove(&tag);
            }
        }
    }

    /// The acks to send now (see the module docs); settles what they cover.
    pub fn take(&mut self) -> Vec<Ack> {
        let mut acks = Vec::new();
        let mut run: Option<(u64, Acker, usize)> = None;
        while let Some(&head) = self.unsettled.first() {
            let Some(acker) = self.finished.remove(&head) else {
                break;
            };
            self.unsettled.pop_first();
            let count = run.as_ref().map_or(0, |r| r.2) + 1;
            run = Some((head, acker, count));
        }
        if let Some((tag, acker, count)) = run {
            acks.push(Ack {
                tag,
                multiple: count > 1,
                acker,
            });
        }
        for (tag, acker) in std::mem::take(&mut self.finished) {
            self.unsettled.remove(&tag);
            acks.push(Ack {
                tag,
                multiple: false,
                acker,
            });
        }
        acks
    }
}

impl Acks {
    /// Starts the batcher for one channel. It ends when every `Acks` clone
    /// is dropped, after sending what it was told.
    /// `failed` counts ack frames the channel could not send.
    pub fn spawn(failed: IntCounter) -> (Acks, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Acks { tx }, tokio::spawn(run(rx, failed)))
    }

    /// Registers a delivery; call before handing it to a worker.
    pub fn delivered(&self, tag: u64) {
        let _ = self.tx.send(Report::Delivered(tag));
    }

    /// Asks for this delivery to be acked.
    pub fn ack(&self, tag: u64, acker: Acker) {
        if self.tx.send(Report::Completed(tag, acker)).is_err() {
            warn!("the ack batcher has stopped; the broker will redeliver this task");
        }
    }

    /// The delivery was settled another way (nack).
    pub fn forget(&self, tag: u64) {
        let _ = self.tx.send(Report::Forget(tag));
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Report>, failed: IntCounter) {
    let mut window = AckWindow::default();
    while let Some(first) = rx.recv().await {
        window.apply(first);
        while let Ok(more) = rx.try_recv() {
            window.apply(more);
        }
        for ack in window.take() {
            let options = BasicAckOptions {
                multiple: ack.multiple,
            };
            if let Err(e) = ack.acker.ack(options).await {
                // The handler's result is known but cannot reach the broker
                // (the channel is gone): say so, and count it.
                failed.inc();
                warn!(
                    tag = ack.tag,
                    multiple = ack.multiple,
                    "could not ack finished task(s) ({e}); the broker will redeliver them"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acker(tag: u64) -> Acker {
        lapin::message::Delivery::mock(tag, "".into(), "".into(), false, Vec::new()).acker
    }

    fn take(w: &mut AckWindow) -> Vec<(u64, bool)> {
        w.take().into_iter().map(|a| (a.tag, a.multiple)).collect()
    }

    #[test]
    fn a_contiguous_head_run_is_one_multiple_ack() {
        let mut w = AckWindow::default();
        for tag in 1..=5 {
            w.apply(Report::Delivered(tag));
        }
        for tag in [1, 2, 3] {
            w.apply(Report::Completed(tag, acker(tag)));
        }
        assert_eq!(take(&mut w), [(3, true)]);
        w.apply(Report::Completed(4, acker(4)));
        assert_eq!(take(&mut w), [(4, false)]);
        assert_eq!(take(&mut w), []);
    }

    #[test]
    fn a_slow_head_never_holds_finished_tasks_back_nor_gets_acked_early() {
        let mut w = AckWindow::default();
        for tag in 1..=4 {
            w.apply(Report::Delivered(tag));
        }
        // 1 is still running: 3 and 4 are acked alone, never with `multiple`.
        w.apply(Report::Completed(3, acker(3)));
        w.apply(Report::Completed(4, acker(4)));
        assert_eq!(take(&mut w), [(3, false), (4, false)]);
        // 2 finishes: still behind 1, alone again.
        w.apply(Report::Completed(2, acker(2)));
        assert_eq!(take(&mut w), [(2, false)]);
        w.apply(Report::Completed(1, acker(1)));
        assert_eq!(take(&mut w), [(1, false)]);
    }

    #[test]
    fn nacked_tags_stop_blocking_the_run() {
        let mut w = AckWindow::default();
        for tag in 1..=3 {
            w.apply(Report::Delivered(tag));
        }
        w.apply(Report::Forget(1));
        w.apply(Report::Completed(2, acker(2)));
        w.apply(Report::Completed(3, acker(3)));
        assert_eq!(take(&mut w), [(3, true)]);
    }
}
