use super::*;

fn ms(s: &str) -> Millis {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}
fn tz(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap()
}
fn dt(s: &str) -> DateTime {
    s.parse().unwrap()
}
fn three(shift: Shift, start: &str) -> Rotation {
    Rotation {
        participants: vec!["ana".into(), "ben".into(), "cai".into()],
        shift,
        start: dt(start),
    }
}
fn one_layer(zone: &str, r: Rotation) -> Schedule {
    Schedule {
        tz: tz(zone),
        layers: vec![Layer {
            rotation: r,
            rules: vec![],
        }],
        overrides: vec![],
    }
}
fn who(s: &Schedule, at: &str) -> Vec<String> {
    on_call(s, ms(at))
}

#[test]
fn a_daily_rotation_hands_off_at_its_local_time() {
    let s = one_layer("UTC", three(Shift::Days(1), "2026-01-05T09:00"));
    assert!(
        who(&s, "2026-01-05T08:59:59Z").is_empty(),
        "nobody before it starts"
    );
    assert_eq!(who(&s, "2026-01-05T09:00:00Z"), ["ana"]);
    assert_eq!(who(&s, "2026-01-06T08:59:59Z"), ["ana"]);
    assert_eq!(who(&s, "2026-01-06T09:00:00Z"), ["ben"]);
    assert_eq!(who(&s, "2026-01-07T12:00:00Z"), ["cai"]);
    assert_eq!(who(&s, "2026-01-08T09:00:00Z"), ["ana"], "and round again");
    assert_eq!(
        who(&s, "2027-01-05T09:00:00Z"),
        ["cai"],
        "365 days on: 365 % 3 = 2"
    );
}

#[test]
fn new_york_spring_forward_keeps_the_handoff_at_nine_local() {
    // 2026-03-08 02:00 EST → 03:00 EDT. Handoffs at 09:00 local: 14:00Z before, 13:00Z after.
    let s = one_layer(
        "America/New_York",
        three(Shift::Days(1), "2026-03-06T09:00"),
    );
    assert_eq!(who(&s, "2026-03-06T14:00:00Z"), ["ana"]);
    assert_eq!(who(&s, "2026-03-07T14:00:00Z"), ["ben"]);
    // Saturday's shift (ben) lasts 23 hours: it ends at 09:00 EDT = 13:00Z on Sunday.
    assert_eq!(who(&s, "2026-03-08T12:59:59Z"), ["ben"]);
    assert_eq!(who(&s, "2026-03-08T13:00:00Z"), ["cai"]);
    assert_eq!(who(&s, "2026-03-09T12:59:59Z"), ["cai"]);
    assert_eq!(who(&s, "2026-03-09T13:00:00Z"), ["ana"]);
}

#[test]
fn new_york_fall_back_makes_one_shift_25_hours() {
    // 2026-11-01 02:00 EDT → 01:00 EST. 09:00 local is 13:00Z before, 14:00Z after.
    let s = one_layer(
        "America/New_York",
        three(Shift::Days(1), "2026-10-31T09:00"),
    );
    assert_eq!(who(&s, "2026-10-31T13:00:00Z"), ["ana"]);
    assert_eq!(
        who(&s, "2026-11-01T13:30:00Z"),
        ["ana"],
        "08:30 EST: still Saturday's"
    );
    assert_eq!(who(&s, "2026-11-01T13:59:59Z"), ["ana"]);
    assert_eq!(who(&s, "2026-11-01T14:00:00Z"), ["ben"]);
}

#[test]
fn a_handoff_inside_the_skipped_hour_moves_forward_by_the_gap() {
    // Berlin: 2026-03-29 02:00 CET → 03:00 CEST. A 02:30 handoff does not exist that day.
    let s = one_layer("Europe/Berlin", three(Shift::Days(1), "2026-03-28T02:30"));
    assert_eq!(who(&s, "2026-03-28T01:30:00Z"), ["ana"], "02:30 CET");
    // 03:00 CEST = 01:00Z is after the gap but before 02:30 → 03:30 CEST (01:30Z).
    assert_eq!(who(&s, "2026-03-29T01:00:00Z"), ["ana"]);
    assert_eq!(who(&s, "2026-03-29T01:29:59Z"), ["ana"]);
    assert_eq!(who(&s, "2026-03-29T01:30:00Z"), ["ben"]);
    // the day after, 02:30 CEST = 00:30Z again
    assert_eq!(who(&s, "2026-03-30T00:30:00Z"), ["cai"]);
}

#[test]
fn a_handoff_inside_the_repeated_hour_is_its_first_occurrence() {
    // Berlin: 2026-10-25 03:00 CEST → 02:00 CET; 02:30 happens at 00:30Z and again at 01:30Z.
    let s = one_layer("Europe/Berlin", three(Shift::Days(1), "2026-10-24T02:30"));
    assert_eq!(who(&s, "2026-10-25T00:29:59Z"), ["ana"]);
    assert_eq!(who(&s, "2026-10-25T00:30:00Z"), ["ben"]);
    assert_eq!(
        who(&s, "2026-10-25T01:30:00Z"),
        ["ben"],
        "the second 02:30 hands nothing"
    );
    assert_eq!(
        who(&s, "2026-10-26T01:30:00Z"),
        ["cai"],
        "02:30 CET the next day"
    );
}

#[test]
fn weekly_rotation_across_berlin_dst_with_an_override() {
    // Monday 09:00 handoffs; 2026-03-29 falls inside ben's week.
    let mut s = one_layer("Europe/Berlin", three(Shift::Weeks(1), "2026-03-16T09:00"));
    assert_eq!(who(&s, "2026-03-16T08:00:00Z"), ["ana"], "09:00 CET");
    assert_eq!(who(&s, "2026-03-23T08:00:00Z"), ["ben"]);
    assert_eq!(who(&s, "2026-03-30T06:59:59Z"), ["ben"], "08:59:59 CEST");
    assert_eq!(who(&s, "2026-03-30T07:00:00Z"), ["cai"], "09:00 CEST");
    // dan covers ben's Sunday, and eve is added for an evening.
    s.overrides.push(Override {
        start: ms("2026-03-29T00:00:00Z"),
        end: ms("2026-03-30T00:00:00Z"),
        person: "dan".into(),
        replaces: Some("ben".into()),
    });
    s.overrides.push(Override {
        start: ms("2026-03-29T17:00:00Z"),
        end: ms("2026-03-29T21:00:00Z"),
        person: "eve".into(),
        replaces: None,
    });
    assert_eq!(who(&s, "2026-03-28T23:59:59Z"), ["ben"]);
    assert_eq!(who(&s, "2026-03-29T00:00:00Z"), ["dan"]);
    assert_eq!(who(&s, "2026-03-29T18:00:00Z"), ["dan", "eve"]);
    assert_eq!(
        who(&s, "2026-03-30T00:00:00Z"),
        ["ben"],
        "the end is exclusive"
    );
    // An override replacing someone not on call changes nothing.
    s.overrides.push(Override {
        start: ms("2026-03-31T00:00:00Z"),
        end: ms("2026-04-01T00:00:00Z"),
        person: "dan".into(),
        replaces: Some("ana".into()),
    });
    assert_eq!(who(&s, "2026-03-31T12:00:00Z"), ["cai"]);
}

#[test]
fn new_york_weekly_rotation_with_override_around_fall_back() {
    // Sunday 18:00 handoffs; 2026-11-01 is a Sunday (DST ends 02:00 that morning).
    let mut s = one_layer(
        "America/New_York",
        three(Shift::Weeks(1), "2026-10-25T18:00"),
    );
    assert_eq!(who(&s, "2026-10-25T22:00:00Z"), ["ana"], "18:00 EDT");
    assert_eq!(who(&s, "2026-11-01T22:59:59Z"), ["ana"], "17:59:59 EST");
    assert_eq!(who(&s, "2026-11-01T23:00:00Z"), ["ben"], "18:00 EST");
    s.overrides.push(Override {
        start: ms("2026-11-01T05:00:00Z"),
        end: ms("2026-11-01T07:00:00Z"),
        person: "cai".into(),
        replaces: Some("ana".into()),
    });
    // 01:00–02:00 local happens twice; the override is in absolute time and holds both.
    assert_eq!(who(&s, "2026-11-01T05:30:00Z"), ["cai"], "01:30 EDT");
    assert_eq!(who(&s, "2026-11-01T06:30:00Z"), ["cai"], "01:30 EST");
    assert_eq!(who(&s, "2026-11-01T07:00:00Z"), ["ana"]);
}

#[test]
fn shifts_of_hours_count_elapsed_time() {
    // 12-hour shifts from 08:00 local: across spring forward the handoff moves to 09:00.
    let s = one_layer(
        "America/New_York",
        three(Shift::Hours(12), "2026-03-07T08:00"),
    );
    assert_eq!(who(&s, "2026-03-07T13:00:00Z"), ["ana"]);
    assert_eq!(who(&s, "2026-03-08T01:00:00Z"), ["ben"]);
    assert_eq!(
        who(&s, "2026-03-08T13:00:00Z"),
        ["cai"],
        "09:00 EDT, 24 h later"
    );
    assert_eq!(who(&s, "2026-03-09T01:00:00Z"), ["ana"]);
}

#[test]
fn shifts_of_several_days() {
    let s = one_layer("UTC", three(Shift::Days(2), "2026-01-01T00:00"));
    assert_eq!(who(&s, "2026-01-02T23:59:59Z"), ["ana"]);
    assert_eq!(who(&s, "2026-01-03T00:00:00Z"), ["ben"]);
    assert_eq!(who(&s, "2026-01-07T00:00:00Z"), ["ana"]);
}

#[test]
fn layers_with_rules_stack_the_later_on_top() {
    let base = Layer {
        rotation: three(Shift::Weeks(1), "2026-01-05T09:00"),
        rules: vec![],
    };
    // Business hours on weekdays are covered by a day team; nights by an overnight layer.
    let day = Layer {
        rotation: Rotation {
            participants: vec!["day1".into()],
            shift: Shift::Weeks(1),
            start: dt("2026-01-05T00:00"),
        },
        rules: vec![Rule {
            days: vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
            ],
            from: Time::constant(9, 0, 0, 0),
            to: Time::constant(17, 0, 0, 0),
        }],
    };
    let friday_night = Layer {
        rotation: Rotation {
            participants: vec!["night".into()],
            shift: Shift::Days(1),
            start: dt("2026-01-01T00:00"),
        },
        rules: vec![Rule {
            days: vec![Weekday::Friday],
            from: Time::constant(22, 0, 0, 0),
            to: Time::constant(6, 0, 0, 0),
        }],
    };
    let s = Schedule {
        tz: tz("Europe/Berlin"),
        layers: vec![base, day, friday_night],
        overrides: vec![],
    };
    // 2026-01-07 is a Wednesday; Berlin is UTC+1 in January.
    assert_eq!(who(&s, "2026-01-07T08:00:00Z"), ["day1"], "09:00");
    assert_eq!(who(&s, "2026-01-07T15:59:59Z"), ["day1"]);
    assert_eq!(
        who(&s, "2026-01-07T16:00:00Z"),
        ["ana"],
        "17:00: the base layer"
    );
    assert_eq!(who(&s, "2026-01-09T21:00:00Z"), ["night"], "Friday 22:00");
    assert_eq!(
        who(&s, "2026-01-10T04:59:59Z"),
        ["night"],
        "Saturday 05:59:59"
    );
    assert_eq!(who(&s, "2026-01-10T05:00:00Z"), ["ana"], "Saturday 06:00");
    assert_eq!(
        who(&s, "2026-01-10T08:00:00Z"),
        ["ana"],
        "no day team on Saturdays"
    );
    assert_eq!(who(&s, "2026-01-12T08:00:00Z"), ["day1"], "the next Monday");
    assert_eq!(
        who(&s, "2026-01-12T07:00:00Z"),
        ["ana"],
        "08:00 Monday: week two starts at 09:00"
    );
    assert_eq!(who(&s, "2026-01-12T16:00:00Z"), ["ben"], "17:00 Monday");
}

#[test]
fn a_whole_day_rule_and_an_empty_rotation() {
    let all_day = Rule {
        days: vec![Weekday::Sunday],
        from: Time::constant(0, 0, 0, 0),
        to: Time::constant(0, 0, 0, 0),
    };
    let l = Layer {
        rotation: three(Shift::Days(1), "2026-01-01T00:00"),
        rules: vec![all_day],
    };
    let utc = tz("UTC");
    assert!(
        layer_active(&l, &utc, ms("2026-01-04T00:00:00Z")),
        "Sunday 00:00"
    );
    assert!(layer_active(&l, &utc, ms("2026-01-04T23:59:59Z")));
    assert!(
        !layer_active(&l, &utc, ms("2026-01-05T00:00:00Z")),
        "Monday"
    );
    let empty = Rotation {
        participants: vec![],
        shift: Shift::Days(1),
        start: dt("2026-01-01T00:00"),
    };
    assert_eq!(rotation_at(&empty, &utc, ms("2026-02-01T00:00:00Z")), None);
    // an override alone still puts someone on call, once
    let s = Schedule {
        tz: utc,
        layers: vec![],
        overrides: vec![
            Override {
                start: 0,
                end: ms("2030-01-01T00:00:00Z"),
                person: "solo".into(),
                replaces: None,
            },
            Override {
                start: 0,
                end: ms("2030-01-01T00:00:00Z"),
                person: "solo".into(),
                replaces: None,
            },
        ],
    };
    assert_eq!(who(&s, "2026-06-01T00:00:00Z"), ["solo"]);
}

#[test]
fn the_shift_index_before_and_after_the_start() {
    let r = three(Shift::Days(1), "2026-01-05T09:00");
    let utc = tz("UTC");
    assert_eq!(shift_index(&r, &utc, ms("2026-01-05T08:00:00Z")), None);
    assert_eq!(shift_index(&r, &utc, ms("2026-01-05T09:00:00Z")), Some(0));
    assert_eq!(shift_index(&r, &utc, ms("2026-02-04T09:00:00Z")), Some(30));
    // shifts of zero length are taken as one unit, never a division by zero
    let zero = three(Shift::Hours(0), "2026-01-05T09:00");
    assert_eq!(
        shift_index(&zero, &utc, ms("2026-01-05T11:00:00Z")),
        Some(2)
    );
}
