//! The crate's one Server-Sent Events decoder, for the providers' streams
//! and for [`crate::AgentClient`]'s `/v1/chat` stream.

/// The longest SSE line accepted; a longer one is a protocol error rather
/// than unbounded memory.
pub(crate) const MAX_LINE: usize = 16 << 20;

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field; empty when absent.
    pub(crate) event: String,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

/// Splits an SSE byte stream into events, per the WHATWG rules: lines
/// end in CRLF, LF or CR (each may be split across chunks), a blank line
/// dispatches, `:` starts a comment. Bytes are buffered until a line is
/// complete, so a multi-byte UTF-8 character split across network chunks
/// is decoded whole.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    line: Vec<u8>,
    after_cr: bool,
    event: String,
    data: String,
}

impl SseDecoder {
    /// Feed bytes; returns every event they complete, or an error when a
    /// line grows past the limit.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut events = Vec::new();
        while !bytes.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.line.extend_from_slice(&bytes[..end]);
                    self.after_cr = bytes[end] == b'\r';
                    bytes = &bytes[end + 1..];
                    self.end_line(&mut events);
                }
                None => {
                    self.line.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
            if self.line.len() > MAX_LINE {
                return Err(format!("an SSE line is longer than {MAX_LINE} bytes"));
            }
        }
        Ok(events)
    }

    /// The body ended: dispatch what is buffered (lenient with servers
    /// that omit the final blank line).
    pub(crate) fn finish(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut events);
        }
        self.dispatch(&mut events);
        events
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => value.clone_into(&mut self.event),
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        events.push(SseEvent { event, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(decoder: &mut SseDecoder, input: &[u8], step: usize) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for piece in input.chunks(step) {
            events.extend(decoder.feed(piece).unwrap());
        }
        events.extend(decoder.finish());
        events
    }

    #[test]
    fn sse_decoder_handles_any_split_and_line_ending() {
        let input = "event: a\r\ndata: {\"t\":\"é€😀\"}\r\n\r\n: comment\rdata: x\rdata:y\r\rdata: [DONE]\n\n";
        let expected = vec![
            SseEvent {
                event: "a".into(),
                data: "{\"t\":\"é€😀\"}".into(),
            },
            SseEvent {
                event: String::new(),
                data: "x\ny".into(),
            },
            SseEvent {
                event: String::new(),
                data: "[DONE]".into(),
            },
        ];
        for step in 1..=input.len() {
            let mut decoder = SseDecoder::default();
            assert_eq!(
                feed_all(&mut decoder, input.as_bytes(), step),
                expected,
                "step {step}"
            );
        }
    }

    #[test]
    fn sse_decoder_flushes_an_unterminated_last_event() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.feed(b"data: [DONE]").unwrap().is_empty());
        assert_eq!(decoder.finish()[0].data, "[DONE]");
    }

    #[test]
    fn a_character_split_across_reads_survives() {
        let mut decoder = SseDecoder::default();
        let event = "data: Привет 😀\n\n".as_bytes();
        let mut got = Vec::new();
        for chunk in event.chunks(3) {
            got.extend(decoder.feed(chunk).unwrap());
        }
        assert_eq!(got[0].data, "Привет 😀");
    }

    #[test]
    fn a_line_past_the_limit_is_an_error_not_unbounded_memory() {
        let mut decoder = SseDecoder::default();
        let chunk = vec![b'a'; 1 << 20];
        let mut result = Ok(Vec::new());
        for _ in 0..=(MAX_LINE >> 20) {
            result = decoder.feed(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
