//! Recording what happened to a claimed delivery: through the completer, patiently while
//! storage is away, with the metrics of what finished.

use super::Dispatcher;
use crate::core::next_step::Step;
use crate::metrics::{ChannelLabels, FinishedLabels};
use crate::store::{Attempt, Claimed, Completion};
use crate::telemetry::{Kind, Timed};

impl Dispatcher {
    pub(super) fn deferred(&self, reason: &str) {
        self.metrics
            .deferred
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub(super) async fn finish(&self, c: &Claimed, attempt: Option<Attempt>, step: Step, now: i64) {
        let completion = Completion {
            lease: c.lease.clone(),
            attempt,
            step,
            now,
        };
        let span = c
            .trace
            .filter(|_| self.tracer.on())
            .map(|t| Timed::child_of(&t, "outcome", Kind::Internal));
        let recorded = self.complete_patiently(completion).await;
        if let Some(mut s) = span {
            s.attr(
                "herald.step",
                match step {
                    Step::Sent => "sent",
                    Step::Expired => "expired",
                    Step::Failed(_) => "failed",
                    Step::Retry { .. } => "retry",
                    Step::Defer { .. } => "deferred",
                },
            );
            match &recorded {
                Ok(true) => {}
                Ok(false) => s.fail("the lease was taken over (stale fence)"),
                Err(e) => s.fail(format!("cannot record the outcome: {e}")),
            }
            if matches!(step, Step::Failed(_) | Step::Expired) {
                s.fail("the delivery failed");
            }
            self.tracer.record(s.end());
        }
        match recorded {
            Ok(true) => {
                let status = match step {
                    Step::Sent => {
                        let secs = (now - c.created_at).max(0) as f64 / 1000.0;
                        self.metrics
                            .latency
                            .get_or_create(&ChannelLabels {
                                channel: c.channel.as_str().into(),
                            })
                            .observe(secs);
                        Some("sent")
                    }
                    Step::Expired => Some("expired"),
                    Step::Failed(_) => Some("failed"),
                    Step::Retry { .. } | Step::Defer { .. } => None,
                };
                if let Some(status) = status {
                    self.metrics
                        .finished
                        .get_or_create(&FinishedLabels {
                            channel: c.channel.as_str().into(),
                            status: status.into(),
                        })
                        .inc();
                }
            }
            Ok(_) => tracing::warn!("completion refused: the lease was taken over (stale fence)"),
            Err(e) => {
                tracing::error!(error = %e, "cannot record the outcome; the lease will expire and the delivery be retried")
            }
        }
    }

    /// Records an outcome, retrying while storage is unreachable (an outage) for up to most
    /// of the lease: the call was made, so giving up would mean sending it again once the
    /// lease expires. Retrying is safe: a lease taken over meanwhile is refused by its fence.
    async fn complete_patiently(
        &self,
        completion: Completion,
    ) -> Result<bool, crate::store::StoreError> {
        let give_up = std::time::Instant::now() + self.cfg.lease.0.mul_f64(0.8);
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            match self.completer.complete(completion.clone()).await {
                // Anything but stored data found corrupt may pass (an outage, a deadlock).
                Err(e)
                    if !matches!(e, crate::store::StoreError::Corrupt(_))
                        && std::time::Instant::now() + pause < give_up =>
                {
                    tracing::warn!(error = %e, delivery = %completion.lease.delivery_id, "cannot record the outcome yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                r => return r,
            }
        }
    }
}
