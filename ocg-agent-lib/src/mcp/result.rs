//! A `tools/call` result as the text a model reads.

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

/// The result's content as text: text blocks as they are, one per line;
/// images, audio and binary resources as a short note of what they were
/// (the model gets no bytes it cannot read); the structured content as JSON
/// when there is no text.
pub fn render(result: &CallToolResult) -> String {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Image(image) => format!(
                "[image {}, {} bytes base64]",
                image.mime_type,
                image.data.len()
            ),
            ContentBlock::Audio(audio) => format!(
                "[audio {}, {} bytes base64]",
                audio.mime_type,
                audio.data.len()
            ),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    format!("[resource {uri}]\n{text}")
                }
                ResourceContents::BlobResourceContents {
                    uri,
                    mime_type,
                    blob,
                    ..
                } => format!(
                    "[resource {uri}, {}, {} bytes base64]",
                    mime_type.as_deref().unwrap_or("binary"),
                    blob.len()
                ),
                _ => "[a resource of a kind OCG does not read]".to_owned(),
            },
            ContentBlock::ResourceLink(link) => format!("[resource link {}]", link.uri),
            _ => "[content of a kind OCG does not read]".to_owned(),
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_kept_and_bytes_are_described() {
        let result: CallToolResult = serde_json::from_value(serde_json::json!({
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "image", "data": "aGk=", "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "file:///a", "text": "body"}}
            ]
        }))
        .unwrap();
        assert_eq!(
            render(&result),
            "hello\n[image image/png, 4 bytes base64]\n[resource file:///a]\nbody"
        );
        let structured: CallToolResult = serde_json::from_value(serde_json::json!({
            "content": [], "structuredContent": {"sum": 3}
        }))
        .unwrap();
        assert_eq!(render(&structured), r#"{"sum":3}"#);
    }
}
