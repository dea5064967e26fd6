//! The chat WebSocket: any sequence of client frames, signed in or not, gets
//! JSON answers only, and the connection ends when the client goes.
#![no_main]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Message;
use libfuzzer_sys::fuzz_target;
use ocg_core::testing::ScriptedAgent;
use ocg_gateway_lib::auth::Auth;
use ocg_gateway_lib::ws::{WsLimits, serve_connection};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    // Frames are separated by 0xFF; one starting with 0xFE is binary.
    let frames: Vec<Result<Message, axum::Error>> = body
        .split(|&b| b == 0xFF)
        .map(|frame| match frame.split_first() {
            Some((0xFE, rest)) => Ok(Message::Binary(rest.to_vec().into())),
            _ => Ok(Message::Text(String::from_utf8_lossy(frame).into_owned().into())),
        })
        .collect();
    let sent = Arc::new(Mutex::new(Vec::<Message>::new()));
    let sink = {
        let sent = sent.clone();
        Box::pin(futures_util::sink::unfold((), move |(), message: Message| {
            let sent = sent.clone();
            async move {
                sent.lock().expect("the frames").push(message);
                Ok::<_, std::convert::Infallible>(())
            }
        }))
    };
    let limits = WsLimits {
        ping_every: Duration::from_secs(3600),
        idle_timeout: Duration::from_millis(50),
        auth_timeout: Duration::from_millis(50),
        max_in_flight: 4,
        queue: 16,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let served = serve_connection(
            sink,
            futures_util::stream::iter(frames),
            Arc::new(ScriptedAgent::new()),
            Arc::new(Auth::new("fuzz-token".into(), Vec::new())),
            [127, 0, 0, 1].into(),
            seed & 1 == 1,
            limits,
        );
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("the connection ends when the client goes");
    });
    for message in sent.lock().expect("the frames").iter() {
        if let Message::Text(text) = message {
            let value: serde_json::Value =
                serde_json::from_str(text.as_str()).expect("answers are JSON");
            assert!(value["type"].is_string(), "{value}");
        }
    }
});
