//! Telegram updates (long polling or webhook bodies): any JSON is an update
//! to answer or ignored, and any answer text splits and formats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocg_gateway_lib::fuzzing::{telegram_answer, telegram_update};

fuzz_target!(|data: &[u8]| {
    if let Some((id, message)) = telegram_update(data) {
        let raw: serde_json::Value = serde_json::from_slice(data).expect("it parsed");
        assert_eq!(raw["update_id"].as_i64(), Some(id));
        assert!(!message.target.chat_id.is_empty());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let pieces = telegram_answer(text);
        if !text.trim().is_empty() {
            assert!(!pieces.is_empty(), "a non-empty answer is sent");
        }
    }
});
