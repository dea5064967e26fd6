use super::*;

#[test]
fn retry_after_forms() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    };
    assert_eq!(
        retry_after(&headers(&[("retry-after", "2")]), now),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        retry_after(
            &headers(&[("retry-after", "2"), ("retry-after-ms", "150")]),
            now
        ),
        Some(Duration::from_millis(150))
    );
    assert_eq!(
        retry_after(
            &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]),
            now
        ),
        Some(Duration::from_secs(10))
    );
    assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
    assert_eq!(retry_after(&headers(&[]), now), None);
}

#[test]
fn http_dates() {
    assert_eq!(
        http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(
        http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
        Some(1_835_438_400)
    );
    assert_eq!(http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
}

#[test]
fn arguments_parsing() {
    assert_eq!(parse_arguments(String::new()), serde_json::json!({}));
    assert_eq!(
        parse_arguments("{\"a\":1}".into()),
        serde_json::json!({"a":1})
    );
    assert_eq!(
        parse_arguments("{\"a\":".into()),
        Value::String("{\"a\":".into())
    );
}

#[test]
fn a_tool_list_is_serialized_once_per_list() {
    let endpoint = Endpoint::new(
        "test".into(),
        "m".into(),
        ("http://127.0.0.1:9/v1", "chat"),
        HeaderMap::new(),
        Duration::from_secs(1),
        None,
    )
    .unwrap();
    let spec = |name: &str| ToolSpec {
        name: name.into(),
        description: "d".into(),
        parameters: serde_json::json!({"type": "object"}),
    };
    let renders = std::cell::Cell::new(0);
    let render = |list: &[ToolSpec]| {
        renders.set(renders.get() + 1);
        serde_json::value::to_raw_value(&list.iter().map(|t| &t.name).collect::<Vec<_>>())
    };
    let list: Arc<[ToolSpec]> = Arc::new([spec("a"), spec("b")]);
    let first = endpoint.tools_json(&list, render).unwrap().unwrap();
    let again = endpoint.tools_json(&list.clone(), render).unwrap().unwrap();
    assert_eq!(first.get(), r#"["a","b"]"#);
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(renders.get(), 1);
    // Another list (a changed tool set) is rendered anew.
    let other: Arc<[ToolSpec]> = Arc::new([spec("c")]);
    assert_eq!(
        endpoint.tools_json(&other, render).unwrap().unwrap().get(),
        r#"["c"]"#
    );
    assert_eq!(renders.get(), 2);
    // No tools: no `tools` field at all.
    let none: Arc<[ToolSpec]> = Arc::new([]);
    assert!(endpoint.tools_json(&none, render).unwrap().is_none());
}
