//! Build your own worker binary with Warren as a library.
//!
//! The handler below "resizes images": it rejects empty bodies (they can never
//! succeed: dead-letter), asks for a retry when a fake dependency is busy, and
//! acks everything else. Run it against a local broker:
//!
//! ```sh
//! cargo run --example custom_handler
//! cargo run -- publish --queue images cat.png
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use warren::{CancellationToken, Config, Handler, Outcome, Task};

/// Your state lives in the handler; it is shared by all workers.
struct Resize {
    done: AtomicU64,
}

impl Handler for Resize {
    async fn handle(&self, task: &Task) -> Outcome {
        if task.body.is_empty() {
            return Outcome::reject("empty body: nothing to resize");
        }
        if task.body.starts_with(b"busy") && task.attempt < 2 {
            return Outcome::Retry {
                after: Some(Duration::from_secs(1)),
                reason: "image service busy".into(),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        println!(
            "resized {} (attempt {}), {n} so far",
            task.preview(),
            task.attempt
        );
        Outcome::Ack
    }
}

#[tokio::main]
async fn main() -> Result<(), warren::Error> {
    let _telemetry = warren::telemetry::init();
    let mut config = Config::default();
    config.queue.name = "images".into();
    config.pool.concurrency = 4;
    if let Ok(url) = std::env::var("WARREN_AMQP_URL") {
        config.amqp.url = url.into();
    }

    // Your program decides when to stop; here: ctrl-c.
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        trigger.cancel();
    });

    let handler = Resize {
        done: AtomicU64::new(0),
    };
    // No HTTP server: your program may have its own. To serve /livez, /readyz
    // and /metrics on `server.listen` as the binary does:
    // `warren::App::new(config, handler).serve_http().run(shutdown).await`.
    warren::run(config, handler, shutdown).await
}
