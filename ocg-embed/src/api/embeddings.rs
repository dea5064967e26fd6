//! The embedding routes: `/embed`, the OpenAI-compatible `/v1/embeddings`
//! and `/info`.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmbedBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    texts: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
}

pub(super) async fn embed(
    State(engine): State<EmbeddingApi>,
    ApiJson(body): ApiJson<EmbedBody>,
) -> Result<Json<Value>, EmbedError> {
    let texts = match (body.text, body.texts) {
        (Some(text), None) => vec![text],
        (None, Some(texts)) => texts,
        _ => {
            return Err(EmbedError::invalid(
                "invalid_input",
                "send either \"text\" or \"texts\"",
            ));
        }
    };
    check_texts(&texts, &engine.limits)?;
    let (vectors, model) = engine.embed(texts).await?;
    let dimension = vectors.first().map_or(0, Vec::len);
    Ok(Json(
        json!({ "vectors": vectors, "dimension": dimension, "model": model }),
    ))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OpenAiInput {
    One(String),
    Many(Vec<String>),
    Tokens(#[allow(dead_code)] Vec<Value>),
}

#[derive(Deserialize)]
pub(super) struct OpenAiBody {
    input: OpenAiInput,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

pub(super) async fn openai_embeddings(
    State(engine): State<EmbeddingApi>,
    ApiJson(body): ApiJson<OpenAiBody>,
) -> Result<Json<Value>, EmbedError> {
    let texts = match body.input {
        OpenAiInput::One(text) => vec![text],
        OpenAiInput::Many(texts) => texts,
        OpenAiInput::Tokens(_) => {
            return Err(EmbedError::invalid(
                "invalid_input",
                "token arrays are not supported; send text",
            ));
        }
    };
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(EmbedError::invalid(
                "invalid_input",
                format!("encoding_format {other:?} is not float or base64"),
            ));
        }
    };
    check_texts(&texts, &engine.limits)?;
    // Token counts are estimated (words + 2 special tokens): the embedder
    // contract returns vectors only.
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count() + 2).sum();
    let (vectors, model) = engine.embed(texts).await?;
    if let Some(dimensions) = body.dimensions
        && vectors.first().is_some_and(|v| v.len() != dimensions)
    {
        return Err(EmbedError::invalid(
            "invalid_input",
            format!(
                "this model makes {}-dimensional vectors, not {dimensions}",
                vectors.first().map_or(0, Vec::len)
            ),
        ));
    }
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": body.model.unwrap_or(model),
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })))
}

pub(super) async fn info(State(engine): State<EmbeddingApi>) -> Json<Value> {
    let store = engine.store.clone();
    let collections = tokio::task::spawn_blocking(move || store.list())
        .await
        .unwrap_or_default();
    let (model, dimension, error) = match engine.embedder.info().await {
        Ok(info) => (Some(info.model), Some(info.dimension), None),
        Err(error) => (None, None, Some(error.to_string())),
    };
    Json(json!({
        "model": model,
        "dimension": dimension,
        "embedder_error": error,
        "llama": engine.llama.as_ref().map(LlamaEmbedder::status),
        "index": {
            "faiss": crate::index::FaissLibrary::loaded(),
            "metric": "cosine",
            "kinds": { "flat": format!("below {} items", engine.hnsw.threshold), "hnsw": format!("from {} items", engine.hnsw.threshold) },
            "hnsw_threshold": engine.hnsw.threshold,
            "hnsw_m": engine.hnsw.m,
            "hnsw_ef_construction": engine.hnsw.ef_construction,
            "hnsw_ef_search": engine.hnsw.ef_search,
        },
        "limits": {
            "max_batch": engine.limits.max_batch,
            "max_body_bytes": engine.limits.max_body_bytes,
            "max_top_k": engine.limits.max_top_k,
        },
        "collections": collections,
    }))
}
