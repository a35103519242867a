//! Idle pods first on scale-down.
//!
//! When an HPA or KEDA scales a Deployment down, the ReplicaSet controller
//! deletes the pods with the lowest `controller.kubernetes.io/pod-deletion-cost`
//! first. With `kube.pod_deletion_cost` on, Warren keeps its own pod's
//! annotation at the bucket of its in-flight task count, so idle pods go
//! first and fewer tasks are interrupted. Any failure (not in a cluster, no
//! RBAC) is one warning and a metric; the pool keeps working.
//!
//! # Buckets, not counts
//! Kubernetes asks not to update the annotation on every metric change: each
//! PATCH is a pod update every controller watching pods hears about. The
//! cost is therefore a bucket ([`cost`]): 0 when idle, then 1, 10, 100, …
//! (the largest power of ten not above the in-flight count). Idle-or-busy is
//! what matters most; the powers of ten keep a pod running dozens of tasks
//! behind one running a few. Every `kube.update_interval` the updater takes
//! the *peak* in-flight count of the interval
//! ([`Health::take_in_flight_peak`]), so a pod is idle only after a whole
//! interval without a task (not between two quick ones), and patches the
//! pod only when the bucket changes.

use crate::health::Health;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The annotation the ReplicaSet controller reads.
pub const ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The cost bucket for a number of in-flight tasks: 0 when idle, else the
/// largest power of ten not above it (1–9 → 1, 10–99 → 10, …; at most 10⁹,
/// which fits the annotation's int32).
pub fn cost(in_flight: i64) -> i32 {
    if in_flight <= 0 {
        return 0;
    }
    let in_flight = in_flight.min(i64::from(i32::MAX));
    10i32.pow(in_flight.ilog10())
}

/// The merge patch that sets the annotation.
pub fn patch_body(cost: i32) -> serde_json::Value {
    serde_json::json!({ "metadata": { "annotations": { ANNOTATION: cost.to_string() } } })
}

/// Runs the updater until `stop`; returns at once when the feature is off.
pub async fn run(health: Arc<Health>, config: crate::config::KubeConfig, stop: CancellationToken) {
    if !config.pod_deletion_cost {
        return;
    }
    let metrics = &health.metrics;
    let (Ok(pod), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE"))
    else {
        metrics.pod_deletion_cost_errors.inc();
        warn!(
            "kube.pod_deletion_cost is on but POD_NAME/POD_NAMESPACE are not set (not in Kubernetes, \
             or the downward API env is missing); pod-deletion-cost updates are off, the pool keeps working"
        );
        return;
    };
    let api = match client(&namespace).await {
        Ok(api) => api,
        Err(e) => {
            metrics.pod_deletion_cost_errors.inc();
            warn!(
                "cannot reach the Kubernetes API ({e}); pod-deletion-cost updates are off, the pool keeps working"
            );
            return;
        }
    };
    let mut ticker = tokio::time::interval(config.update_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last, mut warned) = (None, false);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let cost = cost(health.take_in_flight_peak());
        if last == Some(cost) {
            continue;
        }
        match patch(&api, &pod, cost).await {
            Ok(()) => {
                debug!(cost, "updated {ANNOTATION}");
                metrics.pod_deletion_cost.set(cost.into());
                last = Some(cost);
            }
            Err(e) => {
                metrics.pod_deletion_cost_errors.inc();
                if !warned {
                    warn!(
                        "cannot patch {ANNOTATION} on pod {namespace}/{pod}: {e}; the pod needs RBAC \
                         `patch` on pods in its namespace (the Helm chart creates it with \
                         podDeletionCost.enabled). The pool keeps working; retrying quietly"
                    );
                    warned = true;
                }
            }
        }
    }
}

#[cfg(feature = "kube")]
type PodApi = kube::Api<k8s_openapi::api::core::v1::Pod>;
#[cfg(not(feature = "kube"))]
type PodApi = ();

#[cfg(feature = "kube")]
async fn client(namespace: &str) -> Result<PodApi, String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| e.to_string())?;
    Ok(kube::Api::namespaced(client, namespace))
}

#[cfg(feature = "kube")]
async fn patch(api: &PodApi, pod: &str, cost: i32) -> Result<(), String> {
    use kube::api::{Patch, PatchParams};
    api.patch(
        pod,
        &PatchParams::default(),
        &Patch::Merge(patch_body(cost)),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[cfg(not(feature = "kube"))]
async fn client(_namespace: &str) -> Result<PodApi, String> {
    Err("this build has no `kube` feature".into())
}

#[cfg(not(feature = "kube"))]
async fn patch(_api: &PodApi, _pod: &str, _cost: i32) -> Result<(), String> {
    Err("this build has no `kube` feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_a_bucket_that_fits_int32() {
        let buckets: Vec<i32> = [0, -1, 1, 7, 9, 10, 99, 100, 250, 1000]
            .into_iter()
            .map(cost)
            .collect();
        assert_eq!(buckets, [0, 0, 1, 1, 1, 10, 10, 100, 100, 1000]);
        assert_eq!(cost(i64::MAX), 1_000_000_000);
        assert_eq!(
            patch_body(10).to_string(),
            r#"{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"10"}}}"#
        );
    }
}
