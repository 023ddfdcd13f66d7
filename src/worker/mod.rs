//! The dispatcher: claims due deliveries in batches under a lease, sends each through the
//! provider the registry picks, and records the step the pure `next_step` decides.

pub mod answer;
pub mod bundler;
pub mod completer;
pub mod escalator;
mod fairness;
pub mod heartbeats;
pub mod lanes;
pub mod nodes;
pub mod page_body;
pub mod pager;
pub mod receipts;
mod record;
pub mod replies;
pub mod retention;
pub mod storms;

use crate::core::fair::Pass;
use fairness::EndpointSlots;

use crate::config::DispatchConfig;
use crate::core::circuit::Health;
use crate::core::next_step::{Attempted, FailReason, Outcome, RetryPolicy, Step, next_step};
use crate::core::types::{ErrorClass, now_millis};
use crate::metrics::ProviderLabels;
use crate::metrics::{AttemptLabels, Metrics};
use crate::providers::registry::Pick;
use crate::providers::{Registry, SendError};
use crate::store::{Attempt, AttemptError, ClaimRequest, Claimed, Cluster, Lease, Queue};
use crate::telemetry::{Kind, Timed};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct Dispatcher {
    pub queue: Arc<dyn Queue>,
    /// Whether nodes share storage, and the provider rate slots they share.
    pub cluster: Arc<dyn Cluster>,
    pub providers: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub cfg: DispatchConfig,
    pub node_id: String,
    /// Poked after an accept so that new work is claimed at once.
    pub wake: Arc<Notify>,
    pub grace: Duration,
    /// Calls in flight per priority lane (critical, high, normal, low).
    pub lanes: [AtomicUsize; 4],
    /// Calls in flight per endpoint (webhook origins), for fair sharing.
    pub endpoints: EndpointSlots,
    /// Set when a claim is answered or every slot is busy (readiness).
    pub beat: Arc<std::sync::atomic::AtomicI64>,
    /// Records outcomes in groups.
    pub completer: completer::Completer,
    /// Where each delivery's spans go.
    pub tracer: crate::telemetry::Tracer,
}

/// A circuit slot taken by the router for one call: released when dropped unless the call's
/// outcome was recorded.
struct Probe<'a> {
    registry: &'a Registry,
    provider: Arc<dyn crate::providers::Provider>,
    to: String,
    settled: bool,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.registry
                .release(self.provider.as_ref(), &self.to, now_millis());
        }
    }
}

/// What one call in flight holds; given back when it is dropped, whatever ends the task.
struct Slot {
    dispatcher: Arc<Dispatcher>,
    lane: usize,
    endpoint: Option<String>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.dispatcher.lanes[self.lane].fetch_sub(1, Ordering::Relaxed);
        if let Some(k) = &self.endpoint {
            self.dispatcher.endpoints.done(k);
        }
    }
}

use lanes::claim_floor;
pub use lanes::{lane_caps, lane_room};

impl Dispatcher {
    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.cfg.retry_base.0,
            factor: self.cfg.retry_factor,
            cap: self.cfg.retry_cap.0,
            max_attempts: self.cfg.max_attempts,
        }
    }

    /// Runs until `stop` is cancelled, then waits up to the grace period for calls in flight
    /// and gives back the leases of those still running.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.cfg.concurrency));
        let in_flight: Arc<Mutex<HashMap<String, Lease>>> = Arc::default();
        let mut tasks = JoinSet::new();
        // Running from the start; from then on, only answered claims keep it so.
        self.beat.store(now_millis(), Ordering::Relaxed);
        loop {
            while let Some(done) = tasks.try_join_next() {
                note_panic(done);
            }
            if stop.is_cancelled() {
                break;
            }
            let free = permits.available_permits();
            if free == 0 {
                // Every slot busy with a call is progress too.
                self.beat.store(now_millis(), Ordering::Relaxed);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    done = tasks.join_next() => {
                        if let Some(done) = done {
                            note_panic(done);
                        }
                        continue;
                    }
                    // Still alive while every slot is busy.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            // On a shared database, claim in batches worth a round trip: while calls are in
            // flight and fewer than a quarter of the slots are free, wait for more to free
            // (briefly, so that a slow provider does not hold new work back). SQLite claims
            // in process, where small claims cost less than waiting.
            if self.cluster.shared()
                && free < claim_floor(self.cfg.concurrency, self.cfg.claim_batch)
                && !tasks.is_empty()
            {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    done = tasks.join_next() => {
                        if let Some(done) = done {
                            note_panic(done);
                        }
                        continue;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                }
            }
            // First a fair pass (each endpoint up to its share); when that leaves slots free
            // and some endpoints were held back, a spare pass lets healthy ones use them.
            let mut claimed_any = false;
            let mut failed = false;
            for pass in [Pass::Fair, Pass::Spare] {
                let free = permits.available_permits();
                if free == 0 {
                    break;
                }
                let now = now_millis();
                let excluded =
                    self.endpoints
                        .excluded(&self.providers, self.cfg.concurrency, pass, now);
                let held_back = !excluded.is_empty();
                let (lane_limits, bulk_limit) = lane_room(
                    self.cfg.concurrency,
                    std::array::from_fn(|i| self.lanes[i].load(Ordering::Relaxed)),
                );
                let limit = free.min(self.cfg.claim_batch);
                let req = ClaimRequest {
                    owner: self.node_id.clone(),
                    limit,
                    lane_limits,
                    bulk_limit,
                    lease_ms: self.cfg.lease.0.as_millis() as i64,
                    now,
                    skip_endpoints: excluded,
                };
                let claimed_ns = crate::telemetry::now_ns();
                let claimed = match self.queue.claim(req).await {
                    Ok(c) => {
                        // Readiness counts claims answered, not loops gone round: a
                        // dispatcher whose claims fail or hang is not running.
                        self.beat.store(now_millis(), Ordering::Relaxed);
                        c
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claim failed; retrying");
                        failed = true;
                        break;
                    }
                };
                let got = claimed.len();
                let (admitted, back) =
                    self.endpoints
                        .admit(&self.providers, claimed, self.cfg.concurrency, pass, now);
                if !back.is_empty()
                    && let Err(e) = self.queue.release(back).await
                {
                    tracing::warn!(error = %e, "could not give back deliveries over their endpoint's share; their leases expire by themselves");
                }
                claimed_any |= !admitted.is_empty();
                for (c, endpoint) in admitted {
                    let lane = c.priority.rank() as usize;
                    self.lanes[lane].fetch_add(1, Ordering::Relaxed);
                    let slot = Slot {
                        dispatcher: self.clone(),
                        lane,
                        endpoint,
                    };
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    if let Ok(mut m) = in_flight.lock() {
                        m.insert(c.lease.delivery_id.clone(), c.lease.clone());
                    }
                    let this = self.clone();
                    let in_flight = in_flight.clone();
                    tasks.spawn(async move {
                        let _slot = slot;
                        let _permit = permit;
                        let id = c.lease.delivery_id.clone();
                        this.process(c, claimed_ns).await;
                        if let Ok(mut m) = in_flight.lock() {
                            m.remove(&id);
                        }
                    });
                }
                if got >= limit || !held_back {
                    break;
                }
            }
            if failed {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(self.cfg.poll.0.max(Duration::from_millis(500))) => {}
                }
                continue;
            }
            if !claimed_any {
                // Nothing claimable now: new work (a wake), the poll, or — when a lane or an
                // endpoint is at its cap — a call finishing frees room again.
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.cfg.poll.0) => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
        }
        // Drain: let calls in flight finish within the grace period, then release the rest.
        let drained = tokio::time::timeout(self.grace, async {
            while let Some(done) = tasks.join_next().await {
                note_panic(done);
            }
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        let leftover: Vec<Lease> = in_flight
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        if !leftover.is_empty() {
            match self.queue.release(leftover).await {
                Ok(n) => tracing::info!(released = n, "released leases at shutdown"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not release leases; they expire by themselves")
                }
            }
        }
    }

    /// One claimed delivery, under a `claim` span (from the claim's start to the outcome
    /// recorded) that is a child of the message's accept span.
    #[tracing::instrument(skip_all, fields(message_id = %c.message_id, delivery_id = %c.lease.delivery_id, channel = %c.channel, tries = c.tries, trace_id = tracing::field::Empty))]
    async fn process(&self, mut c: Claimed, claimed_ns: u64) {
        if let Some(t) = &c.trace {
            tracing::Span::current().record("trace_id", t.trace_hex());
        }
        let claim = c.trace.filter(|_| self.tracer.on()).map(|t| {
            let mut s = Timed::child_of(&t, "claim", Kind::Internal).starting_at(claimed_ns);
            s.attr("herald.message_id", c.message_id.as_str());
            s.attr("herald.delivery_id", c.lease.delivery_id.as_str());
            s.attr("herald.channel", c.channel.as_str());
            s.attr("herald.tries", c.tries);
            s.attr("herald.node", self.node_id.as_str());
            s
        });
        if let Some(s) = &claim {
            c.trace = Some(s.ctx());
        }
        self.attempt(&mut c).await;
        if let Some(s) = claim {
            self.tracer.record(s.end());
        }
    }

    async fn attempt(&self, c: &mut Claimed) {
        let now = now_millis();
        if now >= c.expires_at {
            self.finish(c, None, Step::Expired, now).await;
            return;
        }
        // Providers that cannot carry this message at all are passed by, untouched.
        let mut skip = c.skip_providers.clone();
        let mut unfit = Vec::new();
        let relevant: Vec<_> = self
            .providers
            .of_channel(c.channel)
            .iter()
            .filter(|p| c.channel != crate::core::types::Channel::Chat || p.id() == c.to)
            .collect();
        let relevant_count = relevant.len();
        for p in relevant {
            if let Some(why) = p.cannot_carry(c) {
                skip.push(p.id().to_string());
                unfit.push(format!("{}: {why}", p.id()));
            }
        }
        let provider = match self.providers.pick(
            c.channel,
            &c.to,
            &skip,
            c.last_provider.as_deref(),
            rand::random(),
            now,
        ) {
            Pick::Use(p) => p,
            // Every provider is resting or out of budget: a later channel takes over, or the
            // delivery waits (no try counted) until one may be called.
            Pick::Wait(at) if !c.has_next_channel => {
                self.deferred("no_provider_ready");
                self.finish(
                    c,
                    None,
                    Step::Defer {
                        at: at.min(c.expires_at),
                    },
                    now,
                )
                .await;
                return;
            }
            pick => {
                let (code, detail) = match pick {
                    Pick::None if !unfit.is_empty() && unfit.len() == relevant_count => (
                        "no_provider_can_carry",
                        format!(
                            "no provider of channel {} can carry this message: {}",
                            c.channel,
                            unfit.join("; ")
                        ),
                    ),
                    Pick::Wait(_) => (
                        "channel_down",
                        format!(
                            "no provider of channel {} can be called now; moving to the next channel",
                            c.channel
                        ),
                    ),
                    _ => (
                        "no_provider_available",
                        format!(
                            "every provider of channel {} was skipped or disabled for this delivery",
                            c.channel
                        ),
                    ),
                };
                let attempt = Attempt {
                    n: 0, // numbered by storage
                    provider: "none".into(),
                    at: now,
                    duration_ms: 0,
                    outcome: "error",
                    error: Some(AttemptError {
                        // The message's fault when no provider can carry it.
                        class: if code == "no_provider_can_carry" {
                            ErrorClass::Rejected
                        } else {
                            ErrorClass::Provider
                        },
                        code: code.into(),
                        detail,
                    }),
                    provider_message_id: None,
                };
                self.finish(c, Some(attempt), Step::Failed(FailReason::NoProvider), now)
                    .await;
                return;
            }
        };
        // Until the call's outcome is recorded, the circuit's probe slot (if one was taken)
        // is given back on every path that does not call, a panic or an abort included.
        let mut probe = Probe {
            registry: &self.providers,
            provider: provider.clone(),
            to: c.to.clone(),
            settled: false,
        };
        // With many nodes, a provider's budget is shared: take the slot in storage too.
        if self.cluster.shared()
            && let Some(rates) = self.providers.limiter(provider.id()).map(|l| l.rates())
        {
            let wait = match self
                .cluster
                .take_rate_slot(&format!("provider:{}", provider.id()), &rates, now)
                .await
            {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the shared provider budget; waiting");
                    Some(1000)
                }
            };
            if let Some(w) = wait {
                self.deferred("shared_budget");
                self.finish(
                    c,
                    None,
                    Step::Defer {
                        at: (now + w).min(c.expires_at),
                    },
                    now,
                )
                .await;
                return;
            }
        }
        // A recipient the provider itself limits (a callee's calls per minute, hour, day):
        // wait for a slot rather than be refused.
        let per_recipient = provider.recipient_limits();
        if !per_recipient.is_empty() {
            let key = format!("recipient:{}:{}", provider.id(), c.to);
            let wait = if self.cluster.shared() {
                self.cluster
                    .take_rate_slot(&key, per_recipient, now)
                    .await
                    .unwrap_or(Some(1000))
            } else {
                self.providers
                    .recipients
                    .try_acquire(&key, per_recipient, now)
                    .err()
                    .map(|d| d.as_millis() as i64)
            };
            if let Some(w) = wait {
                self.deferred("recipient_budget");
                self.finish(
                    c,
                    None,
                    Step::Defer {
                        at: (now + w).min(c.expires_at),
                    },
                    now,
                )
                .await;
                return;
            }
        }
        self.metrics.in_flight.inc();
        let started = Instant::now();
        // The call's span: the provider passes it on where it can (webhooks).
        let call = c.trace.filter(|_| self.tracer.on()).map(|t| {
            let mut s = Timed::child_of(&t, format!("send {}", provider.id()), Kind::Client);
            s.attr("herald.provider", provider.id());
            s.attr("herald.channel", c.channel.as_str());
            s
        });
        let under = c.trace;
        if let Some(s) = &call {
            c.trace = Some(s.ctx());
        }
        let result = provider.send(c).await;
        c.trace = under;
        if let Some(mut s) = call {
            if let Err(e) = &result {
                s.attr("herald.error_class", e.class().as_str());
                s.attr("herald.error_code", e.code());
                s.fail(e.code());
            }
            self.tracer.record(s.end());
        }
        let duration_ms = started.elapsed().as_millis() as i64;
        self.metrics.in_flight.dec();
        let now = now_millis();
        let health = match &result {
            Ok(_) => Health::Ok,
            Err(e) if !e.provider_fault() => Health::Ok,
            Err(e) if e.class() == ErrorClass::Provider => Health::Fatal,
            Err(_) => Health::Failure,
        };
        probe.settled = true;
        self.providers.record(
            provider.as_ref(),
            &c.to,
            now,
            health,
            duration_ms.clamp(0, u32::MAX as i64) as u32,
        );
        if health == Health::Fatal {
            self.metrics
                .provider_alerts
                .get_or_create(&ProviderLabels {
                    provider: provider.id().into(),
                })
                .inc();
            tracing::error!(
                provider = provider.id(),
                "provider refused our credentials or configuration; its circuit is open"
            );
        }
        let (outcome, attempt) = match &result {
            Ok(receipt) => (
                Outcome::Sent,
                Attempt {
                    n: 0, // numbered by storage
                    provider: provider.id().to_string(),
                    at: now,
                    duration_ms,
                    outcome: "sent",
                    error: None,
                    provider_message_id: receipt
                        .provider_message_id
                        .as_ref()
                        .map(|m| m.replace('\0', "")),
                },
            ),
            Err(e) => (
                Outcome::Error {
                    class: e.class(),
                    retry_after: e.retry_after(),
                },
                Attempt {
                    n: 0, // numbered by storage
                    provider: provider.id().to_string(),
                    at: now,
                    duration_ms,
                    outcome: "error",
                    error: Some(attempt_error(e)),
                    provider_message_id: None,
                },
            ),
        };
        self.metrics
            .attempts
            .get_or_create(&AttemptLabels {
                channel: c.channel.as_str().into(),
                provider: provider.id().into(),
                outcome: match &result {
                    Ok(_) => "sent".into(),
                    Err(e) => e.class().as_str().into(),
                },
            })
            .inc();
        let step = next_step(
            &self.policy(),
            Attempted {
                tries: c.tries,
                now,
                expires_at: c.expires_at,
                other_provider: self.providers.has_other_ready(
                    c.channel,
                    &c.to,
                    &skip,
                    provider.id(),
                    now,
                ),
                failover_at: c
                    .has_next_channel
                    .then(|| c.activated_at + self.cfg.failover_after.0.as_millis() as i64),
            },
            &outcome,
            rand::random(),
        );
        match &result {
            Ok(_) => tracing::debug!(provider = provider.id(), "sent"),
            Err(e) => {
                tracing::info!(provider = provider.id(), error = %e, step = ?step, "attempt failed")
            }
        }
        self.finish(c, Some(attempt), step, now).await;
    }
}

/// A delivery task that panicked is logged (its slot and lane were given back by its guard;
/// its lease expires and the delivery is retried).
fn note_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!("a delivery task panicked; its lease expires and the delivery is retried");
    }
}

/// What is stored of a failed call: the provider's code and the first 500 characters of its
/// detail, without NUL characters (which PostgreSQL text refuses: one such outcome would
/// fail the group of outcomes it is stored with).
fn attempt_error(e: &SendError) -> AttemptError {
    AttemptError {
        class: e.class(),
        code: e.code().replace('\0', ""),
        detail: e
            .detail()
            .chars()
            .filter(|c| *c != '\0')
            .take(500)
            .collect(),
    }
}
