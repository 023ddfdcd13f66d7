//! Polls delivery reports for providers that do not push them (Aliyun QuerySendDetails):
//! sent deliveries from the last day still without a receipt are looked up, and their
//! status becomes `delivered` or `failed`.

use crate::core::types::{ErrorClass, Millis, now_millis};
use crate::providers::Provider;
use crate::providers::aliyun::{AliyunProvider, phone_for_aliyun};
use crate::store::{AttemptError, AwaitingReceipt, Cluster, ReceiptReport, Receipts};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LOOKBACK_MS: i64 = 24 * 3600 * 1000;
/// A report is not expected sooner than this after sending.
const MIN_AGE_MS: i64 = 1000;

/// Polls on one node at a time: the node holding the `receipt-poll` job lease (taken over by
/// another node when its holder dies).
pub async fn poll_loop<S: Receipts + Cluster + ?Sized>(
    pollers: Vec<Arc<AliyunProvider>>,
    store: Arc<S>,
    every: Duration,
    node: String,
    stop: CancellationToken,
) {
    if pollers.is_empty() {
        return;
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let ttl = (every.as_millis() as i64 * 3).max(10_000);
        match store
            .take_job_lease("receipt-poll", &node, now_millis(), ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue, // another node polls
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the receipt-poll lease");
                continue;
            }
        }
        for p in &pollers {
            if let Err(e) = poll_once(p, store.as_ref()).await {
                tracing::warn!(provider = p.id(), error = %e, "receipt polling failed; will try again");
            }
        }
    }
}

/// `yyyyMMdd` of `ms` in China Standard Time, as QuerySendDetails wants `SendDate`.
pub fn send_date(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((ms / 1000) + 8 * 3600)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}{:02}{:02}", t.year(), t.month() as u8, t.day())
}

pub async fn poll_once<S: Receipts + ?Sized>(
    p: &AliyunProvider,
    store: &S,
) -> Result<usize, String> {
    let now = now_millis();
    let waiting = store
        .awaiting_receipts(p.id(), now - LOOKBACK_MS, now - MIN_AGE_MS, 100)
        .await
        .map_err(|e| e.to_string())?;
    let mut applied = 0;
    for w in waiting {
        if let Some(report) = query(p, &w).await?
            && let Ok(crate::store::ReceiptOutcome::Applied { .. }) =
                store.apply_receipt(report).await
        {
            applied += 1;
        }
    }
    Ok(applied)
}

async fn query(p: &AliyunProvider, w: &AwaitingReceipt) -> Result<Option<ReceiptReport>, String> {
    let mut params = vec![
        ("PhoneNumber".to_string(), phone_for_aliyun(&w.to)),
        ("SendDate".into(), send_date(w.sent_at)),
        ("PageSize".into(), "10".into()),
        ("CurrentPage".into(), "1".into()),
    ];
    if let Some(b) = &w.provider_message_id {
        params.push(("BizId".into(), b.clone()));
    }
    let (_, json) = p
        .call("QuerySendDetails", params)
        .await
        .map_err(|e| e.to_string())?;
    if json["Code"].as_str() != Some("OK") {
        return Err(format!(
            "QuerySendDetails: {} {}",
            json["Code"], json["Message"]
        ));
    }
    let empty = vec![];
    let list = json["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
        .as_array()
        .unwrap_or(&empty);
    // Only the report of this delivery (its OutId): another message's report to the same
    // number on the same day must never be applied to it.
    let Some(d) = list
        .iter()
        .find(|d| d["OutId"].as_str() == Some(w.delivery_id.as_str()))
    else {
        return Ok(None);
    };
    let status = d["SendStatus"].as_i64().unwrap_or(1);
    if status == 1 {
        return Ok(None); // still waiting for the handset's report
    }
    let delivered = status == 3;
    let err = d["ErrCode"].as_str().unwrap_or("").to_string();
    Ok(Some(ReceiptReport {
        provider: p.id().to_string(),
        delivery_id: Some(w.delivery_id.clone()),
        provider_message_id: w.provider_message_id.clone(),
        dedupe_key: format!(
            "{}:{}",
            w.provider_message_id.as_deref().unwrap_or(&w.delivery_id),
            phone_for_aliyun(&w.to)
        ),
        delivered,
        error: (!delivered).then(|| AttemptError {
            class: ErrorClass::Recipient,
            detail: format!("SendStatus 2, {err}"),
            code: err,
        }),
        at: now_millis(),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn send_dates_are_in_china_time() {
        let ms = crate::core::types::parse_rfc3339("2026-11-22T17:00:00Z").unwrap();
        assert_eq!(super::send_date(ms), "20261123");
        let ms = crate::core::types::parse_rfc3339("2026-11-22T15:59:59Z").unwrap();
        assert_eq!(super::send_date(ms), "20261122");
    }
}
