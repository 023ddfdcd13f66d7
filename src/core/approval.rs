//! Two-person approval, as pure decisions: whether an action runs now, waits for a second
//! person or runs alone (break-glass), and who may decide on a request.

use crate::core::types::{Millis, Role};

/// What a caller types to act alone on a critical action.
pub const BREAK_GLASS: &str = "BREAK GLASS";

/// What happens to a requested action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Not critical: it runs now.
    Act,
    /// Critical: it becomes an approval request.
    Ask,
    /// Critical, and the caller acts alone: it runs now and is flagged for review.
    ActAlone,
}

/// Decides the gate. `typed` is the caller's `break_glass` text, if any; the error names
/// what is wrong with it.
pub fn gate(
    critical: bool,
    typed: Option<&str>,
    break_glass_allowed: bool,
    caller_approver: bool,
) -> Result<Gate, String> {
    match typed {
        None if critical => Ok(Gate::Ask),
        None => Ok(Gate::Act),
        Some(t) if t != BREAK_GLASS => Err(format!(
            "to act alone on a critical action, type exactly `{BREAK_GLASS}`"
        )),
        Some(_) if !critical => Ok(Gate::Act),
        Some(_) if !break_glass_allowed => {
            Err("acting alone is off here ([approvals] break_glass = false)".into())
        }
        Some(_) if !caller_approver => {
            Err("only a key with the approver right may act alone".into())
        }
        Some(_) => Ok(Gate::ActAlone),
    }
}

/// Why a decision on a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Decided already (approved, rejected, executed …).
    NotPending(String),
    Expired,
    /// The requester tried to approve their own request.
    OwnRequest,
    /// The key has no approver right.
    NotApprover,
    /// The approver's role does not allow the action itself.
    Role(Role),
    /// Rejecting is for the requester (withdrawing) or an approver.
    NotYours,
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::NotPending(s) => format!("this request is {s} already"),
            Refusal::Expired => "this request has expired; ask again".into(),
            Refusal::OwnRequest => {
                "a request is approved by another person than the one who asked".into()
            }
            Refusal::NotApprover => "this key has no approver right".into(),
            Refusal::Role(r) => format!("approving this needs the `{r}` role"),
            Refusal::NotYours => {
                "only the requester (to withdraw) or an approver may reject a request".into()
            }
        }
    }
}

/// The status a reader sees: a pending request past its expiry is `expired`.
pub fn shown_status(status: &str, expires_at: Millis, now: Millis) -> &str {
    if status == "pending" && now >= expires_at {
        "expired"
    } else {
        status
    }
}

/// Who decides.
#[derive(Debug, Clone, Copy)]
pub struct Decider<'a> {
    pub id: &'a str,
    pub approver: bool,
    pub role: Role,
}

/// Whether `d` may approve a request (`requester` asked; `needed` is the role the action
/// itself needs).
pub fn may_approve(
    status: &str,
    expires_at: Millis,
    now: Millis,
    requester: &str,
    needed: Role,
    d: Decider<'_>,
) -> Result<(), Refusal> {
    check_pending(status, expires_at, now)?;
    if d.id == requester {
        return Err(Refusal::OwnRequest);
    }
    if !d.approver {
        return Err(Refusal::NotApprover);
    }
    if !d.role.allows(needed) {
        return Err(Refusal::Role(needed));
    }
    Ok(())
}

/// Whether `d` may reject (or withdraw) a request.
pub fn may_reject(
    status: &str,
    expires_at: Millis,
    now: Millis,
    requester: &str,
    d: Decider<'_>,
) -> Result<(), Refusal> {
    check_pending(status, expires_at, now)?;
    if d.id != requester && !d.approver {
        return Err(Refusal::NotYours);
    }
    Ok(())
}

fn check_pending(status: &str, expires_at: Millis, now: Millis) -> Result<(), Refusal> {
    match shown_status(status, expires_at, now) {
        "pending" => Ok(()),
        "expired" => Err(Refusal::Expired),
        other => Err(Refusal::NotPending(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Decider<'static> = Decider {
        id: "key-b",
        approver: true,
        role: Role::Admin,
    };

    #[test]
    fn the_gate_for_every_combination() {
        assert_eq!(gate(false, None, true, false), Ok(Gate::Act));
        assert_eq!(gate(true, None, true, true), Ok(Gate::Ask));
        assert_eq!(
            gate(true, Some(BREAK_GLASS), true, true),
            Ok(Gate::ActAlone)
        );
        assert_eq!(gate(false, Some(BREAK_GLASS), false, false), Ok(Gate::Act));
        assert!(gate(true, Some("break glass"), true, true).is_err());
        assert!(gate(false, Some("yes"), true, true).is_err());
        let off = gate(true, Some(BREAK_GLASS), false, true).unwrap_err();
        assert!(off.contains("break_glass = false"), "{off}");
        let who = gate(true, Some(BREAK_GLASS), true, false).unwrap_err();
        assert!(who.contains("approver"), "{who}");
    }

    #[test]
    fn another_approver_with_the_role_approves() {
        assert_eq!(
            may_approve("pending", 100, 50, "key-a", Role::Admin, B),
            Ok(())
        );
    }

    #[test]
    fn the_requester_never_approves_their_own_request() {
        let me = Decider { id: "key-a", ..B };
        assert_eq!(
            may_approve("pending", 100, 50, "key-a", Role::Admin, me),
            Err(Refusal::OwnRequest)
        );
    }

    #[test]
    fn an_approver_needs_the_right_and_the_role() {
        let plain = Decider {
            approver: false,
            ..B
        };
        assert_eq!(
            may_approve("pending", 100, 50, "key-a", Role::Operator, plain),
            Err(Refusal::NotApprover)
        );
        let operator = Decider {
            role: Role::Operator,
            ..B
        };
        assert_eq!(
            may_approve("pending", 100, 50, "key-a", Role::Admin, operator),
            Err(Refusal::Role(Role::Admin))
        );
        assert_eq!(
            may_approve("pending", 100, 50, "key-a", Role::Operator, operator),
            Ok(())
        );
    }

    #[test]
    fn expired_and_decided_requests_are_final() {
        assert_eq!(
            may_approve("pending", 100, 100, "key-a", Role::Admin, B),
            Err(Refusal::Expired)
        );
        for s in ["approved", "executed", "failed", "rejected", "expired"] {
            assert!(may_approve(s, 100, 50, "key-a", Role::Admin, B).is_err());
            assert!(may_reject(s, 100, 50, "key-a", B).is_err());
        }
        assert_eq!(shown_status("pending", 100, 99), "pending");
        assert_eq!(shown_status("pending", 100, 100), "expired");
        assert_eq!(shown_status("executed", 100, 500), "executed");
    }

    #[test]
    fn the_requester_withdraws_and_approvers_reject_others_do_not() {
        let me = Decider {
            id: "key-a",
            approver: false,
            role: Role::Viewer,
        };
        assert_eq!(may_reject("pending", 100, 50, "key-a", me), Ok(()));
        assert_eq!(may_reject("pending", 100, 50, "key-a", B), Ok(()));
        let other = Decider {
            id: "key-c",
            approver: false,
            role: Role::Admin,
        };
        assert_eq!(
            may_reject("pending", 100, 50, "key-a", other),
            Err(Refusal::NotYours)
        );
    }

    #[test]
    fn every_refusal_says_why() {
        for r in [
            Refusal::NotPending("executed".into()),
            Refusal::Expired,
            Refusal::OwnRequest,
            Refusal::NotApprover,
            Refusal::Role(Role::Admin),
            Refusal::NotYours,
        ] {
            assert!(!r.message().is_empty());
        }
    }
}
