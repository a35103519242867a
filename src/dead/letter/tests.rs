use super::*;
use crate::dead::Selection;
use lapin::types::FieldArray;

fn props(headers: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert((*key).into(), value.clone());
    }
    BasicProperties::default()
        .with_message_id("id-1".into())
        .with_headers(table)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

#[test]
fn warren_reasons_are_grouped_by_category() {
    let cases = [
        (
            "gave up after 5 attempts; last error: boom",
            Category::MaxAttempts,
        ),
        (
            "too large: 9 bytes exceeds pool.max_body_bytes (4)",
            Category::TooLarge,
        ),
        (
            "exit code 65 (a reject code); stderr: bad",
            Category::Rejected,
        ),
    ];
    for (reason, category) in cases {
        let letter = Letter::read(&props(&[
            (REASON, text(reason)),
            (ATTEMPTS, AMQPValue::LongLongInt(5)),
            (LAST_FAILURE, AMQPValue::Timestamp(now() - 120)),
        ]));
        assert_eq!(letter.category, category, "{reason}");
        assert_eq!(letter.reason, reason);
        assert_eq!(letter.attempts, Some(5));
        assert!((120..130).contains(&letter.age().unwrap()));
    }
}

#[test]
fn a_letter_the_broker_dead_lettered_takes_its_reason_from_x_death() {
    let mut death = FieldTable::default();
    death.insert("reason".into(), text("delivery_limit"));
    death.insert("queue".into(), text("tasks"));
    death.insert("count".into(), AMQPValue::LongLongInt(1));
    death.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
    let array = FieldArray::from(vec![AMQPValue::FieldTable(death)]);
    let letter = Letter::read(&props(&[("x-death", AMQPValue::FieldArray(array))]));
    assert_eq!(letter.category, Category::Broker);
    assert_eq!(
        letter.reason,
        "broker: delivery_limit in 'tasks', 1× (x-death)"
    );
    assert_eq!(letter.last_failure, Some(1_700_000_000));
    let bare = Letter::read(&BasicProperties::default());
    assert_eq!((bare.category, bare.id.as_str()), (Category::Other, ""));
}

#[test]
fn a_replay_resets_the_attempts_and_keeps_everything_else() {
    let original = props(&[
        (REASON, text("exit code 65")),
        (crate::headers::ATTEMPT, AMQPValue::LongLongInt(3)),
        (FIRST_FAILURE, AMQPValue::Timestamp(1)),
        ("traceparent", text("00-abc-def-01")),
        ("x-death", AMQPValue::FieldArray(FieldArray::default())),
        (REPLAYED, AMQPValue::LongInt(1)),
    ])
    .with_correlation_id("c-1".into())
    .with_content_type("application/json".into());
    let replayed = replay_properties(&original);
    let headers = replayed.headers().clone().unwrap();
    let h = headers.inner();
    for gone in [REASON, crate::headers::ATTEMPT, FIRST_FAILURE] {
        assert!(!h.contains_key(gone), "{gone}");
    }
    assert_eq!(h.get("traceparent"), Some(&text("00-abc-def-01")));
    assert!(h.contains_key("x-death"));
    assert_eq!(h.get(REPLAYED), Some(&AMQPValue::LongLongInt(2)));
    assert!(h.contains_key(REPLAYED_AT));
    assert_eq!(replayed.message_id(), original.message_id());
    assert_eq!(replayed.correlation_id(), original.correlation_id());
    assert_eq!(replayed.content_type(), original.content_type());
}

#[test]
fn a_selection_matches_reason_case_insensitively_by_id_and_up_to_a_limit() {
    let letter = Letter::read(&props(&[(REASON, text("Exit code 65: bad"))]));
    let mut by_reason = Selection::new(Some("EXIT CODE".into()), vec![], Some(1)).unwrap();
    assert!(by_reason.pick(&letter));
    assert!(!by_reason.pick(&letter), "the limit is 1");
    let by_id = Selection::new(None, vec!["other".into()], None).unwrap();
    assert!(!by_id.matches(&letter));
    assert!(Selection::new(Some(" ".into()), vec![], None).is_err());
    assert!(Selection::new(None, vec![], Some(0)).is_err());
}
