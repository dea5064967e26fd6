//! A Server-Sent Events decoder: bytes in, `data` payloads out.

/// Splits an SSE byte stream into the `data` of each event. Comments and
/// other fields (`event`, `id`, `retry`) are skipped; multi-line data is
/// joined with `\n`; a partial event stays buffered until it completes.
///
/// Bytes are buffered as bytes and decoded per complete event: a network
/// read may end inside a multi-byte character, and an event boundary
/// (`\n\n`, ASCII) never does.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buffer: Vec<u8>,
}

impl SseDecoder {
    /// Feed bytes; returns the data of every event completed by them.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, separator)) = boundary(&self.buffer) {
            let block: Vec<u8> = self.buffer.drain(..end + separator).collect();
            let block = String::from_utf8_lossy(&block[..end]);
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

/// The first event boundary: its start and length (`\n\n` or `\r\n\r\n`).
fn boundary(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
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

    #[test]
    fn a_character_split_across_reads_survives() {
        let mut decoder = SseDecoder::default();
        let event = "data: Привет 😀\n\n".as_bytes();
        let mut got = Vec::new();
        for chunk in event.chunks(3) {
            got.extend(decoder.feed(chunk));
        }
        assert_eq!(got, vec!["Привет 😀".to_string()]);
    }
}
