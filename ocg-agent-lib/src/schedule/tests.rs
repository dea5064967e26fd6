use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ocg_core::schedule::{DeliveryTarget, JobSession, MissedPolicy, NewJob, Schedule};
use ocg_core::testing::ScriptedAgent;
use ocg_core::{ChatEvent, ChatTarget};

use super::*;

/// Unix ms of a civil time in `zone` (the earlier one when it is ambiguous).
fn local(zone: &str, civil: &str) -> i64 {
    let tz = TimeZone::get(zone).unwrap();
    civil
        .parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(tz)
        .unwrap()
        .timestamp()
        .as_millisecond()
}

/// `ms` as an offset civil time in `zone`, `2026-03-29T03:00:00+02:00`.
fn shown(zone: &str, ms: i64) -> String {
    let zoned = Timestamp::from_millisecond(ms)
        .unwrap()
        .to_zoned(TimeZone::get(zone).unwrap());
    zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn cron(expr: &str, zone: &str) -> Plan {
    let schedule = Schedule::Cron {
        expr: expr.into(),
        tz: Some(zone.into()),
    };
    Plan::new(&schedule, 0, 0).unwrap().0
}

/// The first `n` occurrences after `from`.
fn occurrences(plan: &Plan, from: i64, n: usize, zone: &str) -> Vec<String> {
    let mut at = from;
    let mut out = Vec::new();
    for _ in 0..n {
        at = plan.next_after(at).unwrap();
        out.push(shown(zone, at));
    }
    out
}

#[test]
fn a_daily_job_runs_once_on_both_dst_nights_in_berlin() {
    let zone = "Europe/Berlin";
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    let plan = cron("30 2 * * *", zone);
    assert_eq!(
        occurrences(&plan, local(zone, "2026-03-28T12:00"), 3, zone),
        [
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
            "2026-03-31T02:30:00+02:00"
        ]
    );
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    assert_eq!(
        occurrences(&plan, local(zone, "2026-10-24T12:00"), 2, zone),
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    );
}

#[test]
fn a_daily_job_runs_once_on_both_dst_nights_in_new_york() {
    let zone = "America/New_York";
    let plan = cron("30 2 * * *", zone);
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    assert_eq!(
        occurrences(&plan, local(zone, "2026-03-07T12:00"), 2, zone),
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
    );
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    let plan = cron("30 1 * * *", zone);
    assert_eq!(
        occurrences(&plan, local(zone, "2026-10-31T12:00"), 2, zone),
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    );
}

#[test]
fn an_interval_cron_keeps_real_time_through_the_fall_back_hour() {
    let zone = "America/New_York";
    let plan = cron("0,30 * * * *", zone);
    let from = local(zone, "2026-11-01T00:45");
    let got = occurrences(&plan, from, 5, zone);
    // Every half hour of real time, the repeated hour included once each.
    let mut at = plan.next_after(from).unwrap();
    for _ in 0..4 {
        let next = plan.next_after(at).unwrap();
        assert_eq!(next - at, 30 * 60_000, "{got:?}");
        at = next;
    }
    assert_eq!(got[0], "2026-11-01T01:00:00-04:00");
    assert_eq!(got[2], "2026-11-01T01:00:00-05:00");
}

#[test]
fn month_ends_and_leap_days() {
    let zone = "UTC";
    // The 31st skips months without one.
    let plan = cron("0 9 31 * *", zone);
    assert_eq!(
        occurrences(&plan, local(zone, "2027-01-31T10:00"), 2, zone),
        ["2027-03-31T09:00:00+00:00", "2027-05-31T09:00:00+00:00"]
    );
    // The last day of the month, February of a leap year included.
    let plan = cron("0 0 L * *", zone);
    assert_eq!(
        occurrences(&plan, local(zone, "2028-01-31T10:00"), 2, zone),
        ["2028-02-29T00:00:00+00:00", "2028-03-31T00:00:00+00:00"]
    );
    // A leap day comes every four years.
    let plan = cron("0 12 29 2 *", zone);
    assert_eq!(
        occurrences(&plan, local(zone, "2026-01-01T00:00"), 2, zone),
        ["2028-02-29T12:00:00+00:00", "2032-02-29T12:00:00+00:00"]
    );
}

#[test]
fn schedules_are_checked_with_clear_errors() {
    let bad = |schedule: Schedule| {
        Plan::new(&schedule, 1_000_000, 1_000_000)
            .unwrap_err()
            .to_string()
    };
    assert!(
        bad(Schedule::Cron {
            expr: "61 * * * *".into(),
            tz: None
        })
        .contains("not a cron expression")
    );
    assert!(
        bad(Schedule::Cron {
            expr: "0 0 * * * *".into(),
            tz: None
        })
        .contains("not a cron expression")
    );
    assert!(
        bad(Schedule::Cron {
            expr: "0 9 * * *".into(),
            tz: Some("Mars/Olympus".into())
        })
        .contains("IANA")
    );
    assert!(
        bad(Schedule::Cron {
            expr: "0 0 30 2 *".into(),
            tz: Some("UTC".into())
        })
        .contains("never matches")
    );
    assert!(
        bad(Schedule::Every {
            every: "500ms".into()
        })
        .contains("duration")
    );
    assert!(bad(Schedule::Every { every: "0s".into() }).contains("at least one second"));
    assert!(
        bad(Schedule::At {
            at: "tomorrowish".into()
        })
        .contains("not a time")
    );

    assert_eq!(parse_duration_ms("1h30m").unwrap(), 90 * 60_000);
    assert_eq!(
        parse_duration_ms("2 hours and 5 minutes").unwrap(),
        125 * 60_000
    );
    assert_eq!(parse_duration_ms("1d").unwrap(), 86_400_000);
    assert_eq!(parse_at_ms("in 10m", 1_000).unwrap(), 601_000);
    assert_eq!(
        parse_at_ms("2026-12-24T09:00:00+01:00", 0).unwrap(),
        local("Europe/Berlin", "2026-12-24T09:00")
    );
    // A cron without a zone gets the machine's, named.
    let (_, stored) = Plan::new(
        &Schedule::Cron {
            expr: "0 8 * * 1-5".into(),
            tz: None,
        },
        0,
        0,
    )
    .unwrap();
    assert!(
        matches!(stored, Schedule::Cron { tz: Some(_), .. }),
        "{stored:?}"
    );
}

#[test]
fn every_counts_whole_periods_from_its_anchor() {
    let plan = Plan::Every {
        anchor_ms: 1_000,
        every_ms: 2_000,
    };
    assert_eq!(plan.next_after(0), Some(3_000));
    assert_eq!(plan.next_after(1_000), Some(3_000));
    assert_eq!(plan.next_after(2_999), Some(3_000));
    assert_eq!(plan.next_after(3_000), Some(5_000));
}

#[test]
fn heartbeat_ok_replies_are_not_delivered() {
    assert_eq!(heartbeat_message("HEARTBEAT_OK"), None);
    assert_eq!(heartbeat_message("  HEARTBEAT_OK.  "), None);
    assert_eq!(
        heartbeat_message("All quiet. HEARTBEAT_OK"),
        Some("All quiet.".into())
    );
    assert_eq!(
        heartbeat_message("The backup failed last night."),
        Some("The backup failed last night.".into())
    );
    assert_eq!(heartbeat_message(""), None);
}

// The store and the scheduler, with a clock that moves when told.

use super::contract::{T0, every, telegram};

fn store_at(clock: &Arc<ManualClock>) -> ScheduleStore {
    ScheduleStore::in_memory(clock.clone()).unwrap()
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_job_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let databases = std::sync::atomic::AtomicUsize::new(0);
    super::contract::check_job_store(|| async {
        let n = databases.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("jobs-{n}.db"));
        let open =
            || -> Arc<dyn ocg_core::JobStore> { Arc::new(SqliteJobStore::open(&path).unwrap()) };
        [open(), open()]
    })
    .await;
}

#[tokio::test]
async fn bad_jobs_are_refused_before_they_are_stored() {
    let clock = Arc::new(ManualClock::at(T0));
    let store = store_at(&clock);
    let cases: Vec<(NewJob, &str)> = vec![
        (
            NewJob {
                message: "  ".into(),
                ..every("1m", MissedPolicy::RunOnce)
            },
            "message",
        ),
        (
            NewJob {
                deliver: Some(telegram("")),
                ..every("1m", MissedPolicy::RunOnce)
            },
            "chat id",
        ),
        (
            NewJob {
                deliver: Some(DeliveryTarget::Chat {
                    channel: "web".into(),
                    target: ChatTarget::chat("x"),
                }),
                ..every("1m", MissedPolicy::RunOnce)
            },
            "not a chat channel",
        ),
        (
            NewJob {
                deliver: Some(DeliveryTarget::Webhook {
                    url: "ftp://example.com/x".into(),
                }),
                ..every("1m", MissedPolicy::RunOnce)
            },
            "http or https",
        ),
        (
            NewJob {
                deliver: Some(DeliveryTarget::Webhook {
                    url: "https://u:p@example.com/".into(),
                }),
                ..every("1m", MissedPolicy::RunOnce)
            },
            "user name or password",
        ),
        (
            NewJob {
                session: JobSession::Named { key: String::new() },
                ..every("1m", MissedPolicy::RunOnce)
            },
            "session key",
        ),
    ];
    for (job, expected) in cases {
        let error = store.create(job).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{error} (expected {expected})");
    }
    assert!(store.list().await.unwrap().is_empty());
}

#[test]
fn a_chat_session_key_names_its_chat() {
    assert_eq!(chat_of_session("telegram:42"), Some(telegram("42")));
    assert_eq!(
        chat_of_session("telegram:42:7"),
        Some(DeliveryTarget::Chat {
            channel: "telegram".into(),
            target: ChatTarget {
                chat_id: "42".into(),
                thread_id: Some("7".into())
            }
        })
    );
    assert_eq!(chat_of_session("web:abc"), None);
    assert_eq!(chat_of_session("api:me"), None);
    assert_eq!(chat_of_session("cron:job:1"), None);
    assert_eq!(chat_of_session("plain"), None);
}

fn done(text: &str) -> Vec<ChatEvent> {
    vec![ChatEvent::Done {
        message: ocg_core::Message::assistant(text),
        usage: None,
        session_key: None,
    }]
}

#[tokio::test]
async fn the_heartbeat_speaks_only_when_something_needs_attention_and_beats_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(T0));
    let store = store_at(&clock);
    let agent = Arc::new(ScriptedAgent::new());
    let config = HeartbeatConfig {
        every: std::time::Duration::from_secs(1800),
        session: "telegram:9".into(),
        checklist: dir.path().join("HEARTBEAT.md"),
    };
    let channels = ["telegram".to_owned()];
    // No checklist: the model is not asked.
    beat(&config, &store, agent.as_ref(), "me", 1)
        .await
        .unwrap();
    assert!(agent.requests().is_empty());

    std::fs::write(&config.checklist, "- Did the nightly backup run?\n").unwrap();
    agent.push_script(done("HEARTBEAT_OK"));
    beat(&config, &store, agent.as_ref(), "me", 2)
        .await
        .unwrap();
    assert_eq!(agent.requests().len(), 1);
    assert_eq!(
        agent.requests()[0].session_key.as_deref(),
        Some("telegram:9")
    );
    assert!(
        agent.requests()[0].messages[0]
            .content
            .contains("nightly backup")
    );
    assert!(
        store.pending(&channels, 10).await.unwrap().is_empty(),
        "nothing to say"
    );

    agent.push_script(done("The backup did not run last night."));
    beat(&config, &store, agent.as_ref(), "me", 3)
        .await
        .unwrap();
    let pending = store.pending(&channels, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, "heartbeat:3");
    assert_eq!(pending[0].text, "The backup did not run last night.");
    assert_eq!(pending[0].target, ChatTarget::chat("9"));

    // Another agent on the database beating the same occurrence does nothing.
    beat(&config, &store, agent.as_ref(), "other", 3)
        .await
        .unwrap();
    assert_eq!(agent.requests().len(), 2);
}
