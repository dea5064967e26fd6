//! Run with: cargo run -p example-embedding-service
//!
//! Serve the embedding service's router on a free port, announce its address in
//! a file, and reach it with `EmbeddingClient` through that file, the way the
//! agent finds the service.

use std::sync::Arc;

use ocg_embed::service::{self, EmbeddingState};
use ocg_embed::{AddressFile, EmbeddingClient, EmbeddingEndpoint};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = AddressFile::new(
        std::env::temp_dir().join(format!("ocg-example-{}.addr", std::process::id())),
    );
    let listener = service::bind_first_free([127, 0, 0, 1].into(), 50000, 60000).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let address = address.clone();
        tokio::spawn(async move {
            let router = service::router(Arc::new(EmbeddingState::new()));
            service::serve(listener, router, &address, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    while address.read().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    println!("announced: {}", address.read().unwrap_or_default());

    let client = EmbeddingClient::new(EmbeddingEndpoint::Announced(address.clone()));
    let health = client.health().await?;
    println!("health: {:?}, version {}", health.status, health.version);

    let _ = stop.send(());
    server.await??;
    println!("address withdrawn: {}", address.read().is_none());
    Ok(())
}
