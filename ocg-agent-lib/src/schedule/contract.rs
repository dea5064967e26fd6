//! The contract every [`JobStore`] keeps, checked through
//! [`ScheduleStore`] and [`Scheduler`] on a [`ManualClock`]: each occurrence
//! runs once (also with two schedulers claiming at once), missed ones follow
//! their policy, interrupted runs are retried once, failures notify and
//! disable, requested runs are claimed, webhooks are taken once, and the
//! heartbeat beats once. The SQLite store's unit tests and the PostgreSQL
//! store's integration tests run the same [`check_job_store`].
// A check that fails panics with what it found, as a test does.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;

use ocg_core::schedule::{
    DeliveryOutcome, DeliveryTarget, JobPatch, JobSession, JobStore, MissedPolicy, NewJob,
    RunOutcome, RunStatus, Schedule,
};
use ocg_core::testing::ScriptedAgent;
use ocg_core::{ChatEvent, ChatTarget};

use super::{ManualClock, ScheduleStore, Scheduler, SchedulerConfig};
use crate::AgentError;

/// Check the contract on stores `open` makes: each call gives two handles
/// on one new, empty store (two agents over one database). Panics with the
/// check that failed.
pub async fn check_job_store<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = [Arc<dyn JobStore>; 2]>,
{
    each_occurrence_runs_once_and_delivers_once(open().await).await;
    missed_occurrences_run_once_or_are_skipped_by_policy(open().await).await;
    a_one_shot_runs_once_and_its_past_time_is_refused(open().await).await;
    two_schedulers_on_one_database_claim_each_occurrence_once(open().await).await;
    an_interrupted_run_is_seen_and_retried_once_under_run_once_only(open().await).await;
    repeated_failures_notify_once_and_disable_the_job(open().await).await;
    run_now_is_claimed_like_an_occurrence(open().await).await;
    jobs_are_edited_counted_and_deleted(open().await).await;
    webhooks_are_taken_once_and_retried_or_given_up(open().await).await;
    a_heartbeat_occurrence_is_claimed_once(open().await).await;
}

/// The contract's start time (2027-01-15).
pub(crate) const T0: i64 = 1_800_000_000_000;

/// A Telegram chat.
pub(crate) fn telegram(chat: &str) -> DeliveryTarget {
    DeliveryTarget::Chat {
        channel: "telegram".into(),
        target: ChatTarget::chat(chat),
    }
}

/// A job every `period` delivering to Telegram chat 7.
pub(crate) fn every(period: &str, missed: MissedPolicy) -> NewJob {
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

/// A scheduler of `store` with a 10 s lease.
fn scheduler(store: &ScheduleStore, agent: Arc<ScriptedAgent>) -> Scheduler {
    let config = SchedulerConfig {
        lease: std::time::Duration::from_secs(10),
        late_after: std::time::Duration::from_secs(60),
        ..SchedulerConfig::default()
    };
    Scheduler::new(store.clone(), agent, config)
}

async fn each_occurrence_runs_once_and_delivers_once(stores: [Arc<dyn JobStore>; 2]) {
    let clock = Arc::new(ManualClock::at(T0));
    let store = ScheduleStore::new(stores[0].clone(), clock.clone());
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

async fn missed_occurrences_run_once_or_are_skipped_by_policy(stores: [Arc<dyn JobStore>; 2]) {
    let clock = Arc::new(ManualClock::at(T0));
    let store = ScheduleStore::new(stores[0].clone(), clock.clone());
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

async fn a_one_shot_runs_once_and_its_past_time_is_refused(stores: [Arc<dyn JobStore>; 2]) {
    let clock = Arc::new(ManualClock::at(T0));
    let store = ScheduleStore::new(stores[0].clone(), clock.clone());
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

async fn two_schedulers_on_one_database_claim_each_occurrence_once(stores: [Arc<dyn JobStore>; 2]) {
    let clock = Arc::new(ManualClock::at(T0));
    let [a, b] = stores.map(|store| ScheduleStore::new(store, clock.clone()));
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

async fn an_interrupted_run_is_seen_and_retried_once_under_run_once_only(
    stores: [Arc<dyn JobStore>; 2],
) {
    let clock = Arc::new(ManualClock::at(T0));
    let store = ScheduleStore::new(stores[0].clone(), clock.clone());
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

async fn repeated_failures_notify_once_and_disable_the_job(stores: [Arc<dyn JobStore>; 2]) {
    let clock = Arc::new(ManualClock::at(T0));
    let store = ScheduleStore::new(stores[0].clone(), clock.clone());
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

async fn run_now_is_claimed_like_an_occurrence(stores: [Arc<dyn JobStore>; 2]) {
    let clock = Arc::new(ManualClock::at(T0));
    let store = ScheduleStore::new(stores[0].clone(), clock.clone());
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
        Err(AgentError::JobNotFound(_))
    ));
}

async fn jobs_are_edited_counted_and_deleted(stores: [Arc<dyn JobStore>; 2]) {
    let clock = Arc::new(ManualClock::at(T0));
    let [a, b] = stores.map(|store| ScheduleStore::new(store, clock.clone()));
    let first = a
        .create(NewJob {
            origin: Some("telegram:7".into()),
            ..every("1h", MissedPolicy::RunOnce)
        })
        .await
        .unwrap();
    let second = a.create(every("10m", MissedPolicy::Skip)).await.unwrap();
    let listed: Vec<String> = b.list().await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(
        listed,
        [second.id.clone(), first.id.clone()],
        "soonest first"
    );
    assert_eq!(b.count_from(Some("telegram:7")).await.unwrap(), 1);
    assert_eq!(b.count_from(None).await.unwrap(), 1);

    clock.advance(60_000);
    let renamed = b
        .update(
            &first.id,
            JobPatch {
                name: Some("hourly".into()),
                schedule: Some(Schedule::Every { every: "2h".into() }),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "hourly");
    assert_eq!(
        renamed.next_run_ms,
        Some(T0 + 60_000 + 7_200_000),
        "from the edit"
    );
    assert_eq!(a.get(&first.id).await.unwrap(), renamed);
    let paused = a
        .update(
            &first.id,
            JobPatch {
                enabled: Some(false),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(paused.next_run_ms, None);
    let refused = a
        .update(
            &first.id,
            JobPatch {
                name: Some(" ".into()),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, AgentError::InvalidInput(_)), "{refused}");
    assert_eq!(a.get(&first.id).await.unwrap(), paused, "nothing changed");

    // A run's pending delivery goes with its job.
    clock.set(second.next_run_ms.unwrap());
    let runs = a.claim_due("me", 10_000, 60_000, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    let reply = RunOutcome::Ok {
        reply: "done".into(),
        prompt_tokens: 3,
        completion_tokens: 1,
    };
    assert!(a.finish(runs[0].run_id, "me", reply).await.unwrap());
    assert_eq!(a.pending(&[], 10).await.unwrap().len(), 1);
    b.delete(&second.id).await.unwrap();
    assert!(a.pending(&[], 10).await.unwrap().is_empty());
    for gone in [
        a.get(&second.id).await,
        a.delete(&second.id).await.map(|()| paused.clone()),
        a.runs(&second.id, 10).await.map(|_| paused.clone()),
    ] {
        assert!(matches!(gone, Err(AgentError::JobNotFound(_))), "{gone:?}");
    }
    assert_eq!(a.list().await.unwrap().len(), 1);
}

async fn webhooks_are_taken_once_and_retried_or_given_up(stores: [Arc<dyn JobStore>; 2]) {
    let clock = Arc::new(ManualClock::at(T0));
    let [a, b] = stores.map(|store| ScheduleStore::new(store, clock.clone()));
    let hook = DeliveryTarget::Webhook {
        url: "https://hooks.example/ocg".into(),
    };
    assert!(a.enqueue("hook:1", &hook, "one").await.unwrap());
    assert!(
        !b.enqueue("hook:1", &hook, "one again").await.unwrap(),
        "same key"
    );
    assert!(a.enqueue("hook:2", &hook, "two").await.unwrap());
    assert!(
        a.enqueue("chat:1", &telegram("7"), "to chat")
            .await
            .unwrap()
    );
    let chats = a.pending(&["telegram".to_owned()], 10).await.unwrap();
    assert_eq!(chats.len(), 1, "webhooks are not a gateway's: {chats:?}");
    assert!(
        a.pending(&["discord".to_owned()], 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(a.next_webhook_retry_ms().await.unwrap(), Some(0));

    let (ta, tb) = tokio::join!(a.take_webhooks(10), b.take_webhooks(10));
    let mut taken: Vec<String> = ta
        .unwrap()
        .into_iter()
        .chain(tb.unwrap())
        .map(|w| w.key)
        .collect();
    taken.sort();
    assert_eq!(taken, ["hook:1", "hook:2"], "each taken once");
    assert!(a.take_webhooks(10).await.unwrap().is_empty(), "sending");

    a.webhook_done("hook:1", Err("503".into()), Some(T0 + 5_000))
        .await
        .unwrap();
    a.webhook_done("hook:2", Ok(()), None).await.unwrap();
    assert!(
        a.take_webhooks(10).await.unwrap().is_empty(),
        "not before its time"
    );
    assert_eq!(a.next_webhook_retry_ms().await.unwrap(), Some(T0 + 5_000));
    clock.set(T0 + 5_000);
    let again = b.take_webhooks(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].key.as_str(), again[0].text.as_str()),
        ("hook:1", "one")
    );
    assert_eq!(again[0].url, "https://hooks.example/ocg");

    // Left `sending` by an agent that stopped: given up, not resent.
    clock.advance(120_000);
    assert_eq!(a.abandon_stale_sends(60_000).await.unwrap(), 1);
    assert!(a.take_webhooks(10).await.unwrap().is_empty());
    assert_eq!(a.next_webhook_retry_ms().await.unwrap(), None);

    a.report("chat:1", DeliveryOutcome::Sent).await.unwrap();
    assert!(a.pending(&[], 10).await.unwrap().is_empty());
    let unknown = a.report("nope", DeliveryOutcome::Sent).await.unwrap_err();
    assert!(matches!(unknown, AgentError::InvalidInput(_)), "{unknown}");
}

async fn a_heartbeat_occurrence_is_claimed_once(stores: [Arc<dyn JobStore>; 2]) {
    let clock = Arc::new(ManualClock::at(T0));
    let [a, b] = stores.map(|store| ScheduleStore::new(store, clock.clone()));
    let (first, second) = tokio::join!(a.claim_heartbeat(T0, "a"), b.claim_heartbeat(T0, "b"));
    assert!(first.unwrap() ^ second.unwrap(), "exactly one claims it");
    assert!(b.claim_heartbeat(T0 + 1_800_000, "b").await.unwrap());
    assert!(!a.claim_heartbeat(T0 + 1_800_000, "a").await.unwrap());
}
