//! Every Prometheus metric, declared in one place. Counters and histograms are updated in
//! process; queue depths are read from storage at scrape time.

use crate::store::Stats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub priority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub channel: String,
    pub provider: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    pub channel: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderStateLabels {
    pub provider: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub code: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub accepted: Family<PriorityLabels, Counter>,
    pub refused: Family<RequestLabels, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub finished: Family<FinishedLabels, Counter>,
    pub latency: Family<ChannelLabels, Histogram>,
    pub queue_depth: Family<StateLabels, Gauge>,
    pub dead_letters: Gauge,
    pub in_flight: Gauge,
    pub provider_alerts: Family<ProviderLabels, Counter>,
    pub provider_state: Family<ProviderStateLabels, Gauge>,
    pub provider_circuit_open: Family<ProviderLabels, Gauge>,
    pub endpoints_not_closed: Family<ProviderLabels, Gauge>,
    pub provider_success_ratio: Family<ProviderLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub mode: Family<ModeLabels, Gauge>,
    pub spooled: Counter,
    pub spool_depth: Gauge,
    pub storage_up: Gauge,
    pub backup_last_success: Gauge,
    pub backup_interval: Gauge,
    pub backup_last_bytes: Gauge,
    pub backup_last_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub backup_failures: Counter,
    pub backup_offsite_last_success: Gauge,
    pub backup_offsite_failures: Counter,
    pub retention_deleted: Family<WhatLabels, Counter>,
    /// Spans given to the OTLP exporter, by what became of them.
    pub trace_spans: Family<WhatLabels, Counter>,
    pub receipts: Family<ReceiptLabels, Counter>,
    pub deferred: Family<ReasonLabels, Counter>,
    /// Alerts taken in, by source and outcome (`opened`, `updated`, `resolved`, `unchanged`).
    pub alerts: Family<AlertLabels, Counter>,
    /// Alert payloads refused with a 4xx, by source and problem code (alert on any).
    pub alerts_refused: Family<AlertLabels, Counter>,
    /// Incidents opened, by severity.
    pub incidents_opened: Family<SeverityLabels, Counter>,
    /// Time from an incident opening to its pages being in the queue.
    pub alert_to_page: Histogram,
    /// How late each escalation step fired after it was due.
    pub escalation_fire_lag: Histogram,
    /// Pages queued by escalation steps, by contact method.
    pub pages: Family<MethodLabels, Counter>,
    /// Time to acknowledge (first page to first human acknowledgement), by severity.
    pub incident_tta: Family<SeverityLabels, Histogram>,
    /// Time to resolve (opened to resolved), by severity.
    pub incident_ttr: Family<SeverityLabels, Histogram>,
    /// Replies and link uses, by how they came and what they did.
    pub acks: Family<AckLabels, Counter>,
    /// Pages that went out inside a bundle of several, by contact method.
    pub pages_bundled: Family<MethodLabels, Counter>,
    /// Bundle messages (several pages or notices as one), by contact method.
    pub bundles: Family<MethodLabels, Counter>,
    /// 1 while a scope is in a storm (new incidents grouped into one), by scope.
    pub storm_active: Family<ScopeLabels, Gauge>,
    /// Storms begun, by scope.
    pub storms: Family<ScopeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    pub scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabels {
    /// `api`, `link`, `sms`, `voice`.
    pub via: String,
    /// `acknowledged`, `resolved`, `ignored`, `refused`.
    pub outcome: String,
}

fn response_histogram() -> Histogram {
    Histogram::new([
        10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
        86400.0,
    ])
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub source: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiptLabels {
    pub provider: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhatLabels {
    pub what: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("herald");
        let accepted = Family::<PriorityLabels, Counter>::default();
        r.register(
            "messages_accepted",
            "Messages stored durably and answered 202",
            accepted.clone(),
        );
        let refused = Family::<RequestLabels, Counter>::default();
        r.register(
            "requests_refused",
            "Send requests refused, by problem code",
            refused.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        r.register(
            "delivery_attempts",
            "Provider calls by channel, provider and outcome",
            attempts.clone(),
        );
        let finished = Family::<FinishedLabels, Counter>::default();
        r.register(
            "deliveries_finished",
            "Deliveries that reached an end state",
            finished.clone(),
        );
        let latency = Family::<ChannelLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        r.register(
            "delivery_latency_seconds",
            "Time from acceptance to a provider accepting the delivery",
            latency.clone(),
        );
        let queue_depth = Family::<StateLabels, Gauge>::default();
        r.register(
            "queue_depth",
            "Deliveries by state (read from storage at scrape)",
            queue_depth.clone(),
        );
        let dead_letters = Gauge::default();
        r.register(
            "dead_letters",
            "Messages in the dead-letter list (read at scrape)",
            dead_letters.clone(),
        );
        let in_flight = Gauge::default();
        r.register(
            "deliveries_in_flight",
            "Provider calls in progress on this node",
            in_flight.clone(),
        );
        let provider_alerts = Family::<ProviderLabels, Counter>::default();
        r.register(
            "provider_fatal_errors",
            "Calls a provider refused for credentials, signature or account reasons (alert on any)",
            provider_alerts.clone(),
        );
        let provider_state = Family::<ProviderStateLabels, Gauge>::default();
        r.register(
            "provider_state",
            "1 for each provider's current state: up, degraded, down, disabled",
            provider_state.clone(),
        );
        let provider_circuit_open = Family::<ProviderLabels, Gauge>::default();
        r.register(
            "provider_circuit_open",
            "1 while the provider's circuit breaker is open",
            provider_circuit_open.clone(),
        );
        let endpoints_not_closed = Family::<ProviderLabels, Gauge>::default();
        r.register(
            "provider_endpoints_not_closed",
            "Endpoints (webhook origins) of the provider whose own circuit is open or half-open",
            endpoints_not_closed.clone(),
        );
        let provider_success_ratio =
            Family::<ProviderLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        r.register(
            "provider_success_ratio",
            "Share of the provider's recent calls that succeeded",
            provider_success_ratio.clone(),
        );
        let mode = Family::<ModeLabels, Gauge>::default();
        r.register(
            "mode",
            "1 for the gateway's current mode: normal, core_only, read_only",
            mode.clone(),
        );
        let spooled = Counter::default();
        r.register(
            "messages_spooled",
            "Messages accepted into the local spool while storage was unreachable",
            spooled.clone(),
        );
        let spool_depth = Gauge::default();
        r.register(
            "spool_depth",
            "Messages in the local spool, not yet in storage",
            spool_depth.clone(),
        );
        let storage_up = Gauge::default();
        r.register(
            "storage_up",
            "1 when storage answered the last check",
            storage_up.clone(),
        );
        let backup_last_success = Gauge::default();
        r.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the newest backup in the backup folder (0: none)",
            backup_last_success.clone(),
        );
        let backup_offsite_last_success = Gauge::default();
        r.register(
            "backup_offsite_last_success_timestamp_seconds",
            "Unix time of the last backup copied to off-site storage (0: none since start)",
            backup_offsite_last_success.clone(),
        );
        let backup_offsite_failures = Counter::default();
        r.register(
            "backup_offsite_failures",
            "Backups that could not be copied off-site",
            backup_offsite_failures.clone(),
        );
        let backup_interval = Gauge::default();
        r.register(
            "backup_interval_seconds",
            "Configured interval of scheduled backups (0: not scheduled)",
            backup_interval.clone(),
        );
        let backup_last_bytes = Gauge::default();
        r.register(
            "backup_last_size_bytes",
            "Size of the last backup this node wrote",
            backup_last_bytes.clone(),
        );
        let backup_last_duration = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        r.register(
            "backup_last_duration_seconds",
            "How long the last backup this node wrote took",
            backup_last_duration.clone(),
        );
        let backup_failures = Counter::default();
        r.register(
            "backup_failures",
            "Scheduled backups that failed",
            backup_failures.clone(),
        );
        let receipts = Family::<ReceiptLabels, Counter>::default();
        r.register(
            "receipts",
            "Delivery receipts received, by what became of them: applied, duplicate, ignored (delivery no longer sent), unknown",
            receipts.clone(),
        );
        let retention_deleted = Family::<WhatLabels, Counter>::default();
        r.register(
            "retention_deleted",
            "Rows deleted by the retention job, by kind (messages count with their deliveries and attempts)",
            retention_deleted.clone(),
        );
        let trace_spans = Family::<WhatLabels, Counter>::default();
        r.register(
            "trace_spans",
            "Spans sent to the OTLP receiver (exported) or dropped (the receiver refused or did not answer, or the buffer was full)",
            trace_spans.clone(),
        );
        let deferred = Family::<ReasonLabels, Counter>::default();
        r.register(
            "deliveries_deferred",
            "Claimed deliveries put back to wait, untried, because no provider could be called: \
             no_provider_ready (every one resting or over its own budget) or shared_budget \
             (the budget shared by the cluster)",
            deferred.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        r.register(
            "alerts_received",
            "Alerts taken in (Alertmanager, Events v2), by what they did: opened, updated, resolved, unchanged",
            alerts.clone(),
        );
        let alerts_refused = Family::<AlertLabels, Counter>::default();
        r.register(
            "alert_payloads_refused",
            "Alert payloads answered with a 4xx (never retried by Alertmanager: alert on any), by problem code",
            alerts_refused.clone(),
        );
        let incidents_opened = Family::<SeverityLabels, Counter>::default();
        r.register(
            "incidents_opened",
            "Incidents opened, by severity",
            incidents_opened.clone(),
        );
        let alert_to_page = latency_histogram();
        r.register(
            "alert_to_page_seconds",
            "Time from an incident opening to its pages being queued",
            alert_to_page.clone(),
        );
        let escalation_fire_lag = latency_histogram();
        r.register(
            "escalation_fire_lag_seconds",
            "How late each escalation step fired after it was due (node deaths show as lease-long lags)",
            escalation_fire_lag.clone(),
        );
        let pages = Family::<MethodLabels, Counter>::default();
        r.register(
            "pages",
            "Pages queued by escalation steps as messages of their own (not bundled), by contact method",
            pages.clone(),
        );
        let incident_tta = Family::<SeverityLabels, Histogram>::new_with_constructor(
            response_histogram as fn() -> Histogram,
        );
        r.register(
            "incident_time_to_acknowledge_seconds",
            "First page to first human acknowledgement, by severity (drills excluded)",
            incident_tta.clone(),
        );
        let incident_ttr = Family::<SeverityLabels, Histogram>::new_with_constructor(
            response_histogram as fn() -> Histogram,
        );
        r.register(
            "incident_time_to_resolve_seconds",
            "Incident opened to resolved, by severity (drills excluded)",
            incident_ttr.clone(),
        );
        let acks = Family::<AckLabels, Counter>::default();
        r.register(
            "incident_answers",
            "Acknowledgements and resolutions by people, by how they came (api, link, sms, voice) and outcome",
            acks.clone(),
        );
        let pages_bundled = Family::<MethodLabels, Counter>::default();
        r.register(
            "pages_bundled",
            "Pages that went out inside a bundle of several (one message to one person), by contact method",
            pages_bundled.clone(),
        );
        let bundles = Family::<MethodLabels, Counter>::default();
        r.register(
            "page_bundles",
            "Bundle messages sent (several pages or notices to one person as one), by contact method",
            bundles.clone(),
        );
        let storm_active = Family::<ScopeLabels, Gauge>::default();
        r.register(
            "storm_active",
            "1 while a scope is in an alert storm (new incidents grouped into one storm incident)",
            storm_active.clone(),
        );
        let storms = Family::<ScopeLabels, Counter>::default();
        r.register("storms", "Alert storms begun, by scope", storms.clone());
        // Series from the start, so a dashboard or rule sees 0 rather than nothing.
        for method in ["sms", "voice", "email", "push", "chat", "inbox"] {
            let l = MethodLabels {
                method: method.into(),
            };
            let _ = pages_bundled.get_or_create(&l);
            let _ = bundles.get_or_create(&l);
        }
        let all = ScopeLabels {
            scope: "all".into(),
        };
        let _ = storm_active.get_or_create(&all);
        let _ = storms.get_or_create(&all);
        Metrics {
            pages_bundled,
            bundles,
            storm_active,
            storms,
            escalation_fire_lag,
            pages,
            incident_tta,
            incident_ttr,
            acks,
            alerts,
            alerts_refused,
            incidents_opened,
            alert_to_page,
            deferred,
            backup_last_success,
            backup_interval,
            backup_last_bytes,
            backup_last_duration,
            backup_failures,
            backup_offsite_last_success,
            backup_offsite_failures,
            retention_deleted,
            trace_spans,
            receipts,
            spooled,
            spool_depth,
            storage_up,
            provider_alerts,
            provider_state,
            provider_circuit_open,
            endpoints_not_closed,
            provider_success_ratio,
            mode,
            registry: Mutex::new(r),
            accepted,
            refused,
            attempts,
            finished,
            latency,
            queue_depth,
            dead_letters,
            in_flight,
        }
    }

    /// Sets the gauges read from storage.
    pub fn observe_stats(&self, s: &Stats) {
        use crate::core::types::DeliveryStatus;
        for st in DeliveryStatus::ALL {
            let n = s
                .deliveries_by_status
                .iter()
                .find(|(k, _)| k == st)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.queue_depth
                .get_or_create(&StateLabels {
                    state: st.as_str().into(),
                })
                .set(n);
        }
        self.dead_letters.set(s.dead_letters);
    }

    /// The exposition in Prometheus text format 0.0.4 (what `/metrics` declares).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        openmetrics_to_text(&out)
    }
}

impl Metrics {
    /// Sets the provider gauges from the registry's view.
    pub fn observe_providers(&self, views: &[crate::providers::registry::ProviderView]) {
        for v in views {
            // Present from the start, at 0, so that `increase()` in alert rules sees it.
            let _ = self.provider_alerts.get_or_create(&ProviderLabels {
                provider: v.id.clone(),
            });
            for st in ["up", "degraded", "down", "disabled"] {
                self.provider_state
                    .get_or_create(&ProviderStateLabels {
                        provider: v.id.clone(),
                        state: st.into(),
                    })
                    .set((v.state == st) as i64);
            }
            self.provider_circuit_open
                .get_or_create(&ProviderLabels {
                    provider: v.id.clone(),
                })
                .set((v.circuit == "open") as i64);
            if let Some(n) = v
                .endpoints
                .as_ref()
                .and_then(|e| e["not_closed"].as_array())
            {
                self.endpoints_not_closed
                    .get_or_create(&ProviderLabels {
                        provider: v.id.clone(),
                    })
                    .set(n.len() as i64);
            }
            self.provider_success_ratio
                .get_or_create(&ProviderLabels {
                    provider: v.id.clone(),
                })
                .set(v.success_rate);
        }
    }

    pub fn observe_receipt(&self, provider: &str, outcome: &crate::store::ReceiptOutcome) {
        self.receipts
            .get_or_create(&ReceiptLabels {
                provider: provider.into(),
                outcome: outcome.name().into(),
            })
            .inc();
    }

    pub fn observe_retention(&self, p: &crate::store::Purged) {
        for (what, n) in p.kinds() {
            self.retention_deleted
                .get_or_create(&WhatLabels { what: what.into() })
                .inc_by(n as u64);
        }
    }

    pub fn observe_mode(&self, mode: &str) {
        for m in ["normal", "core_only", "read_only"] {
            self.mode
                .get_or_create(&ModeLabels { mode: m.into() })
                .set((m == mode) as i64);
        }
    }
}

/// prometheus-client writes OpenMetrics: counter families are named without `_total` in their
/// HELP and TYPE lines, and the text ends with `# EOF`. Text format 0.0.4 names the series
/// itself (`…_total`) and has no EOF marker.
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 64);
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_named_by_their_series_in_text_format() {
        let om = "# HELP x Things.\n# TYPE x counter\nx_total 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            super::openmetrics_to_text(om),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }
}
