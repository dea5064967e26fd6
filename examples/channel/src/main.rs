//! Run with: cargo run -p example-channel
//!
//! (or `printf 'hello\n/help\n/new\n' | cargo run -p example-channel`)
//!
//! A complete, minimal [`Channel`]: the terminal as a chat platform. Each
//! line typed is a message in the chat `terminal`; replies are printed. The
//! gateway's [`ChannelBridge`] does everything that is not platform work
//! (the agent session `terminal:me`, `/help`, `/new`, typing notices, short
//! error messages), so a channel only moves messages in and out:
//!
//! - `run` reads the platform and hands each message to the handler. One
//!   chat here, so awaiting the handler keeps order; a multi-chat channel
//!   runs one queue per chat (see `ocg-gateway-lib`'s Telegram channel).
//! - `send` delivers, splitting at the platform's limit.
//! - `typing`, `capabilities` and `status` say what the platform offers.
//!
//! The agent is `ocg-core`'s scripted fake (it echoes); in the gateway it is
//! the real agent behind its socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ocg_core::testing::ScriptedAgent;
use ocg_core::{
    Channel, ChannelCapabilities, ChannelState, ChannelStatus, ChatTarget, Error, InboundHandler,
    IncomingMessage, OutgoingMessage, Result, SentMessage,
};
use ocg_gateway_lib::channels::ChannelBridge;

/// Longest line this "platform" shows.
const LIMIT: usize = 200;

/// The terminal as a chat: stdin in, stdout out.
#[derive(Debug, Default)]
struct TerminalChannel {
    state: Mutex<Option<ChannelState>>,
    received: AtomicU64,
    sent: AtomicU64,
}

#[async_trait]
impl Channel for TerminalChannel {
    fn name(&self) -> &str {
        "terminal"
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_message_chars: LIMIT,
            typing_refresh_ms: None,
            edit: false,
            threads: false,
        }
    }

    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()> {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(ChannelState::Connected);
        // Blocking stdin on its own thread; lines come over a channel.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines().map_while(std::io::Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut number = 0u64;
        while let Some(line) = rx.recv().await {
            if line.trim().is_empty() {
                continue;
            }
            number += 1;
            self.received.fetch_add(1, Ordering::Relaxed);
            let mut message = IncomingMessage::text("terminal", "me", "me", line);
            message.message_id = number.to_string();
            // One chat: awaiting keeps its messages in order. When this
            // returns the reply was sent, so the message counts as answered.
            handler.handle(message).await;
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(ChannelState::Stopped);
        Ok(()) // end of input: the "platform" closed for good
    }

    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        if message.text.trim().is_empty() {
            return Err(Error::InvalidInput("empty message".into()));
        }
        // Split on character boundaries at the platform's limit.
        let chars: Vec<char> = message.text.chars().collect();
        let mut ids = Vec::new();
        for piece in chars.chunks(LIMIT) {
            let id = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
            println!("bot> {}", piece.iter().collect::<String>());
            ids.push(id.to_string());
        }
        Ok(SentMessage { message_ids: ids })
    }

    async fn typing(&self, _target: &ChatTarget) -> Result<()> {
        println!("bot is typing…");
        Ok(())
    }

    fn status(&self) -> ChannelStatus {
        ChannelStatus {
            name: "terminal".into(),
            state: self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_default(),
            mode: Some("stdin".into()),
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            ..ChannelStatus::default()
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("Type a message (or /help, /new); Ctrl-D ends.");
    let channel = Arc::new(TerminalChannel::default());
    let bridge = Arc::new(ChannelBridge::new(
        Arc::new(ScriptedAgent::new()),
        channel.clone(),
    ));
    bridge.run().await?;
    let status = channel.status();
    println!(
        "channel {}: {} received, {} sent",
        status.name, status.received, status.sent
    );
    Ok(())
}
