//! Run with: cargo run -p example-agent-socket -- "What is the capital of France?"
//!
//! An application embedding the agent: the runtime answers in process, with
//! no socket, using the provider the config selects (the local SmolLM2 model
//! after `scripts/setup-llama.sh`, or OPENAI_API_KEY / ANTHROPIC_API_KEY).
//! Then the same runtime is served on a private Unix socket and reached
//! through `AgentClient`, which implements the same `Agent` trait.

use std::sync::Arc;
use std::time::Duration;

use ocg_agent_lib::server::{self, AgentSocket};
use ocg_agent_lib::sessions::SqliteSessionStore;
use ocg_agent_lib::settings::AgentSettings;
use ocg_agent_lib::{AgentClient, AgentRuntime, NoTools};
use ocg_core::config::{Config, Sources};
use ocg_core::{Agent, ChatRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Say hello in five words.".into());
    let config = Config::load(&Sources::from_process_env())?;
    let settings = AgentSettings::from_config(&config)?;
    let provider = settings.build_provider()?;
    let runtime = AgentRuntime::new(
        provider.clone(),
        Arc::new(SqliteSessionStore::in_memory()?),
        Arc::new(NoTools),
        None,
        settings.runtime,
    );
    // A local model needs a moment to load.
    for _ in 0..120 {
        if provider.check().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Err(why) = provider.check().await {
        anyhow::bail!("the model is not available: {why}");
    }

    let agent: Arc<dyn Agent> = Arc::new(runtime.clone());
    let reply = agent.chat(ChatRequest::user("example:1", question)).await?;
    println!("in process: {}", reply.message.content.trim());

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.sock");
    let socket = AgentSocket::bind(&path).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(socket.serve(server::router(runtime), async {
        let _ = stopped.await;
    }));
    let client: Arc<dyn Agent> = Arc::new(AgentClient::new(&path)?);
    println!(
        "over {}: {:?}",
        path.display(),
        client.health().await.status
    );
    let _ = stop.send(());
    serving.await??;
    Ok(())
}
