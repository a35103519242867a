//! The limit: what plain lapin does on this machine and broker, with nothing
//! of Warren's in the way. Each mode runs as a process of its own (the bench
//! binary re-invoked), so its CPU and memory are measured like Warren's.
//!
//! - consumer: manual acks, basic_qos(prefetch); every delivery is handed to a
//!   task that (optionally sleeps, then) acks it, so an ack is never awaited
//!   before the next delivery is taken. Prints one line after the n-th ack.
//! - publisher: persistent messages with publisher confirms, up to `window`
//!   confirms outstanding (the same pipelining as `warren publish`).
//! - exec: `n` runs of a program, `concurrency` at a time, body on stdin —
//!   the cost of a process per task without any broker.

use super::procfs::Usage;
use anyhow::{Context, Result, bail};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore};

/// The line a finished raw consumer prints; the orchestrator waits for it.
pub const CONSUMER_DONE: &str = "raw-consumer: acked";
/// The line a finished raw publisher prints.
pub const PUBLISHER_DONE: &str = "raw-publisher: published";
/// The line a finished raw exec run prints.
pub const EXEC_DONE: &str = "raw-exec: ran";

/// Consumes `n` deliveries from `queue`, acking each without awaiting the
/// ack before the next delivery; `work` is slept before each ack (0: none).
///
/// `workers` > 0 gives Warren's shape instead, as a diagnostic: at most that
/// many tasks at once, each awaiting its ack before its worker takes the next
/// delivery (a permit is taken before `consumer.next()`, as Warren's slots).
pub async fn consume(
    url: &str,
    queue: &str,
    n: u64,
    prefetch: u16,
    work: Duration,
    workers: usize,
) -> Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "warren-bench-raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let acked = Arc::new(AtomicU64::new(0));
    let all_acked = Arc::new(Notify::new());
    let slots = Arc::new(Semaphore::new(if workers > 0 {
        workers
    } else {
        Semaphore::MAX_PERMITS
    }));
    for _ in 0..n {
        let slot = slots.clone().acquire_owned().await?;
        let delivery = consumer
            .next()
            .await
            .context("the broker cancelled the consumer")??;
        let (acked, all_acked) = (acked.clone(), all_acked.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                eprintln!("raw-consumer: ack failed: {e}");
            }
            if acked.fetch_add(1, Ordering::Relaxed) + 1 == n {
                all_acked.notify_one();
            }
        });
    }
    all_acked.notified().await;
    let usage = Usage::of_self()?;
    println!(
        "{CONSUMER_DONE} {n} cpu_ticks={} vm_hwm_kb={}",
        usage.cpu_ticks, usage.vm_hwm_kb
    );
    conn.close(200, "done".into()).await?;
    Ok(())
}

/// Publishes one persistent message per non-empty line of `file` and
/// prints the time from the first publish to the last confirm.
pub async fn publish_file(url: &str, queue: &str, file: &str, window: usize) -> Result<()> {
    let text = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    let bodies: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    declare(&channel, queue).await?;
    let took = publish(&channel, queue, bodies.iter().copied(), window).await?;
    println!(
        "{PUBLISHER_DONE} {} in {:.3}s",
        bodies.len(),
        took.as_secs_f64()
    );
    conn.close(200, "done".into()).await?;
    Ok(())
}

/// Declares `queue` as Warren does for a classic queue: durable, no arguments.
pub async fn declare(channel: &Channel, queue: &str) -> Result<u32> {
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    Ok(q.message_count())
}

/// Publishes `bodies` as persistent messages, keeping up to `window`
/// confirms outstanding; fails unless every one is confirmed. Returns the
/// time from the first publish to the last confirm.
pub async fn publish<'a>(
    channel: &Channel,
    queue: &str,
    bodies: impl IntoIterator<Item = &'a [u8]>,
    window: usize,
) -> Result<Duration> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let started = Instant::now();
    let mut pending = VecDeque::with_capacity(window);
    for body in bodies {
        if pending.len() >= window.max(1) {
            confirmed(pending.pop_front()).await?;
        }
        let props = BasicProperties::default().with_delivery_mode(2);
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?;
        pending.push_back(confirm);
    }
    while let Some(confirm) = pending.pop_front() {
        confirmed(Some(confirm)).await?;
    }
    Ok(started.elapsed())
}

async fn confirmed(confirm: Option<lapin::PublisherConfirm>) -> Result<()> {
    let Some(confirm) = confirm else {
        return Ok(());
    };
    match confirm.await? {
        Confirmation::Ack(None) => Ok(()),
        other => bail!("publish not confirmed: {other:?}"),
    }
}

/// Runs `program` `n` times, `concurrency` at a time, writing a short body
/// to its stdin like the exec handler does.
pub async fn exec(n: usize, concurrency: usize, program: &str) -> Result<()> {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let program = program.to_owned();
        runs.spawn(async move {
            let _permit = permit;
            let mut child = tokio::process::Command::new(&program)
                .stdin(std::process::Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                // A program that does not read its stdin (true) closes the
                // pipe first; the exec handler ignores that too.
                let written = stdin.write_all(format!("task {i}").as_bytes()).await;
                if let Err(e) = written
                    && e.kind() != std::io::ErrorKind::BrokenPipe
                {
                    return Err(e.into());
                }
            }
            let status = child.wait().await?;
            anyhow::ensure!(status.success(), "{program} failed: {status}");
            Ok::<_, anyhow::Error>(())
        });
        while let Some(done) = runs.try_join_next() {
            done??;
        }
    }
    while let Some(done) = runs.join_next().await {
        done??;
    }
    println!("{EXEC_DONE} {n} in {:.3}s", started.elapsed().as_secs_f64());
    Ok(())
}
