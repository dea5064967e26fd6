use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ocg_core::schedule::{
    DeliveryOutcome, DeliveryTarget, JobPatch, JobSession, MissedPolicy, NewJob, RunStatus,
    Schedule,
};
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

const T0: i64 = 1_800_000_000_000;

fn store_at(clock: &Arc<ManualClock>) -> ScheduleStore {
    ScheduleStore::in_memory(clock.clone()).unwrap()
}

fn telegram(chat: &str) -> DeliveryTarget {
    DeliveryTarget::Chat {
        channel: "telegram".into(),
        target: ChatTarget::chat(chat),
    }
}

fn every(period: &str, missed: MissedPolicy) -> NewJob {
    NewJob {
        name: Some("tick".into()),
        schedule: Schedule::Every {
            every: period.into(),
        },
        message: "Say tick.".into(),
        session: JobSession::Named {
            key: "telegram:7".into(),
        },
        deliver: Some(telegram("7")),
        enabled: true,
        missed,
        disable_after_failures: 5,
        origin: None,
    }
}

fn scheduler(store: &ScheduleStore, agent: Arc<ScriptedAgent>) -> Scheduler {
    let config = SchedulerConfig {
        lease: std::time::Duration::from_secs(10),
        late_after: std::time::Duration::from_secs(60),
        ..SchedulerConfig::default()
    };
    Scheduler::new(store.clone(), agent, config)
}

#[tokio::test]
async fn each_occurrence_runs_once_and_delivers_once() {
    let clock = Arc::new(ManualClock::at(T0));
    let store = store_at(&clock);
    let agent = Arc::new(ScriptedAgent::new());
    let scheduler = scheduler(&store, agent.clone());
    let job = store
        .create(every("10s", MissedPolicy::RunOnce))
        .await
        .unwrap();
    assert_eq!(job.next_run_ms, Some(T0 + 10_000));

    assert_eq!(scheduler.run_due().await.unwrap(), 0, "nothing due yet");
    for period in 1..=3 {
        clock.set(T0 + period * 10_000 + 5);
        assert_eq!(scheduler.run_due().await.unwrap(), 1);
        assert_eq!(scheduler.run_due().await.unwrap(), 0, "claimed once");
    }
    let runs = store.runs(&job.id, 10).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == RunStatus::Ok));
    assert!(runs[0].reply.as_deref().unwrap().contains("Say tick."));
    let requests = agent.requests();
    assert_eq!(requests[0].session_key.as_deref(), Some("telegram:7"));

    let channels = vec!["telegram".to_owned()];
    let pending = store.pending(&channels, 10).await.unwrap();
    assert_eq!(pending.len(), 3);
    assert_eq!(
        pending[0].key,
        format!("job:{}:{}:telegram:7", job.id, T0 + 10_000)
    );
    for delivery in &pending {
        store
            .report(&delivery.key, DeliveryOutcome::Sent)
            .await
            .unwrap();
    }
    assert!(store.pending(&channels, 10).await.unwrap().is_empty());
    let runs = store.runs(&job.id, 10).await.unwrap();
    assert_eq!(runs[0].delivery.as_deref(), Some("sent"));
}

#[tokio::test]
async fn missed_occurrences_run_once_or_are_skipped_by_policy() {
    let clock = Arc::new(ManualClock::at(T0));
    let store = store_at(&clock);
    let scheduler = scheduler(&store, Arc::new(ScriptedAgent::new()));
    let run_once = store
        .create(every("1m", MissedPolicy::RunOnce))
        .await
        .unwrap();
    let skip = store.create(every("1m", MissedPolicy::Skip)).await.unwrap();

    // An hour of downtime: sixty occurrences of each passed.
    clock.set(T0 + 3_600_000 + 30_000);
    assert_eq!(
        scheduler.run_due().await.unwrap(),
        1,
        "one run for sixty missed"
    );
    let runs = store.runs(&run_once.id, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Ok);
    assert_eq!(runs[0].occurrence_ms, T0 + 60_000);
    let runs = store.runs(&skip.id, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Skipped);
    // Both go on from now, not from the missed ones.
    for id in [&run_once.id, &skip.id] {
        let job = store.get(id).await.unwrap();
        assert_eq!(job.next_run_ms, Some(T0 + 3_660_000));
    }
    assert_eq!(scheduler.run_due().await.unwrap(), 0);
}

#[tokio::test]
async fn a_one_shot_runs_once_and_its_past_time_is_refused() {
    let clock = Arc::new(ManualClock::at(T0));
    let store = store_at(&clock);
    let scheduler = scheduler(&store, Arc::new(ScriptedAgent::new()));
    let mut new = every("1m", MissedPolicy::RunOnce);
    new.schedule = Schedule::At {
        at: "in 10m".into(),
    };
    let job = store.create(new.clone()).await.unwrap();
    assert_eq!(job.next_run_ms, Some(T0 + 600_000));
    assert!(matches!(&job.schedule, Schedule::At { at } if at.ends_with('Z')));
    clock.set(T0 + 600_001);
    assert_eq!(scheduler.run_due().await.unwrap(), 1);
    clock.set(T0 + 6_000_000);
    assert_eq!(scheduler.run_due().await.unwrap(), 0);
    assert_eq!(store.get(&job.id).await.unwrap().next_run_ms, None);

    // A new time makes the one-shot run again; a past one is refused.
    let patch = |at: &str| JobPatch {
        schedule: Some(Schedule::At { at: at.into() }),
        ..JobPatch::default()
    };
    let moved = store.update(&job.id, patch("in 1m")).await.unwrap();
    assert_eq!(moved.next_run_ms, Some(T0 + 6_060_000));
    let error = store
        .update(&job.id, patch("2020-01-01T00:00:00Z"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("in the past"), "{error}");

    new.schedule = Schedule::At {
        at: "2020-01-01T00:00:00Z".into(),
    };
    let error = store.create(new).await.unwrap_err().to_string();
    assert!(error.contains("in the past"), "{error}");
}

#[tokio::test]
async fn two_schedulers_on_one_database_claim_each_occurrence_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ocg.db");
    let clock = Arc::new(ManualClock::at(T0));
    let a = ScheduleStore::open(&path, clock.clone()).unwrap();
    let b = ScheduleStore::open(&path, clock.clone()).unwrap();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            a.create(every("1s", MissedPolicy::RunOnce))
                .await
                .unwrap()
                .id,
        );
    }
    let (sa, sb) = (
        scheduler(&a, Arc::new(ScriptedAgent::new())),
        scheduler(&b, Arc::new(ScriptedAgent::new())),
    );
    for second in 1..=5 {
        clock.set(T0 + second * 1_000);
        let (ra, rb) = tokio::join!(sa.run_due(), sb.run_due());
        assert_eq!(ra.unwrap() + rb.unwrap(), 20, "second {second}");
    }
    for id in &ids {
        let runs = a.runs(id, 100).await.unwrap();
        let mut occurrences: Vec<i64> = runs.iter().map(|r| r.occurrence_ms).collect();
        occurrences.sort_unstable();
        assert_eq!(
            occurrences,
            (1..=5).map(|s| T0 + s * 1_000).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn an_interrupted_run_is_seen_and_retried_once_under_run_once_only() {
    let clock = Arc::new(ManualClock::at(T0));
    let store = store_at(&clock);
    let retried = store
        .create(every("1h", MissedPolicy::RunOnce))
        .await
        .unwrap();
    let not_retried = store.create(every("1h", MissedPolicy::Skip)).await.unwrap();
    clock.set(T0 + 3_600_000);
    // A scheduler claims both and dies without finishing them.
    let dead = store.claim_due("dead", 10_000, 60_000, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    // Its lease runs out; another scheduler takes over.
    clock.advance(10_001);
    let scheduler = scheduler(&store, Arc::new(ScriptedAgent::new()));
    assert_eq!(scheduler.run_due().await.unwrap(), 1);
    let runs = store.runs(&retried.id, 10).await.unwrap();
    let statuses: Vec<_> = runs
        .iter()
        .map(|r| (r.attempt, r.status, r.trigger.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            (2, RunStatus::Ok, "retry"),
            (1, RunStatus::Interrupted, "schedule")
        ]
    );
    let runs = store.runs(&not_retried.id, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Interrupted);
    // The dead scheduler's late result is not recorded, nor delivered twice.
    let finished = store
        .finish(dead[0].run_id, "dead", RunOutcome::Failed("late".into()))
        .await
        .unwrap();
    assert!(!finished);
    let pending = store.pending(&["telegram".to_owned()], 10).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
}

#[tokio::test]
async fn repeated_failures_notify_once_and_disable_the_job() {
    let clock = Arc::new(ManualClock::at(T0));
    let store = store_at(&clock);
    let agent = Arc::new(ScriptedAgent::new());
    for _ in 0..5 {
        agent.push_script(vec![ChatEvent::Error {
            code: "llm_unavailable".into(),
            message: "the model is down".into(),
        }]);
    }
    let scheduler = scheduler(&store, agent);
    let job = store
        .create(every("1m", MissedPolicy::RunOnce))
        .await
        .unwrap();
    for minute in 1..=5 {
        clock.set(T0 + minute * 60_000);
        assert_eq!(scheduler.run_due().await.unwrap(), 1);
    }
    let job = store.get(&job.id).await.unwrap();
    assert!(!job.enabled);
    assert_eq!(job.consecutive_failures, 5);
    assert_eq!(job.next_run_ms, None);
    let pending = store.pending(&["telegram".to_owned()], 10).await.unwrap();
    let texts: Vec<&str> = pending.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("failed 3 times in a row"), "{texts:?}");
    assert!(texts[1].contains("now disabled"), "{texts:?}");
    // Resuming starts counting again.
    let job = store
        .update(
            &job.id,
            JobPatch {
                enabled: Some(true),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(job.consecutive_failures, 0);
    assert_eq!(job.next_run_ms, Some(T0 + 360_000));
}

#[tokio::test]
async fn run_now_is_claimed_like_an_occurrence() {
    let clock = Arc::new(ManualClock::at(T0));
    let store = store_at(&clock);
    let scheduler = scheduler(&store, Arc::new(ScriptedAgent::new()));
    let job = store
        .create(every("1d", MissedPolicy::RunOnce))
        .await
        .unwrap();
    let first = store.request_run(&job.id).await.unwrap();
    assert_eq!(
        store.request_run(&job.id).await.unwrap(),
        first,
        "one request"
    );
    assert_eq!(scheduler.run_due().await.unwrap(), 1);
    assert_eq!(scheduler.run_due().await.unwrap(), 0);
    let runs = store.runs(&job.id, 10).await.unwrap();
    assert_eq!(runs[0].trigger, "manual");
    assert!(matches!(
        store.request_run("nope").await,
        Err(crate::AgentError::JobNotFound(_))
    ));
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
