//! Run with: cargo run -p example-core-fakes
//!
//! The contracts of `ocg-core` and its fakes: script an agent, embed with the
//! deterministic embedder. Code written against `Arc<dyn Agent>` and
//! `Arc<dyn Embedder>` runs unchanged against the real services.

use std::sync::Arc;

use ocg_core::testing::{DeterministicEmbedder, ScriptedAgent};
use ocg_core::{Agent, ChatEvent, ChatRequest, Embedder, Message};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agent = Arc::new(ScriptedAgent::new());
    agent.push_script(vec![
        ChatEvent::Delta {
            text: "Hello".into(),
        },
        ChatEvent::Done {
            message: Message::assistant("Hello"),
            usage: None,
            session_key: Some("example:1".into()),
        },
    ]);
    let agent: Arc<dyn Agent> = agent;
    let scripted = agent.chat(ChatRequest::user("example:1", "hi")).await?;
    let echoed = agent
        .chat(ChatRequest::user("example:1", "anything"))
        .await?;
    println!("scripted reply: {}", scripted.message.content);
    println!("echoed reply:   {}", echoed.message.content);

    let embedder: Arc<dyn Embedder> = Arc::new(DeterministicEmbedder::new(64));
    let texts = [
        "a cat on a mat",
        "the cat sat on the mat",
        "interest rates rose",
    ]
    .map(String::from);
    let vectors = embedder.embed(&texts).await?;
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    println!("similar texts:   {:.3}", cosine(&vectors[0], &vectors[1]));
    println!("unrelated texts: {:.3}", cosine(&vectors[0], &vectors[2]));
    Ok(())
}
