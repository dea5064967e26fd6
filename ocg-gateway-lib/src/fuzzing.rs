//! Entry points for the fuzz targets in `fuzz/`: the parsers that take
//! outside input and are not public. Compiled only under `--cfg fuzzing`,
//! which `cargo fuzz` sets; nothing here is part of the API.

/// A Telegram update's id and the message it brings, as the channel's
/// dispatcher sees them; `None` for anything it ignores.
pub fn telegram_update(body: &[u8]) -> Option<(i64, ocg_core::IncomingMessage)> {
    crate::telegram::fuzzing::update(body)
}

/// The Telegram HTML pieces an answer `text` is sent as.
pub fn telegram_answer(text: &str) -> Vec<String> {
    crate::telegram::fuzzing::answer(text)
}
