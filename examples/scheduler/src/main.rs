//! The scheduler on an agent of your own: a job every second runs three
//! turns of an `Agent` that is not OCG's runtime at all, and each run is
//! recorded in a SQLite file with its reply.
//!
//!     cargo run -p example-scheduler

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ocg_agent_lib::schedule::{ScheduleStore, Scheduler, SchedulerConfig, SystemClock};
use ocg_core::schedule::{JobPatch, NewJob, Schedule};
use ocg_core::{Agent, ChatEvent, ChatRequest, ChatStream, HealthReport, Message};

/// An agent that counts: any `Agent` implementation can run scheduled jobs.
#[derive(Default)]
struct Counter(AtomicU32);

#[async_trait]
impl Agent for Counter {
    async fn chat_stream(&self, request: ChatRequest) -> ocg_core::Result<ChatStream> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let asked = request
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let done = ChatEvent::Done {
            message: Message::assistant(format!("turn {n}, asked: {asked}")),
            usage: None,
            session_key: request.session_key,
        };
        Ok(Box::pin(futures_util::stream::iter([done])))
    }

    async fn health(&self) -> HealthReport {
        HealthReport::from_checks("counter", ocg_core::VERSION, 0, Vec::new())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = ScheduleStore::open(&dir.path().join("jobs.db"), Arc::new(SystemClock))?;
    let job = store
        .create(NewJob {
            name: Some("count".into()),
            schedule: Schedule::Every { every: "1s".into() },
            message: "What is the count?".into(),
            session: Default::default(),
            deliver: None,
            enabled: true,
            missed: Default::default(),
            disable_after_failures: 5,
            origin: None,
        })
        .await?;
    println!("job {} runs every second", job.id);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(Counter::default()),
        SchedulerConfig::default(),
    )
    .spawn(async move {
        let _ = stopped.await;
    });
    while store.runs(&job.id, 10).await?.len() < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store
        .update(
            &job.id,
            JobPatch {
                enabled: Some(false),
                ..JobPatch::default()
            },
        )
        .await?;
    let _ = stop.send(());
    scheduler.await?;

    for run in store.runs(&job.id, 10).await?.iter().rev() {
        println!(
            "run {} at +{} ms: {:?}, {}",
            run.id,
            run.occurrence_ms - job.created_at_ms,
            run.status,
            run.reply.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
