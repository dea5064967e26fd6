//! Run with: cargo run -p example-gateway-in-process
//!
//! The gateway takes any `Arc<dyn Agent>`: here an agent living in the same
//! process (the scripted fake from `ocg-core`), no socket in between. The
//! example serves it on a free port and calls the OpenAI-compatible API.

use std::net::SocketAddr;
use std::sync::Arc;

use ocg_core::testing::ScriptedAgent;
use ocg_gateway_lib::GatewayState;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let token = ocg_core::config::Secret::generate()?.expose().to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr: SocketAddr = listener.local_addr()?;
    drop(listener);
    let state = GatewayState::new(Arc::new(ScriptedAgent::new()), token.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ocg_gateway_lib::serve(
        addr,
        false,
        ocg_gateway_lib::router(state),
        async {
            let _ = stopped.await;
        },
    ));

    let client = reqwest::Client::builder().no_proxy().build()?;
    let request =
        serde_json::json!({"model": "ocg", "messages": [{"role": "user", "content": "hello"}]});
    let mut attempts = 0;
    let answer: serde_json::Value = loop {
        let sent = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&request)
            .send()
            .await;
        match sent {
            Ok(response) => break response.json().await?,
            Err(_) if attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    println!(
        "POST /v1/chat/completions -> {}",
        answer["choices"][0]["message"]["content"]
    );

    let _ = stop.send(());
    server.await??;
    Ok(())
}
