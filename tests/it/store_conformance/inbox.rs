//! Conformance, inbox: items listed and marked read per user.

use super::*;

/// The inbox keeps items per user, newest first, lists the unread ones, and marks one read
/// once; another user's item cannot be marked through the wrong user.
pub async fn the_inbox_lists_and_marks_items_per_user(s: Arc<dyn Store>) {
    let item = |user: &str, n: i64| herald::store::InboxItem {
        id: format!("inb_{user}_{n}"),
        user: user.into(),
        message_id: new_id("msg"),
        delivery_id: new_id("dlv"),
        content: Content {
            text: Some(format!("n{n}")),
            ..Default::default()
        },
        metadata: Default::default(),
        created_at: now_millis() + n,
        read_at: None,
    };
    for n in 0..3 {
        s.inbox_put(item("u-a", n)).await.unwrap();
    }
    s.inbox_put(item("u-b", 0)).await.unwrap();
    let f = || ListFilter {
        status: None,
        channel: None,
        limit: 10,
        after: None,
    };
    let all = s.inbox_list("u-a", false, f()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].id, "inb_u-a_2", "newest first");
    assert!(
        s.inbox_mark_read("u-a", "inb_u-a_1", now_millis())
            .await
            .unwrap()
    );
    assert!(
        !s.inbox_mark_read("u-b", "inb_u-a_2", now_millis())
            .await
            .unwrap(),
        "not u-b's"
    );
    let unread = s.inbox_list("u-a", true, f()).await.unwrap();
    let ids: Vec<&str> = unread.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec!["inb_u-a_2", "inb_u-a_0"]);
    assert_eq!(s.inbox_list("u-b", false, f()).await.unwrap().len(), 1);
}

conformance!(the_inbox_lists_and_marks_items_per_user,);
