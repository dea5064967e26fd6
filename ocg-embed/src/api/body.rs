//! Request bodies and the checks every handler shares: the JSON extractor
//! whose rejections are the service's errors, and the checks of texts,
//! vectors, ids, collection names and models.

use super::*;

/// JSON body whose every rejection is one of our errors.
pub(super) struct ApiJson<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = EmbedError;

    async fn from_request(request: Request, state: &S) -> Result<Self, EmbedError> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection: BytesRejection| {
                    let (_, code) = ocg_core::body::rejection(rejection.status().as_u16());
                    if code == ocg_core::body::PAYLOAD_TOO_LARGE {
                        EmbedError::invalid(
                            code,
                            "the request body is over the size limit (OCG_EMBED_MAX_BODY_BYTES)",
                        )
                    } else {
                        EmbedError::invalid(code, rejection.body_text())
                    }
                })?;
        let invalid = ocg_core::body::INVALID_JSON;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(EmbedError::invalid(invalid, "the body is not UTF-8"));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| EmbedError::invalid(invalid, format!("bad request body: {e}")))
    }
}

pub(super) fn check_texts(texts: &[String], limits: &Limits) -> Result<(), EmbedError> {
    if texts.is_empty() {
        return Err(EmbedError::invalid("empty_batch", "no texts to embed"));
    }
    if texts.len() > limits.max_batch {
        return Err(EmbedError::invalid(
            "batch_too_large",
            format!(
                "{} texts in one request; the limit is {} (OCG_EMBED_MAX_BATCH)",
                texts.len(),
                limits.max_batch
            ),
        ));
    }
    if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(EmbedError::invalid(
            "empty_text",
            format!("text {index} is empty or only whitespace"),
        ));
    }
    Ok(())
}

pub(super) fn check_vector(what: &str, vector: &mut [f32]) -> Result<(), EmbedError> {
    if vector.is_empty() {
        return Err(EmbedError::invalid(
            "invalid_vector",
            format!("{what} has an empty vector"),
        ));
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(EmbedError::invalid(
            "invalid_vector",
            format!("{what} has a NaN or infinite component"),
        ));
    }
    if !normalize(vector) {
        return Err(EmbedError::invalid(
            "invalid_vector",
            format!("{what} has a zero vector, which has no direction"),
        ));
    }
    Ok(())
}

pub(super) fn check_id(id: &str) -> Result<(), EmbedError> {
    if id.trim().is_empty() || id.len() > 512 {
        return Err(EmbedError::invalid(
            "invalid_id",
            format!("{id:?} is not an item id: use 1 to 512 bytes, not only whitespace"),
        ));
    }
    Ok(())
}

pub(super) fn check_collection_name(name: &str) -> Result<(), EmbedError> {
    if valid_collection_name(name) {
        Ok(())
    } else {
        Err(EmbedError::invalid(
            "invalid_collection",
            format!(
                "{name:?} is not a collection name: use 1 to 64 of A-Z a-z 0-9 _ - . (not starting with a dot)"
            ),
        ))
    }
}

/// The model-made vectors of `name` must match what it holds.
pub(super) fn check_model(
    name: &str,
    stored: Option<(usize, Option<String>)>,
    dimension: usize,
    model: &str,
) -> Result<(), EmbedError> {
    if let Some((stored_dimension, stored_model)) = stored {
        let other_model = stored_model.as_deref().is_some_and(|m| m != model);
        if stored_dimension != dimension || other_model {
            return Err(EmbedError::DimensionMismatch {
                collection: name.to_owned(),
                stored: stored_dimension,
                stored_model: stored_model.unwrap_or_else(|| "caller-supplied vectors".into()),
                current: dimension,
                current_model: model.to_owned(),
            });
        }
    }
    Ok(())
}
