//! [`ToolRegistry`]: the tools a policy allows, as the runtime's executor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ocg_core::ToolCall;

use super::{Tool, ToolContext, ToolExecutor, ToolGroup, ToolOutput, ToolPolicy};
use crate::AgentError;
use crate::mcp::McpServers;
use crate::providers::ToolSpec;

/// The tools offered to the model, filtered by a [`ToolPolicy`].
///
/// A call of a tool the policy does not allow (or that does not exist) is
/// refused with `not_allowed` and never reaches a tool. Results longer than
/// the policy's `output_max` are cut in the middle ([`truncate_middle`]).
/// Failures reach the model as `error [code]: message`.
///
/// With [`McpServers`], the tools of running MCP servers are offered after
/// the built-in ones and go through the same refusals and caps; the list
/// is rebuilt only when theirs changes.
#[derive(Clone)]
pub struct ToolRegistry {
    tools: HashMap<&'static str, Arc<dyn Tool>>,
    order: Vec<&'static str>,
    /// What the model is offered, built once: every turn shares it.
    definitions: Arc<[ToolSpec]>,
    policy: Arc<ToolPolicy>,
    mcp: Option<McpServers>,
    /// The built-in definitions and the MCP ones, for an MCP generation.
    combined: Arc<Mutex<(u64, Arc<[ToolSpec]>)>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.order)
            .finish_non_exhaustive()
    }
}

impl ToolRegistry {
    /// The tools of `candidates` that `policy` allows. A name in the policy's
    /// allow or deny list that is neither a candidate tool nor a group is an
    /// error, so a typo does not silently allow or deny nothing.
    pub fn new(candidates: Vec<Arc<dyn Tool>>, policy: ToolPolicy) -> Result<Self, AgentError> {
        Self::build(candidates, policy, None)
    }

    /// Like [`new`](Self::new), with the tools of `mcp`'s servers too; their
    /// names (a server's, or `<server>__<tool>`) are valid in the policy.
    pub fn with_mcp(
        candidates: Vec<Arc<dyn Tool>>,
        policy: ToolPolicy,
        mcp: McpServers,
    ) -> Result<Self, AgentError> {
        Self::build(candidates, policy, Some(mcp))
    }

    fn build(
        candidates: Vec<Arc<dyn Tool>>,
        policy: ToolPolicy,
        mcp: Option<McpServers>,
    ) -> Result<Self, AgentError> {
        let servers = mcp.as_ref().map(McpServers::names).unwrap_or_default();
        let known = |name: &str| {
            ToolGroup::ALL.iter().any(|g| g.name() == name)
                || candidates.iter().any(|t| t.name() == name)
                || servers.iter().any(|server| {
                    name == server
                        || name
                            .strip_prefix(server.as_str())
                            .is_some_and(|rest| rest.len() > 2 && rest.starts_with("__"))
                })
        };
        if let Some(unknown) = policy
            .allow
            .iter()
            .flatten()
            .chain(&policy.deny)
            .find(|n| !known(n))
        {
            return Err(AgentError::InvalidInput(format!(
                "unknown tool or group {unknown:?} in OCG_TOOLS_ALLOW/OCG_TOOLS_DENY"
            )));
        }
        let mut tools = HashMap::new();
        let mut order = Vec::new();
        for tool in candidates {
            if policy.allows(tool.name(), tool.group()) && !tools.contains_key(tool.name()) {
                order.push(tool.name());
                tools.insert(tool.name(), tool);
            }
        }
        let definitions = order
            .iter()
            .filter_map(|name| tools.get(name))
            .map(|tool| ToolSpec {
                name: tool.name().to_owned(),
                description: tool.description().to_owned(),
                parameters: tool.parameters(),
            })
            .collect::<Arc<[ToolSpec]>>();
        Ok(ToolRegistry {
            tools,
            order,
            combined: Arc::new(Mutex::new((u64::MAX, definitions.clone()))),
            definitions,
            policy: Arc::new(policy),
            mcp,
        })
    }

    /// Names of the tools offered, in registration order.
    pub fn names(&self) -> &[&'static str] {
        &self.order
    }

    /// The policy in force.
    pub fn policy(&self) -> &ToolPolicy {
        &self.policy
    }

    /// The MCP servers whose tools are offered.
    pub fn mcp(&self) -> Option<&McpServers> {
        self.mcp.as_ref()
    }

    async fn run(
        &self,
        name: &str,
        context: &ToolContext,
        arguments: serde_json::Value,
    ) -> Option<Result<String, AgentError>> {
        if let Some(tool) = self.tools.get(name) {
            return Some(tool.call(context, arguments).await);
        }
        let mcp = self.mcp.as_ref()?;
        mcp.tool(name)?;
        Some(mcp.call(name, arguments).await)
    }
}

#[async_trait]
impl ToolExecutor for ToolRegistry {
    fn definitions(&self) -> Arc<[ToolSpec]> {
        let Some(mcp) = &self.mcp else {
            return self.definitions.clone();
        };
        let generation = mcp.generation();
        let mut combined = self.combined.lock().unwrap_or_else(|p| p.into_inner());
        if combined.0 != generation {
            let specs: Arc<[ToolSpec]> = self
                .definitions
                .iter()
                .cloned()
                .chain(mcp.tools().iter().map(|tool| ToolSpec {
                    name: tool.name.clone(),
                    description: tool.description.clone(),
                    parameters: tool.parameters.clone(),
                }))
                .collect();
            *combined = (generation, specs);
        }
        combined.1.clone()
    }

    async fn call(&self, session_key: Option<&str>, call: &ToolCall) -> ToolOutput {
        let context = ToolContext {
            session_key: session_key.map(str::to_owned),
        };
        let started = std::time::Instant::now();
        let Some(result) = self
            .run(call.name.as_str(), &context, call.arguments.clone())
            .await
        else {
            let mut available: Vec<String> = self.order.iter().map(|n| (*n).to_owned()).collect();
            if let Some(mcp) = &self.mcp {
                available.extend(mcp.tools().iter().map(|t| t.name.clone()));
            }
            return ToolOutput {
                content: format!(
                    "error [not_allowed]: there is no tool {:?} here (available: {})",
                    call.name,
                    available.join(", ")
                ),
                ok: false,
            };
        };
        let (content, ok) = match result {
            Ok(text) => (text, true),
            Err(error) => (format!("error [{}]: {error}", error.code()), false),
        };
        tracing::debug!(
            tool = %call.name,
            ok,
            bytes = content.len(),
            ms = started.elapsed().as_millis() as u64,
            "tool call"
        );
        ToolOutput {
            content: truncate_middle(&content, self.policy.output_max),
            ok,
        }
    }

    fn parallel_safe(&self, name: &str) -> bool {
        match self.tools.get(name) {
            Some(tool) => tool.read_only(),
            None => self
                .mcp
                .as_ref()
                .and_then(|mcp| mcp.tool(name))
                .is_some_and(|tool| tool.read_only),
        }
    }
}

/// `text` cut to about `max` bytes: its head and tail, on UTF-8 boundaries,
/// around a line saying how much was cut. Text within `max` is returned as is.
pub fn truncate_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(80) / 2;
    let mut head = keep.min(text.len());
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - keep.min(text.len());
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    let cut = tail - head;
    format!(
        "{}\n[… {cut} bytes cut of {} …]\n{}",
        &text[..head],
        text.len(),
        &text[tail..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(&'static str, ToolGroup);

    #[async_trait]
    impl Tool for Echo {
        fn name(&self) -> &'static str {
            self.0
        }
        fn group(&self) -> ToolGroup {
            self.1
        }
        fn description(&self) -> &'static str {
            "echo"
        }
        fn parameters(&self) -> serde_json::Value {
            serde_json::json!({"type": "object"})
        }
        async fn call(
            &self,
            _: &ToolContext,
            arguments: serde_json::Value,
        ) -> Result<String, AgentError> {
            match arguments.get("fail") {
                Some(_) => Err(AgentError::tool("boom", "it failed")),
                None => Ok(arguments["text"].as_str().unwrap_or("").to_owned()),
            }
        }
    }

    fn registry(policy: ToolPolicy) -> Result<ToolRegistry, AgentError> {
        ToolRegistry::new(
            vec![
                Arc::new(Echo("read", ToolGroup::Fs)),
                Arc::new(Echo("exec", ToolGroup::Exec)),
            ],
            policy,
        )
    }

    fn call(name: &str, arguments: serde_json::Value) -> ToolCall {
        ToolCall {
            id: "1".into(),
            name: name.into(),
            arguments,
        }
    }

    #[tokio::test]
    async fn policy_filters_and_refuses() {
        let tools = registry(ToolPolicy {
            deny: vec!["exec".into()],
            output_max: 1024,
            ..ToolPolicy::default()
        })
        .unwrap();
        assert_eq!(tools.names(), ["read"]);
        let refused = tools.call(None, &call("exec", serde_json::json!({}))).await;
        assert!(!refused.ok);
        assert!(refused.content.starts_with("error [not_allowed]"));
        let failed = tools
            .call(None, &call("read", serde_json::json!({"fail": true})))
            .await;
        assert_eq!(failed.content, "error [boom]: it failed");
        let long = tools
            .call(
                Some("s"),
                &call("read", serde_json::json!({"text": "é".repeat(5000)})),
            )
            .await;
        assert!(long.ok);
        assert!(long.content.len() <= 1024, "{}", long.content.len());
        assert!(long.content.contains("bytes cut of 10000"));

        let typo = registry(ToolPolicy {
            allow: Some(vec!["reed".into()]),
            ..ToolPolicy::default()
        });
        assert!(typo.unwrap_err().to_string().contains("reed"));
    }

    #[test]
    fn truncation_keeps_head_and_tail_on_char_boundaries() {
        let text = format!("{}{}", "α".repeat(300), "ω".repeat(300));
        let cut = truncate_middle(&text, 400);
        assert!(cut.starts_with('α') && cut.ends_with('ω'));
        assert!(cut.len() <= 400);
        assert_eq!(truncate_middle("short", 400), "short");
    }
}
