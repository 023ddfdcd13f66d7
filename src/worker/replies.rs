//! Answers that come back on the channel a page went out on: SMS replies (Twilio inbound
//! webhooks, Aliyun SmsUp pushes) and keys pressed during a page's call. A reply from a
//! number that was never paged is ignored, unanswered (no loop with another robot); answers
//! to paged numbers are bounded per hour; STOP ends SMS pages to the number.

use super::answer::{Via, answer, answer_all};
use crate::api::AppState;
use crate::core::oncall::reply::{self, Act, Reply};
use crate::core::types::now_millis;
use crate::metrics::AckLabels;
use crate::store::{Acted, BundleRow, Expect, IncidentAction, PageRow, StoreError};

fn action(a: Act) -> IncidentAction {
    match a {
        Act::Acknowledge => IncidentAction::Acknowledge,
        Act::Resolve => IncidentAction::Resolve,
    }
}

fn ignored(state: &AppState, via: Via) {
    state
        .metrics
        .acks
        .get_or_create(&AckLabels {
            via: via.as_str().into(),
            outcome: "ignored".into(),
        })
        .inc();
}

/// Whether an answer may go to `phone` now (bounded per hour).
fn may_answer(state: &AppState, phone: &str) -> bool {
    let mut m = state
        .reply_answers
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if m.len() > 10_000 {
        m.retain(|_, v| v.last().is_some_and(|t| now_millis() - t < 3_600_000));
    }
    let sent = m.entry(phone.to_string()).or_default();
    reply::may_answer(sent, now_millis(), state.cfg.oncall.replies_per_hour)
}

/// Handles one SMS from `phone`; the answer to send back, if any. `once` names the reply
/// (the provider's message id): a provider's retry of the same reply does nothing again.
pub async fn sms(
    state: &AppState,
    phone: &str,
    text: &str,
    once: &str,
) -> Result<Option<String>, StoreError> {
    let since = now_millis() - state.cfg.oncall.reply_code_window.0.as_millis() as i64;
    let esc = &state.store.escalations;
    let parsed = reply::parse(text);
    // A bundle's code answers every incident in it.
    if let Reply::Code(c, a) = parsed
        && esc.page_for_reply(phone, Some(c), since).await?.is_none()
        && let Some((b, rows)) = state
            .store
            .bundles
            .bundle_for_reply(phone, c, since)
            .await?
    {
        let said: String = text.trim().chars().take(100).collect();
        let told = act_on_all(state, &b, &rows, a, Via::Sms, &format!("reply {said}")).await?;
        if !esc
            .spend_link(&format!("reply:{once}"), now_millis())
            .await?
        {
            return Ok(None);
        }
        return Ok(may_answer(state, phone).then_some(told));
    }
    let page = match parsed {
        Reply::Code(c, _) => esc.page_for_reply(phone, Some(c), since).await?,
        Reply::Bare(_) | Reply::Stop | Reply::Unknown => {
            esc.page_for_reply(phone, None, since).await?
        }
    };
    // A number with no page since `since` is not answered at all.
    let last = esc.last_page_to(phone, since).await?;
    let known = last.is_some();
    if !known {
        tracing::info!(phone = %crate::log_escape::escape_line(phone), "an SMS from a number never paged: ignored");
        ignored(state, Via::Sms);
        return Ok(None);
    }
    let said = match (parsed, &page) {
        (Reply::Stop, _) => stop(state, phone, page.as_ref().or(last.as_ref())).await?,
        (Reply::Unknown, _) => {
            ignored(state, Via::Sms);
            "Herald did not understand. Reply with the code of a page and a or r, e.g. 3a.".into()
        }
        (Reply::Code(c, _), None) => {
            ignored(state, Via::Sms);
            format!("No page to this phone has code {c} now.")
        }
        (Reply::Bare(_), None) => {
            ignored(state, Via::Sms);
            "No page to this phone waits for an answer.".into()
        }
        (Reply::Code(_, a) | Reply::Bare(a), Some(p)) => {
            let said: String = text.trim().chars().take(100).collect();
            act_on(state, p, a, Via::Sms, &format!("reply {said}")).await?
        }
    };
    // Spent once the reply has acted: a provider's resend of it (same id) is answered by
    // nothing, and one that failed half-way is acted on again when resent.
    if !esc
        .spend_link(&format!("reply:{once}"), now_millis())
        .await?
    {
        return Ok(None);
    }
    Ok(may_answer(state, phone).then_some(said))
}

/// Acts on a page's incident as the person it went to; the sentence answered.
async fn act_on(
    state: &AppState,
    p: &PageRow,
    a: Act,
    via: Via,
    said: &str,
) -> Result<String, StoreError> {
    let verb = action(a).done();
    Ok(
        match answer(state, &p.incident_id, action(a), &p.person, via, said).await? {
            Acted::Done(i) => format!("#{} {verb} by you. Thank you.", i.number),
            Acted::NotNow(i) => format!("#{} is {} already.", i.number, i.status.as_str()),
            Acted::NotFound => "That incident is gone.".into(),
        },
    )
}

/// Acts on every incident of a bundle as the person it went to; the sentence answered.
async fn act_on_all(
    state: &AppState,
    b: &BundleRow,
    rows: &[PageRow],
    a: Act,
    via: Via,
    said: &str,
) -> Result<String, StoreError> {
    let verb = action(a).done();
    let mut ids: Vec<String> = rows.iter().map(|r| r.incident_id.clone()).collect();
    ids.extend(super::bundler::earlier_open(state, b, rows).await?);
    let r = answer_all(state, &ids, action(a), &b.person, via, said).await?;
    let mut told = format!("{} incidents {verb} by you.", r.done);
    if r.not_now > 0 {
        told.push_str(&format!(" {} were taken or resolved already.", r.not_now));
    }
    told.push_str(" Thank you.");
    Ok(told)
}

/// STOP: the contact paged on this phone gets no more SMS (its opt-out, audited).
async fn stop(state: &AppState, phone: &str, page: Option<&PageRow>) -> Result<String, StoreError> {
    let person = page.map(|p| p.person.clone());
    if let Some(person) = person
        && let Some(r) = state.store.contacts.get_contact(&person).await?
    {
        let mut c = r.contact.clone();
        if !c.preferences.opt_out.channels.iter().any(|x| x == "sms") {
            c.preferences.opt_out.channels.push("sms".into());
            let _ = state
                .store
                .contacts
                .put_contact(
                    c,
                    Expect::Version(r.version),
                    &format!("sms:{phone}"),
                    now_millis(),
                )
                .await?;
        }
        tracing::warn!(
            contact = person,
            "STOP received: no more SMS pages to this contact"
        );
    }
    Ok("You will get no more SMS from Herald. Ask your operator to turn them back on.".into())
}

/// Acknowledges or resolves from the keys pressed during a page's call (4 and 6).
pub async fn keypresses(state: AppState) {
    let mut rx = state.keypresses.subscribe();
    loop {
        let k = tokio::select! {
            r = rx.recv() => r,
            _ = state.shutdown.cancelled() => return,
        };
        let k = match k {
            Ok(k) => k,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "keypresses missed (too many at once)");
                continue;
            }
            Err(_) => return,
        };
        let Some(a) = reply::keypress(&k.digits) else {
            continue;
        };
        // A bundle's call answers every incident in it.
        match state.store.bundles.bundle_of_message(&k.message_id).await {
            Ok(Some((b, rows))) if rows.len() > 1 => {
                let said = format!("pressed {}", k.digits);
                if let Err(e) = act_on_all(&state, &b, &rows, a, Via::Voice, &said).await {
                    tracing::warn!(error = %e, "a keypress could not be applied");
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "a keypress could not be matched to a bundle");
                continue;
            }
        }
        match state.store.escalations.page_of_message(&k.message_id).await {
            Ok(Some(p)) => {
                let said = format!("pressed {}", k.digits);
                if let Err(e) = act_on(&state, &p, a, Via::Voice, &said).await {
                    tracing::warn!(error = %e, "a keypress could not be applied");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "a keypress could not be matched to a page"),
        }
    }
}
