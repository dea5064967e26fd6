//! [`AgentPool`]: one [`Agent`] over several agents that share a store
//! (PostgreSQL, `OCG_DATABASE_URL`), for a gateway in front of several
//! machines.
//!
//! - Turns go round robin over the agents that are up. An agent that
//!   cannot be reached, or whose stream breaks before the turn ended, is
//!   set aside for [`DOWN_FOR`] and the turn is started again on the next
//!   one: a turn is stored only when it completes, so the other agent
//!   answers it from the same history (what was already streamed of the
//!   lost attempt is streamed again).
//! - Deliveries of scheduled answers are fetched from every agent that is
//!   up (agents over one store offer the same ones: each is handed out
//!   once), and each is reported to the agent it came from.
//! - Every other call (sessions, memories, jobs) goes to the first agent
//!   of the list that is up; the next one is tried only when the
//!   connection was refused, so a call that may have done its work is
//!   never made twice.
//! - [`AgentPool::probe_every`] asks each agent's `/health` in the
//!   background and sets aside the unhealthy ones before a turn finds out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use ocg_core::schedule::{Delivery, DeliveryOutcome, Job, JobPatch, JobRun, NewJob};
use ocg_core::{
    Agent, ChatEvent, ChatRequest, ChatStream, Error, HealthCheck, HealthReport, HealthStatus,
    HistoryEntry, McpServerInfo, Memory, MemoryPage, NewMemory, Result, SessionInfo, StoredMemory,
};

/// How long an agent that failed is passed over.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// One agent of the pool.
struct Member {
    name: String,
    agent: Arc<dyn Agent>,
    down_until: std::sync::Mutex<Option<Instant>>,
}

impl Member {
    fn is_up(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        down.is_none_or(|until| Instant::now() >= until)
    }

    fn set_down(&self, why: &str) {
        tracing::warn!(agent = %self.name, "agent set aside for {}s: {why}", DOWN_FOR.as_secs());
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + DOWN_FOR);
    }

    fn set_up(&self) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Whether `error` says the agent could not be reached at all, so the
/// call surely did nothing there and another agent may take it. (The
/// agent client says so first; a timeout or a broken answer may come
/// after the call did its work, and is not tried again.)
fn unreachable(error: &Error) -> bool {
    matches!(error, Error::Unavailable { service, message }
        if service == "agent" && message.starts_with("connection refused"))
}

/// Whether a stream's terminal event says the agent was lost mid-turn (the
/// client's own event when the stream broke), not that the turn failed.
fn lost(event: &ChatEvent) -> bool {
    matches!(event, ChatEvent::Error { code, .. } if code == "unavailable")
}

/// Deliveries handed out and not reported yet, remembered at most.
const DELIVERIES_REMEMBERED: usize = 10_000;

/// Several agents as one [`Agent`] (see the module docs).
pub struct AgentPool {
    members: Vec<Arc<Member>>,
    next: AtomicUsize,
    /// Which member handed out each delivery not reported yet.
    delivered_by: std::sync::Mutex<std::collections::HashMap<String, Arc<Member>>>,
}

impl std::fmt::Debug for AgentPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        f.debug_struct("AgentPool").field("agents", &names).finish()
    }
}

impl AgentPool {
    /// A pool of `agents`, each with the name it is logged and reported
    /// under (its address). At least one.
    pub fn new(agents: Vec<(String, Arc<dyn Agent>)>) -> Result<Self> {
        if agents.is_empty() {
            return Err(Error::InvalidInput("an agent pool needs an agent".into()));
        }
        Ok(AgentPool {
            members: agents
                .into_iter()
                .map(|(name, agent)| {
                    Arc::new(Member {
                        name,
                        agent,
                        down_until: std::sync::Mutex::new(None),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
            delivered_by: std::sync::Mutex::default(),
        })
    }

    /// The members to try, in order: those up first (from the next in the
    /// rotation when `rotate`, else in list order), then those set aside,
    /// which may have come back.
    fn order(&self, rotate: bool) -> VecDeque<Arc<Member>> {
        let start = if rotate {
            self.next.fetch_add(1, Ordering::Relaxed) % self.members.len()
        } else {
            0
        };
        let rotated = self.members[start..]
            .iter()
            .chain(&self.members[..start])
            .cloned();
        let (up, down): (Vec<_>, Vec<_>) = rotated.partition(|m| m.is_up());
        up.into_iter().chain(down).collect()
    }

    /// Run `call` on the first member that is up and reachable.
    async fn first<'call, T>(
        &self,
        call: impl Fn(Arc<dyn Agent>) -> BoxFuture<'call, Result<T>>,
    ) -> Result<T> {
        let (member, answer) = reach(&mut self.order(false), call).await?;
        member.set_up();
        answer
    }

    /// Every member's health, asked of all at once, in member order.
    async fn reports(&self) -> Vec<HealthReport> {
        futures_util::future::join_all(self.members.iter().map(|m| m.agent.health())).await
    }

    /// Ask every agent's health every `every`, setting aside those that are
    /// not healthy; ends when the pool is dropped.
    pub fn probe_every(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                for (member, report) in pool.members.iter().zip(pool.reports().await) {
                    if report.status == HealthStatus::Unhealthy {
                        member.set_down("its health check failed");
                    } else {
                        member.set_up();
                    }
                }
            }
        })
    }
}

/// A turn on its current agent, and the agents left to restart it on.
struct Attempt {
    stream: ChatStream,
    member: Arc<Member>,
    rest: VecDeque<Arc<Member>>,
    request: ChatRequest,
    ended: bool,
}

/// Run `call` on `members` in turn, taking each off the front, until one
/// is reached: that member and its answer. Those that could not be
/// reached are set aside; the error of the last is returned when none was.
async fn reach<'call, T>(
    members: &mut VecDeque<Arc<Member>>,
    call: impl Fn(Arc<dyn Agent>) -> BoxFuture<'call, Result<T>>,
) -> Result<(Arc<Member>, Result<T>)> {
    let mut last = None;
    while let Some(member) = members.pop_front() {
        match call(member.agent.clone()).await {
            Err(error) if unreachable(&error) => {
                member.set_down(&error.to_string());
                last = Some(error);
            }
            answer => return Ok((member, answer)),
        }
    }
    Err(last.unwrap_or_else(|| Error::unavailable("agent", "no agent")))
}

/// Start `request` on the first of `members` that takes it.
async fn start(
    members: &mut VecDeque<Arc<Member>>,
    request: &ChatRequest,
) -> Result<(Arc<Member>, ChatStream)> {
    let (member, stream) = reach(members, |agent| {
        let request = request.clone();
        Box::pin(async move { agent.chat_stream(request).await })
    })
    .await?;
    Ok((member, stream?))
}

impl Attempt {
    /// The next event of the turn, restarting it on the next agent when
    /// this one is lost.
    async fn next(mut self) -> Option<(ChatEvent, Self)> {
        if self.ended {
            return None;
        }
        loop {
            let event = self.stream.next().await;
            let broken = match &event {
                None => true,
                Some(event) => lost(event),
            };
            if !broken {
                let event = event?;
                self.ended = event.is_terminal();
                return Some((event, self));
            }
            self.member
                .set_down("the stream broke before the turn ended");
            match start(&mut self.rest, &self.request).await {
                Ok((member, stream)) => {
                    tracing::info!(agent = %member.name, "turn restarted on another agent");
                    (self.member, self.stream) = (member, stream);
                }
                Err(error) => {
                    self.ended = true;
                    let event = event.unwrap_or(ChatEvent::Error {
                        code: error.code().to_owned(),
                        message: error.to_string(),
                    });
                    return Some((event, self));
                }
            }
        }
    }
}

macro_rules! first {
    ($self:ident, |$agent:ident| $call:expr) => {
        $self
            .first(|$agent| Box::pin(async move { $call.await }))
            .await
    };
}

#[async_trait]
impl Agent for AgentPool {
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let mut members = self.order(true);
        let (member, stream) = start(&mut members, &request).await?;
        let attempt = Attempt {
            stream,
            member,
            rest: members,
            request,
            ended: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            attempt,
            Attempt::next,
        )))
    }

    /// Healthy when every agent is; degraded while at least one answers.
    async fn health(&self) -> HealthReport {
        let reports = self.reports().await;
        let checks: Vec<HealthCheck> = self
            .members
            .iter()
            .zip(&reports)
            .map(|(member, report)| HealthCheck {
                name: format!("agent {}", member.name),
                status: report.status,
                detail: report
                    .checks
                    .iter()
                    .find(|c| c.status != HealthStatus::Ok)
                    .and_then(|c| c.detail.clone()),
            })
            .collect();
        let healthy = reports
            .iter()
            .filter(|r| r.status != HealthStatus::Unhealthy)
            .count();
        let mut report = reports
            .iter()
            .find(|r| r.status != HealthStatus::Unhealthy)
            .cloned()
            .unwrap_or_else(|| reports[0].clone());
        report.status = if healthy == 0 {
            HealthStatus::Unhealthy
        } else if healthy < reports.len() || reports.iter().any(|r| r.status != HealthStatus::Ok) {
            HealthStatus::Degraded
        } else {
            HealthStatus::Ok
        };
        report.checks = checks;
        report
    }

    async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        first!(self, |agent| agent.sessions())
    }

    async fn history(
        &self,
        key: &str,
        offset: u64,
        limit: u64,
        include_archived: bool,
    ) -> Result<Vec<HistoryEntry>> {
        first!(self, |agent| agent.history(
            key,
            offset,
            limit,
            include_archived
        ))
    }

    async fn rename_session(&self, key: &str, title: &str) -> Result<()> {
        first!(self, |agent| agent.rename_session(key, title))
    }

    async fn reset_session(&self, key: &str) -> Result<()> {
        first!(self, |agent| agent.reset_session(key))
    }

    async fn delete_session(&self, key: &str) -> Result<()> {
        first!(self, |agent| agent.delete_session(key))
    }

    async fn models(&self) -> Result<Vec<String>> {
        first!(self, |agent| agent.models())
    }

    async fn memory_search(&self, query: &str, limit: usize) -> Result<Vec<Memory>> {
        first!(self, |agent| agent.memory_search(query, limit))
    }

    async fn memory_list(&self, offset: u64, limit: u64) -> Result<MemoryPage> {
        first!(self, |agent| agent.memory_list(offset, limit))
    }

    async fn memory_get(&self, id: &str) -> Result<Memory> {
        first!(self, |agent| agent.memory_get(id))
    }

    async fn memory_store(&self, memory: NewMemory) -> Result<StoredMemory> {
        let memory = &memory;
        first!(self, |agent| agent.memory_store(memory.clone()))
    }

    async fn memory_delete(&self, id: &str) -> Result<()> {
        first!(self, |agent| agent.memory_delete(id))
    }

    async fn job_create(&self, job: NewJob) -> Result<Job> {
        let job = &job;
        first!(self, |agent| agent.job_create(job.clone()))
    }

    async fn job_list(&self) -> Result<Vec<Job>> {
        first!(self, |agent| agent.job_list())
    }

    async fn job_get(&self, id: &str) -> Result<Job> {
        first!(self, |agent| agent.job_get(id))
    }

    async fn job_update(&self, id: &str, patch: JobPatch) -> Result<Job> {
        let patch = &patch;
        first!(self, |agent| agent.job_update(id, patch.clone()))
    }

    async fn job_delete(&self, id: &str) -> Result<()> {
        first!(self, |agent| agent.job_delete(id))
    }

    async fn job_runs(&self, id: &str, limit: u64) -> Result<Vec<JobRun>> {
        first!(self, |agent| agent.job_runs(id, limit))
    }

    async fn job_run_now(&self, id: &str) -> Result<i64> {
        first!(self, |agent| agent.job_run_now(id))
    }

    /// Every agent that is up, asked at once (each waits up to `wait_ms`);
    /// the first that has deliveries answers (the others' waits are
    /// dropped: asking hands nothing out, reporting does).
    async fn deliveries_pending(&self, channels: &[String], wait_ms: u64) -> Result<Vec<Delivery>> {
        let up: Vec<Arc<Member>> = self.members.iter().filter(|m| m.is_up()).cloned().collect();
        let asked = if up.is_empty() {
            self.members.clone()
        } else {
            up
        };
        let mut answers: futures_util::stream::FuturesUnordered<_> = asked
            .into_iter()
            .map(|member| async move {
                let answer = member.agent.deliveries_pending(channels, wait_ms).await;
                (member, answer)
            })
            .collect();
        let (mut found, mut last_error, mut answered) = (Vec::new(), None, false);
        // Agents over one shared store hand out the same deliveries: each once.
        let mut keys = std::collections::HashSet::new();
        // Whether the answer brought deliveries.
        let mut record = |member: Arc<Member>, answer: Result<Vec<Delivery>>| match answer {
            Ok(deliveries) => {
                answered = true;
                let some = !deliveries.is_empty();
                let mut by = self.delivered_by.lock().unwrap_or_else(|p| p.into_inner());
                if by.len() > DELIVERIES_REMEMBERED {
                    by.clear();
                }
                for delivery in deliveries {
                    if keys.insert(delivery.key.clone()) {
                        by.insert(delivery.key.clone(), member.clone());
                        found.push(delivery);
                    }
                }
                some
            }
            Err(error) => {
                if unreachable(&error) {
                    member.set_down(&error.to_string());
                }
                last_error = Some(error);
                false
            }
        };
        while let Some((member, answer)) = answers.next().await {
            if record(member, answer) {
                // With whatever the others have ready too.
                while let Some(Some((member, answer))) = answers.next().now_or_never() {
                    let _ = record(member, answer);
                }
                break;
            }
        }
        match last_error {
            Some(error) if !answered => Err(error),
            _ => Ok(found),
        }
    }

    /// To the agent that handed `key` out.
    async fn delivery_report(&self, key: &str, outcome: DeliveryOutcome) -> Result<()> {
        let from = self
            .delivered_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        match from {
            Some(member) => member.agent.delivery_report(key, outcome).await,
            None => {
                let outcome = &outcome;
                first!(self, |agent| agent.delivery_report(key, outcome.clone()))
            }
        }
    }

    async fn mcp_servers(&self) -> Result<Vec<McpServerInfo>> {
        first!(self, |agent| agent.mcp_servers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocg_core::testing::ScriptedAgent;

    /// An agent that is never reachable, or whose streams break after a delta.
    struct Broken {
        mid_turn: bool,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Agent for Broken {
        async fn chat_stream(&self, _: ChatRequest) -> Result<ChatStream> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if !self.mid_turn {
                return Err(Error::unavailable("agent", "connection refused"));
            }
            Ok(Box::pin(ocg_core::testing::iter_stream(vec![
                ChatEvent::Delta {
                    text: "half".into(),
                },
                ChatEvent::Error {
                    code: "unavailable".into(),
                    message: "the agent closed the stream before the turn ended".into(),
                },
            ])))
        }
        async fn health(&self) -> HealthReport {
            HealthReport::from_checks(
                "agent",
                "0",
                0,
                vec![HealthCheck::failing("socket", "down")],
            )
        }
        async fn sessions(&self) -> Result<Vec<SessionInfo>> {
            Err(Error::unavailable("agent", "connection refused"))
        }
    }

    fn broken(mid_turn: bool) -> Arc<Broken> {
        Arc::new(Broken {
            mid_turn,
            calls: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn turns_rotate_and_skip_an_agent_that_is_down() {
        let (a, b) = (
            Arc::new(ScriptedAgent::new()),
            Arc::new(ScriptedAgent::new()),
        );
        let dead = broken(false);
        let pool = AgentPool::new(vec![
            ("a".into(), a.clone() as Arc<dyn Agent>),
            ("dead".into(), dead.clone()),
            ("b".into(), b.clone()),
        ])
        .unwrap();
        for i in 0..6 {
            let reply = pool.chat(ChatRequest::user("web:1", format!("m{i}"))).await;
            assert!(reply.is_ok(), "{reply:?}");
        }
        assert_eq!(
            a.requests().len() + b.requests().len(),
            6,
            "every turn answered"
        );
        assert!(
            a.requests().len() >= 2 && b.requests().len() >= 2,
            "spread over both"
        );
        assert_eq!(
            dead.calls.load(Ordering::Relaxed),
            1,
            "tried once, then passed over"
        );
        // Other calls fall over to the next agent too (whose answer is that
        // a scripted agent keeps no sessions).
        let pool = AgentPool::new(vec![
            ("dead".into(), dead.clone() as Arc<dyn Agent>),
            ("a".into(), a.clone()),
        ])
        .unwrap();
        let answer = pool.sessions().await.unwrap_err();
        assert_eq!(answer.code(), "unsupported", "{answer}");
        assert_eq!(pool.health().await.status, HealthStatus::Degraded);
    }

    #[tokio::test]
    async fn a_turn_whose_agent_is_lost_mid_stream_restarts_on_another() {
        let survivor = Arc::new(ScriptedAgent::new());
        let lost = broken(true);
        let pool = AgentPool::new(vec![
            ("lost".into(), lost.clone() as Arc<dyn Agent>),
            ("survivor".into(), survivor.clone()),
        ])
        .unwrap();
        let reply = pool
            .chat(ChatRequest::user("web:1", "hello"))
            .await
            .unwrap();
        assert_eq!(lost.calls.load(Ordering::Relaxed), 1);
        assert_eq!(survivor.requests().len(), 1, "the turn ran again there");
        assert!(reply.message.content.contains("hello"), "{reply:?}");

        // With nobody left, the loss is what the caller sees.
        let alone = AgentPool::new(vec![("lost".into(), broken(true) as Arc<dyn Agent>)]).unwrap();
        let error = alone
            .chat(ChatRequest::user("web:1", "hi"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), "unavailable", "{error}");
    }

    /// An agent with one delivery of its own, recording the reports.
    struct Scheduling {
        key: String,
        reports: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Agent for Scheduling {
        async fn chat_stream(&self, _: ChatRequest) -> Result<ChatStream> {
            Err(Error::Unsupported("no chat".into()))
        }
        async fn health(&self) -> HealthReport {
            HealthReport::from_checks("agent", "0", 0, vec![])
        }
        async fn deliveries_pending(&self, _: &[String], _: u64) -> Result<Vec<Delivery>> {
            Ok(vec![Delivery {
                key: self.key.clone(),
                channel: "telegram".into(),
                target: ocg_core::ChatTarget::chat("7"),
                text: "reminder".into(),
                created_at_ms: 0,
            }])
        }
        async fn delivery_report(&self, key: &str, _: DeliveryOutcome) -> Result<()> {
            self.reports.lock().unwrap().push(key.to_owned());
            Ok(())
        }
    }

    #[tokio::test]
    async fn deliveries_come_from_every_agent_and_are_reported_to_their_own() {
        let agent = |key: &str| {
            Arc::new(Scheduling {
                key: key.into(),
                reports: std::sync::Mutex::default(),
            })
        };
        let (one, two) = (agent("job:a"), agent("job:b"));
        let pool = AgentPool::new(vec![
            ("one".into(), one.clone() as Arc<dyn Agent>),
            ("two".into(), two.clone()),
        ])
        .unwrap();
        // Each call answers with the first agent's that has some; both
        // agents' deliveries come through.
        let mut keys = std::collections::BTreeSet::new();
        for _ in 0..20 {
            for delivery in pool
                .deliveries_pending(&["telegram".into()], 0)
                .await
                .unwrap()
            {
                keys.insert(delivery.key);
            }
        }
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["job:a", "job:b"]);
        pool.delivery_report("job:b", DeliveryOutcome::Sent)
            .await
            .unwrap();
        pool.delivery_report("job:a", DeliveryOutcome::Sent)
            .await
            .unwrap();
        assert_eq!(*one.reports.lock().unwrap(), ["job:a"]);
        assert_eq!(*two.reports.lock().unwrap(), ["job:b"]);
    }

    #[tokio::test]
    async fn agents_over_one_store_hand_out_a_delivery_once() {
        let agent = || {
            Arc::new(Scheduling {
                key: "job:shared".into(),
                reports: std::sync::Mutex::default(),
            }) as Arc<dyn Agent>
        };
        let pool = AgentPool::new(vec![("one".into(), agent()), ("two".into(), agent())]).unwrap();
        for _ in 0..20 {
            let found = pool.deliveries_pending(&[], 0).await.unwrap();
            assert_eq!(found.len(), 1, "{found:?}");
        }
    }
}
