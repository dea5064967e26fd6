//! Run with: cargo run -p example-gateway-in-process
//!
//! The gateway takes any `Arc<dyn Agent>`: here an agent living in the same
//! process (the scripted fake from `ocg-core`), no socket in between.

use std::net::SocketAddr;
use std::sync::Arc;

use ocg_core::testing::ScriptedAgent;
use ocg_gateway_lib::GatewayState;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let router = ocg_gateway_lib::router(GatewayState::new(Arc::new(ScriptedAgent::new())));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ocg_gateway_lib::serve(addr, false, router, async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut attempts = 0;
    let body = loop {
        match client.get(format!("http://{addr}/health")).send().await {
            Ok(response) => break response.text().await?,
            Err(_) if attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    println!("GET /health -> {body}");

    let _ = stop.send(());
    server.await??;
    Ok(())
}
