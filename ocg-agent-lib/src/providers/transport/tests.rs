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
