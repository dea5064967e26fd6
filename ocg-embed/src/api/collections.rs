//! The collection routes: create, drop, upsert, list, get, delete,
//! re-index and search.

use super::*;

pub(super) async fn list_collections(
    State(engine): State<EmbeddingApi>,
) -> Result<Json<Value>, EmbedError> {
    let store = engine.store.clone();
    let collections = blocking(move || Ok(store.list())).await?;
    Ok(Json(json!({ "collections": collections })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    #[serde(default)]
    dimension: Option<usize>,
}

pub(super) async fn create_collection(
    State(engine): State<EmbeddingApi>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), EmbedError> {
    let body: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| EmbedError::invalid("invalid_json", format!("bad request body: {e}")))?
    };
    check_collection_name(&name)?;
    let dimension = match body.dimension {
        Some(dimension) => dimension,
        None => {
            engine
                .embedder
                .info()
                .await
                .map_err(EmbedError::from)?
                .dimension
        }
    };
    let store = engine.store.clone();
    let name2 = name.clone();
    let created = blocking(move || store.create(&name2, dimension)).await?;
    let (dimension, _) = engine
        .store
        .describe(&name)
        .ok_or_else(|| EmbedError::UnknownCollection(name.clone()))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "name": name, "dimension": dimension, "created": created })),
    ))
}

pub(super) async fn drop_collection(
    State(engine): State<EmbeddingApi>,
    Path(name): Path<String>,
) -> Result<Json<Value>, EmbedError> {
    let store = engine.store.clone();
    let name2 = name.clone();
    blocking(move || store.drop_collection(&name2)).await?;
    Ok(Json(json!({ "dropped": name })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpsertBody {
    items: Vec<VectorItem>,
}

pub(super) async fn upsert(
    State(engine): State<EmbeddingApi>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpsertBody>,
) -> Result<Json<Value>, EmbedError> {
    check_collection_name(&name)?;
    let mut items = body.items;
    if items.is_empty() {
        return Err(EmbedError::invalid("empty_batch", "no items to upsert"));
    }
    if items.len() > engine.limits.max_batch {
        return Err(EmbedError::invalid(
            "batch_too_large",
            format!(
                "{} items in one request; the limit is {} (OCG_EMBED_MAX_BATCH)",
                items.len(),
                engine.limits.max_batch
            ),
        ));
    }
    let mut to_embed = Vec::new();
    for (index, item) in items.iter_mut().enumerate() {
        check_id(&item.id)?;
        if let Some(text) = &item.text
            && text.trim().is_empty()
        {
            return Err(EmbedError::invalid(
                "empty_text",
                format!("item {:?} has an empty text", item.id),
            ));
        }
        match &mut item.vector {
            Some(vector) => check_vector(&format!("item {:?}", item.id), vector)?,
            None if item.text.is_some() => to_embed.push(index),
            None => {
                return Err(EmbedError::invalid(
                    "invalid_input",
                    format!("item {:?} has neither text nor vector", item.id),
                ));
            }
        }
    }
    let stored = describe(&engine, &name).await?;
    let mut models = vec![None; items.len()];
    if !to_embed.is_empty() {
        let texts: Vec<String> = to_embed
            .iter()
            .filter_map(|&i| items[i].text.clone())
            .collect();
        let (vectors, model) = engine.embed(texts).await?;
        let dimension = vectors.first().map_or(0, Vec::len);
        check_model(&name, stored.clone(), dimension, &model)?;
        for (&i, vector) in to_embed.iter().zip(vectors) {
            items[i].vector = Some(vector);
            models[i] = Some(model.clone());
        }
    }
    let dimension = match &stored {
        Some((dimension, _)) => *dimension,
        None => items
            .first()
            .and_then(|i| i.vector.as_ref())
            .map_or(0, Vec::len),
    };
    if let Some(bad) = items
        .iter()
        .find(|i| i.vector.as_ref().map_or(0, Vec::len) != dimension)
    {
        return Err(EmbedError::invalid(
            "wrong_dimension",
            format!(
                "item {:?} has {} components; collection {name:?} holds {dimension}",
                bad.id,
                bad.vector.as_ref().map_or(0, Vec::len)
            ),
        ));
    }
    let prepared: Vec<PreparedItem> = items
        .into_iter()
        .zip(models)
        .map(|(item, model)| PreparedItem {
            id: item.id,
            text: item.text,
            vector: item.vector.unwrap_or_default(),
            metadata: item.metadata,
            model,
        })
        .collect();
    let ids: Vec<String> = prepared.iter().map(|i| i.id.clone()).collect();
    let store = engine.store.clone();
    let name2 = name.clone();
    let count = blocking(move || {
        if stored.is_none() {
            store.create(&name2, dimension)?;
        }
        store.upsert(&name2, prepared)
    })
    .await?;
    Ok(Json(
        json!({ "collection": name, "upserted": count, "ids": ids }),
    ))
}

/// Largest page of `GET /collections/{name}/items`.
pub const MAX_LIST_LIMIT: usize = 500;

/// Page size of `GET /collections/{name}/items` without `limit`.
pub const DEFAULT_LIST_LIMIT: usize = 50;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    offset: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

pub(super) async fn list_items(
    State(engine): State<EmbeddingApi>,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, EmbedError> {
    let offset = match query.offset.as_deref() {
        None | Some("") => 0,
        Some(text) => text.parse::<u64>().map_err(|_| {
            EmbedError::invalid(
                "invalid_offset",
                format!("offset must be a whole number from 0, not {text:?}"),
            )
        })?,
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => DEFAULT_LIST_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIST_LIMIT).contains(l))
            .ok_or_else(|| {
                EmbedError::invalid(
                    "invalid_limit",
                    format!("limit must be from 1 to {MAX_LIST_LIMIT}, not {text:?}"),
                )
            })?,
    };
    let store = engine.store.clone();
    let (items, total) = blocking(move || store.list_items(&name, offset, limit)).await?;
    Ok(Json(json!({ "items": items, "total": total })))
}

#[derive(Deserialize)]
pub(super) struct GetQuery {
    #[serde(default)]
    vector: bool,
}

pub(super) async fn get_item(
    State(engine): State<EmbeddingApi>,
    Path((name, id)): Path<(String, String)>,
    Query(query): Query<GetQuery>,
) -> Result<Json<Value>, EmbedError> {
    let store = engine.store.clone();
    let item = blocking(move || store.get(&name, &id, query.vector)).await?;
    Ok(Json(json!(item)))
}

pub(super) async fn delete_item(
    State(engine): State<EmbeddingApi>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>, EmbedError> {
    let store = engine.store.clone();
    let deleted = blocking(move || store.delete(&name, &[id])).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteBody {
    ids: Vec<String>,
}

pub(super) async fn delete_items(
    State(engine): State<EmbeddingApi>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<DeleteBody>,
) -> Result<Json<Value>, EmbedError> {
    if body.ids.is_empty() {
        return Err(EmbedError::invalid("empty_batch", "no ids to delete"));
    }
    if body.ids.len() > engine.limits.max_batch {
        return Err(EmbedError::invalid(
            "batch_too_large",
            format!(
                "{} ids in one request; the limit is {} (OCG_EMBED_MAX_BATCH)",
                body.ids.len(),
                engine.limits.max_batch
            ),
        ));
    }
    let store = engine.store.clone();
    let deleted = blocking(move || store.delete(&name, &body.ids)).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

pub(super) async fn reindex(
    State(engine): State<EmbeddingApi>,
    Path(name): Path<String>,
) -> Result<Json<Value>, EmbedError> {
    let count = engine.reindex(&name).await?;
    let info = engine.embedder.info().await?;
    Ok(Json(
        json!({ "collection": name, "reindexed": count, "model": info.model, "dimension": info.dimension }),
    ))
}

pub(super) async fn search(
    State(engine): State<EmbeddingApi>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<Value>, EmbedError> {
    let name = request.collection;
    if request.top_k == 0 || request.top_k > engine.limits.max_top_k {
        return Err(EmbedError::invalid(
            "invalid_top_k",
            format!(
                "top_k must be from 1 to {} (OCG_EMBED_MAX_TOP_K), not {}",
                engine.limits.max_top_k, request.top_k
            ),
        ));
    }
    if request.min_score.is_some_and(|s| !s.is_finite()) {
        return Err(EmbedError::invalid(
            "invalid_input",
            "min_score must be a finite number",
        ));
    }
    let stored = describe(&engine, &name)
        .await?
        .ok_or_else(|| EmbedError::UnknownCollection(name.clone()))?;
    let (query, keywords) = match request.query {
        SearchQuery::Vector(_) if request.hybrid => {
            return Err(EmbedError::invalid(
                "invalid_input",
                "hybrid search needs a text query (its words are the keywords)",
            ));
        }
        SearchQuery::Vector(mut vector) => {
            check_vector("the query", &mut vector)?;
            (vector, None)
        }
        SearchQuery::Text(text) => {
            if text.trim().is_empty() {
                return Err(EmbedError::invalid(
                    "empty_text",
                    "the query text is empty or only whitespace",
                ));
            }
            let keywords = request.hybrid.then(|| text.clone());
            let (mut vectors, model) = engine.embed(vec![text]).await?;
            let vector = vectors.pop().unwrap_or_default();
            check_model(&name, Some(stored), vector.len(), &model)?;
            (vector, keywords)
        }
    };
    let store = engine.store.clone();
    let (top_k, min_score, filter) = (request.top_k, request.min_score, request.filter);
    let hits = blocking(move || match keywords {
        Some(text) => store.hybrid_search(&name, &query, &text, top_k, min_score, &filter),
        None => store.search(&name, &query, top_k, min_score, &filter),
    })
    .await?;
    Ok(Json(json!({ "hits": hits })))
}
