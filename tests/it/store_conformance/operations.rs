//! Conformance, operations: the mode and provider switches are kept and audited with actor,
//! before, after and reason; the audit log pages newest first.

use super::*;
use herald::store::ProviderSwitch;

pub async fn modes_and_switches_are_kept_and_audited(s: Arc<dyn Store>) {
    assert!(
        s.mode().await.unwrap().is_none(),
        "no mode until one is set"
    );
    let t = now_millis();
    let m = s
        .set_mode("degraded", "sms vendor down", "ops", t)
        .await
        .unwrap();
    assert_eq!((m.mode.as_str(), m.actor.as_str()), ("degraded", "ops"));
    let kept = s.mode().await.unwrap().unwrap();
    assert_eq!(kept.mode, "degraded");
    assert_eq!(kept.reason.as_deref(), Some("sms vendor down"));
    s.set_provider_switch(ProviderSwitch {
        provider: "aliyun".into(),
        disabled: true,
        reason: Some("maintenance".into()),
        actor: "ops".into(),
        until: None,
        at: t,
    })
    .await
    .unwrap();
    let sw = s.provider_switches().await.unwrap();
    assert_eq!(sw.len(), 1);
    assert!(sw[0].disabled && sw[0].provider == "aliyun");
    let log = s.audit_list(10, None).await.unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].id > log[1].id, "newest first");
    let mode = log.iter().find(|e| e.action == "mode.set");
    let mode = mode.expect("the mode change is audited");
    assert_eq!((mode.actor.as_str(), mode.target.as_str()), ("ops", "mode"));
    assert_eq!(mode.reason.as_deref(), Some("sms vendor down"));
    assert_eq!(mode.before, Some(serde_json::json!({"mode": "normal"})));
    assert_eq!(mode.after, Some(serde_json::json!({"mode": "degraded"})));
    let switch = log.iter().find(|e| e.action == "provider.disable");
    let switch = switch.expect("the provider switch is audited");
    assert_eq!(switch.target, "aliyun");
    assert_eq!(switch.before, Some(serde_json::json!({"disabled": false})));
    assert_eq!(switch.after, Some(serde_json::json!({"disabled": true})));
    // The cursor pages on: after the newest, only the older entry.
    let older = s.audit_list(10, Some(log[0].id)).await.unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, log[1].id);
    s.ping().await.unwrap();
    assert_eq!(s.stats().await.unwrap().dead_letters, 0);
}

conformance!(modes_and_switches_are_kept_and_audited);
