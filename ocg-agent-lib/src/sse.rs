//! A Server-Sent Events decoder: bytes in, `data` payloads out.

/// Splits an SSE byte stream into the `data` of each event. Comments and
/// other fields (`event`, `id`, `retry`) are skipped; multi-line data is
/// joined with `\n`; a partial event stays buffered until it completes.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buffer: String,
}

impl SseDecoder {
    /// Feed bytes; returns the data of every event completed by them.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        if self.buffer.contains('\r') {
            self.buffer = self.buffer.replace("\r\n", "\n");
        }
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let data: Vec<&str> = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                events.push(data.join("\n"));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_split_and_multiline_events() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.feed(b": comment\n\ndata: {\"a\"").is_empty());
        assert_eq!(
            decoder.feed(b":1}\n\nevent: x\ndata: l1\ndata: l2\n\n"),
            vec!["{\"a\":1}".to_string(), "l1\nl2".to_string()]
        );
        assert_eq!(
            decoder.feed(b"data: crlf\r\n\r\n"),
            vec!["crlf".to_string()]
        );
    }
}
