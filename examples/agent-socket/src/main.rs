//! Run with: cargo run -p example-agent-socket
//!
//! Serve the agent's RPC router on a private Unix socket and talk to it with
//! `AgentClient`, which implements `ocg_core::Agent` over that socket.

use std::sync::Arc;

use ocg_agent_lib::AgentClient;
use ocg_agent_lib::server::{self, AgentSocket, AgentState};
use ocg_core::Agent;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.sock");
    let socket = AgentSocket::bind(&path).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(socket.serve(
        server::router(Arc::new(AgentState::new(None))),
        async {
            let _ = stopped.await;
        },
    ));

    let agent: Arc<dyn Agent> = Arc::new(AgentClient::new(&path)?);
    let health = agent.health().await;
    println!("agent health over {}: {:?}", path.display(), health.status);

    let _ = stop.send(());
    server.await??;
    println!("socket removed: {}", !path.exists());
    Ok(())
}
