//! `schedule`: the model creates, lists and cancels scheduled jobs, so
//! "remind me in 10 minutes to stretch" written in a chat becomes a job that
//! runs in that chat's session and delivers to that chat.

use async_trait::async_trait;
use ocg_core::schedule::{DeliveryTarget, Job, JobSession, MissedPolicy, NewJob, Schedule};
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolGroup, arguments, json_result};
use crate::AgentError;
use crate::schedule::{ScheduleStore, chat_of_session, rfc3339};

/// Jobs one session may hold through the tool.
pub const MAX_JOBS_PER_SESSION: usize = 50;
/// The shortest interval the model may schedule (people may go down to a
/// second through the API and the CLI).
pub const MIN_TOOL_EVERY_MS: i64 = 60_000;

/// The `schedule` tool over a [`ScheduleStore`].
#[derive(Debug, Clone)]
pub struct ScheduleTool {
    store: ScheduleStore,
    webhooks: bool,
}

impl ScheduleTool {
    /// The tool over `store`; `webhooks` says whether it may POST replies to
    /// URLs (only when the policy offers `web_fetch`, so denying the `web`
    /// group keeps the model off the network here too).
    pub fn new(store: ScheduleStore, webhooks: bool) -> Self {
        ScheduleTool { store, webhooks }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Create,
    List,
    Cancel,
}

#[derive(Deserialize)]
struct Args {
    action: Action,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    tz: Option<String>,
    #[serde(default)]
    isolated: bool,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    skip_missed: bool,
    #[serde(default)]
    id: Option<String>,
}

fn bad(message: impl Into<String>) -> AgentError {
    AgentError::tool("invalid_arguments", message)
}

/// What the model is shown of a job.
fn summary(job: &Job) -> serde_json::Value {
    json!({
        "id": job.id,
        "name": job.name,
        "schedule": job.schedule,
        "message": job.message,
        "enabled": job.enabled,
        "next_run": job.next_run_ms.map(rfc3339),
        "last_status": job.last_status,
        "delivers_to": job.deliver,
    })
}

/// Tool errors keep the store's message and get the tool's code.
fn as_tool_error(error: AgentError) -> AgentError {
    match error {
        AgentError::InvalidInput(message) => AgentError::tool("invalid_arguments", message),
        AgentError::JobNotFound(id) => AgentError::tool("job_not_found", format!("no job {id:?}")),
        other => other,
    }
}

#[async_trait]
impl Tool for ScheduleTool {
    fn name(&self) -> &'static str {
        "schedule"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Schedule
    }
    fn description(&self) -> &'static str {
        "Schedule work for later: reminders and recurring tasks. action=create runs `message` as \
         your prompt at the time (at: \"in 10m\", \"2026-12-24 09:00\" local, or RFC 3339), every \
         interval (every: \"1h\") or on a 5-field cron expression (cron: \"0 8 * * 1-5\", tz: \
         IANA zone, default the machine's); the run happens in this conversation and your reply \
         then is sent to this chat. Write `message` as an instruction to yourself, e.g. \"Remind \
         the user to stretch.\" action=list shows jobs; action=cancel deletes the job `id`."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["create", "list", "cancel"]},
                "message": {"type": "string", "description": "create: the prompt of each run"},
                "name": {"type": "string"},
                "at": {"type": "string", "description": "create, once: \"in 10m\", a local \"2026-12-24 09:00\" or RFC 3339"},
                "every": {"type": "string", "description": "create, repeating: \"30m\", \"1h\", \"1d\""},
                "cron": {"type": "string", "description": "create, repeating: 5-field cron"},
                "tz": {"type": "string", "description": "cron's IANA time zone"},
                "isolated": {"type": "boolean", "description": "run each time in a fresh session instead of this conversation"},
                "webhook": {"type": "string", "description": "POST the reply to this URL instead of this chat"},
                "skip_missed": {"type": "boolean", "description": "skip occurrences missed while the agent was down (default: run once)"},
                "id": {"type": "string", "description": "cancel: the job"}
            },
            "required": ["action"]
        })
    }
    async fn call(
        &self,
        context: &ToolContext,
        args: serde_json::Value,
    ) -> Result<String, AgentError> {
        let args: Args = arguments(self.name(), args)?;
        match args.action {
            Action::List => {
                let jobs = self.store.list().await?;
                json_result(&jobs.iter().map(summary).collect::<Vec<_>>())
            }
            Action::Cancel => {
                let id = args.id.ok_or_else(|| bad("cancel needs the job's id"))?;
                self.store.delete(id.trim()).await.map_err(as_tool_error)?;
                json_result(&json!({"cancelled": id.trim()}))
            }
            Action::Create => {
                let message = args.message.ok_or_else(|| bad("create needs a message"))?;
                let schedule = match (args.at, args.every, args.cron) {
                    (Some(at), None, None) => Schedule::At { at },
                    (None, Some(every), None) => {
                        if crate::schedule::parse_duration_ms(&every).map_err(as_tool_error)?
                            < MIN_TOOL_EVERY_MS
                        {
                            return Err(bad("an interval is at least one minute"));
                        }
                        Schedule::Every { every }
                    }
                    (None, None, Some(expr)) => Schedule::Cron { expr, tz: args.tz },
                    _ => return Err(bad("create needs exactly one of at, every, cron")),
                };
                let origin = context.session_key.clone();
                if self.store.count_from(origin.as_deref()).await? >= MAX_JOBS_PER_SESSION {
                    return Err(AgentError::tool(
                        "too_many_jobs",
                        format!(
                            "this conversation has {MAX_JOBS_PER_SESSION} scheduled jobs; cancel some first"
                        ),
                    ));
                }
                let session = match (&origin, args.isolated) {
                    (Some(key), false) if !key.starts_with("cron:") => {
                        JobSession::Named { key: key.clone() }
                    }
                    _ => JobSession::Isolated,
                };
                let deliver = match args.webhook {
                    Some(_) if !self.webhooks => {
                        return Err(AgentError::tool(
                            "not_allowed",
                            "webhooks need the web group, which the policy does not offer",
                        ));
                    }
                    Some(url) => Some(DeliveryTarget::Webhook { url }),
                    None => origin.as_deref().and_then(chat_of_session),
                };
                let job = self
                    .store
                    .create(NewJob {
                        name: args.name,
                        schedule,
                        message,
                        session,
                        deliver,
                        enabled: true,
                        missed: if args.skip_missed {
                            MissedPolicy::Skip
                        } else {
                            MissedPolicy::RunOnce
                        },
                        disable_after_failures: 5,
                        origin,
                    })
                    .await
                    .map_err(as_tool_error)?;
                json_result(&summary(&job))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::schedule::ManualClock;

    fn tool(webhooks: bool) -> ScheduleTool {
        let clock = Arc::new(ManualClock::at(1_800_000_000_000));
        ScheduleTool::new(ScheduleStore::in_memory(clock).unwrap(), webhooks)
    }

    fn in_chat() -> ToolContext {
        ToolContext {
            session_key: Some("telegram:42".into()),
        }
    }

    async fn call(tool: &ScheduleTool, args: serde_json::Value) -> Result<String, AgentError> {
        tool.call(&in_chat(), args).await
    }

    #[tokio::test]
    async fn a_job_made_in_a_chat_runs_there_and_delivers_there() {
        let tool = tool(false);
        let made = call(
            &tool,
            json!({"action": "create", "at": "in 10m", "message": "Remind the user to stretch."}),
        )
        .await
        .unwrap();
        let made: serde_json::Value = serde_json::from_str(&made).unwrap();
        assert_eq!(made["next_run"], "2027-01-15T08:10:00Z");
        let job = &tool.store.list().await.unwrap()[0];
        assert_eq!(
            job.session,
            JobSession::Named {
                key: "telegram:42".into()
            }
        );
        assert_eq!(job.deliver, chat_of_session("telegram:42"));
        assert_eq!(job.origin.as_deref(), Some("telegram:42"));

        let listed = call(&tool, json!({"action": "list"})).await.unwrap();
        assert!(listed.contains(&job.id), "{listed}");
        call(&tool, json!({"action": "cancel", "id": job.id}))
            .await
            .unwrap();
        assert!(tool.store.list().await.unwrap().is_empty());
        let again = call(&tool, json!({"action": "cancel", "id": job.id}))
            .await
            .unwrap_err();
        assert_eq!(again.code(), "job_not_found");
    }

    #[tokio::test]
    async fn the_model_is_kept_to_its_limits() {
        let tool = tool(false);
        let refused = |args: serde_json::Value| {
            let tool = tool.clone();
            async move { call(&tool, args).await.unwrap_err() }
        };
        let error = refused(json!({"action": "create", "every": "10s", "message": "x"})).await;
        assert!(error.to_string().contains("one minute"), "{error}");
        let error = refused(json!({"action": "create", "at": "in 1m", "webhook": "https://example.com/", "message": "x"})).await;
        assert_eq!(error.code(), "not_allowed");
        let error =
            refused(json!({"action": "create", "at": "in 1m", "every": "1h", "message": "x"}))
                .await;
        assert!(error.to_string().contains("exactly one"), "{error}");
        let error = refused(json!({"action": "create", "cron": "0 8 * *", "message": "x"})).await;
        assert_eq!(error.code(), "invalid_arguments");
        assert!(
            error.to_string().contains("not a cron expression"),
            "{error}"
        );
        for n in 0..MAX_JOBS_PER_SESSION {
            call(
                &tool,
                json!({"action": "create", "every": "1h", "message": format!("job {n}")}),
            )
            .await
            .unwrap();
        }
        let error =
            refused(json!({"action": "create", "every": "1h", "message": "one more"})).await;
        assert_eq!(error.code(), "too_many_jobs");
    }
}
