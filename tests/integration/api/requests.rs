//! Pages and cursors, bad input refused with its reason, the OpenAPI document.

use std::collections::HashSet;

use tests::api::{Auth, Req};
use tests::db::{opened, opened_with_order};

use super::{fresh_kind, City, CREW_TEAM};

/// Follows `next_cursor` from `path` (which has a `?`) with `limit` per page; every
/// item's `id`, in order.
async fn walk(city: &City, path: &str, limit: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let page_path = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let r = city.get(&page_path, "admin").await;
        assert_eq!(r.status, 200, "{page_path}: {}", r.body);
        let page = r.json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        ids.extend(items.iter().map(|i| i["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
    panic!("more than 100 pages");
}

#[tokio::test]
async fn cursors_walk_every_row_exactly_once() {
    let mut city = City::start().await;
    let (a, b) = (city.a.clone(), city.b.clone());
    // 23 outages in `a` at 5 distinct times (ties broken by id), 4 in `b`.
    let mut changes = Vec::new();
    for i in 0..23 {
        let at = format!("2026-03-01T0{}:00:00Z", i % 5);
        let device = city.device(&a, &format!("L{i}"));
        let mut change = opened_with_order(device, fresh_kind(), &at, CREW_TEAM, 3600);
        if let store::OutageChange::Open { severity, .. } = &mut change {
            *severity = ["critical", "major", "minor"][i % 3];
        }
        changes.push(change);
    }
    for i in 0..4 {
        changes.push(opened(
            city.device(&b, &format!("L{i}")),
            fresh_kind(),
            "2026-03-01T01:00:00Z",
        ));
    }
    city.store
        .detection
        .apply_outage_changes(&changes)
        .await
        .unwrap();

    let ids = |order: &'static str| {
        let client = &city.db.client;
        let a = a.clone();
        async move {
            client
                .query(
                    &format!(
                        "SELECT o.id FROM outages o JOIN devices d ON d.id = o.device_id
                         JOIN tenants t ON t.id = d.tenant_id WHERE t.slug = $1 ORDER BY {order}"
                    ),
                    &[&a],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<i64>>()
        }
    };
    let by_severity = ids(
        "array_position(ARRAY['critical','major','minor'], o.severity), o.opened_at DESC, o.id DESC",
    )
    .await;
    let newest = ids("o.opened_at DESC, o.id DESC").await;
    assert_ne!(by_severity, newest);
    let outages = walk(&city, "/api/v1/outages?state=open", 5).await;
    assert_eq!(
        outages, by_severity,
        "most severe first, then newest, each once, none of b's"
    );
    let outages = walk(&city, "/api/v1/outages?state=open&sort=newest", 5).await;
    assert_eq!(outages, newest, "newest first, each once, none of b's");
    let r = city
        .get("/api/v1/outages?sort=newest&cursor=bzA6MDox", "admin")
        .await;
    assert_eq!(r.status, 400, "a severity cursor on the newest-first list");

    let orders = walk(&city, "/api/v1/work-orders?state=new", 4).await;
    assert_eq!(orders.len(), 23);
    assert_eq!(orders.iter().collect::<HashSet<_>>().len(), 23);

    let devices = walk(&city, "/api/v1/devices?kind=light", 7).await;
    assert_eq!(devices.len(), 30);
    assert!(devices.windows(2).all(|w| w[0] < w[1]), "by id, each once");

    let one = walk(&city, "/api/v1/outages?state=open", 1000).await;
    assert_eq!(one.len(), 23, "one page when it all fits");

    let r = city
        .get("/api/v1/work-orders?cursor=bzoxOjI", "admin")
        .await;
    assert_eq!(r.status, 400, "an outage cursor on the work order list");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_reason() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let outage = city.open_outage(&a).await;
    let shelve = format!("/api/v1/outages/{outage}/shelve");
    let comment = format!("/api/v1/outages/{outage}/comment");
    let order = city.assigned_order(&a).await;
    let transition = format!("/api/v1/work-orders/{order}/transition");
    let big = format!("{{\"text\": \"{}\"}}", "x".repeat(70 * 1024));
    // (method, path, body, status, a fragment of the error)
    let cases: Vec<(&str, &str, &str, u16, &str)> = vec![
        ("POST", &comment, "{not json", 400, "not valid JSON"),
        (
            "POST",
            &comment,
            "{\"txt\": \"hi\"}",
            400,
            "unknown field `txt`",
        ),
        (
            "POST",
            &comment,
            "{\"text\": \"  \"}",
            400,
            "text must not be empty",
        ),
        ("POST", &comment, &big, 413, "larger than the 64 KiB"),
        (
            "GET",
            "/api/v1/outages?limit=5000",
            "",
            400,
            "limit must be between 1 and 1000, not 5000",
        ),
        ("GET", "/api/v1/outages?limit=ten", "", 400, "limit"),
        (
            "GET",
            "/api/v1/outages?state=flying",
            "",
            400,
            "state `flying` is not one of open, acknowledged, resolved, closed",
        ),
        (
            "GET",
            "/api/v1/outages?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
            "",
            400,
            "runs backwards",
        ),
        (
            "GET",
            "/api/v1/outages?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "",
            400,
            "at most 400 days",
        ),
        (
            "GET",
            "/api/v1/outages?from=yesterday",
            "",
            400,
            "from must be an RFC 3339 time",
        ),
        (
            "GET",
            "/api/v1/outages?cursor=nonsense",
            "",
            400,
            "cursor is not one this list gave out",
        ),
        (
            "GET",
            "/api/v1/outages?colour=red",
            "",
            400,
            "unknown field `colour`",
        ),
        (
            "GET",
            "/api/v1/devices?bbox=1,2,3",
            "",
            400,
            "bbox must be minlon,minlat,maxlon,maxlat",
        ),
        (
            "GET",
            "/api/v1/devices?bbox=10,0,5,1",
            "",
            400,
            "the minimums first",
        ),
        (
            "GET",
            "/api/v1/devices?kind=lantern",
            "",
            400,
            "kind `lantern` is not one of",
        ),
        (
            "GET",
            "/api/v1/work-orders?state=lost",
            "",
            400,
            "state `lost`",
        ),
        (
            "GET",
            "/api/v1/reports/alarms?top=0",
            "",
            400,
            "top must be between 1 and 100",
        ),
        (
            "GET",
            "/api/v1/reports/teams?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
            "",
            400,
            "runs backwards",
        ),
        (
            "POST",
            &shelve,
            "{\"until\": \"soon\", \"reason\": \"x\"}",
            400,
            "until must be an RFC 3339 time",
        ),
        (
            "POST",
            &shelve,
            "{\"until\": \"2020-01-01T00:00:00Z\", \"reason\": \"x\"}",
            400,
            "only be shelved until a later time",
        ),
        (
            "POST",
            &shelve,
            "{\"until\": \"2999-01-01T00:00:00Z\", \"reason\": \"x\"}",
            400,
            "at most 30 days",
        ),
        (
            "POST",
            &transition,
            "{\"to\": \"flying\"}",
            400,
            "to `flying` is not one of",
        ),
        (
            "POST",
            &transition,
            "{\"to\": \"closed\"}",
            409,
            "is assigned; it cannot go to closed",
        ),
        (
            "POST",
            &transition,
            "{\"to\": \"verified\"}",
            403,
            "verifies it from the asset's telemetry",
        ),
        (
            "POST",
            "/api/v1/outages/abc/ack",
            "",
            400,
            "the path is not valid",
        ),
        (
            "POST",
            "/api/v1/outages/999999/ack",
            "",
            404,
            "no outage 999999",
        ),
        (
            "GET",
            "/api/v1/nowhere",
            "",
            404,
            "there is no GET /api/v1/nowhere",
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, status, fragment) in cases {
        let req = Req {
            method,
            path,
            auth: city.tokens["admin"].clone(),
            body: (method == "POST").then_some(body),
            content_type: "application/json",
        };
        let r = city.api.call(req).await;
        let error = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if r.status != status || !error.contains(fragment) {
            failures.push(format!(
                "{method} {path}: got {} `{error}`, want {status} with `{fragment}`",
                r.status
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    let r = city
        .api
        .call(Req {
            content_type: "text/plain",
            ..Req::post(&comment, &city.tokens["admin"], "{\"text\": \"hi\"}")
        })
        .await;
    assert_eq!(r.status, 415, "{}", r.body);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let city = City::start().await;
    let r = city
        .api
        .call(Req::get("/api/v1/openapi.json", &Auth::None))
        .await;
    assert_eq!(r.status, 200, "served without signing in");
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("post", "/api/v1/login"),
        ("post", "/api/v1/logout"),
        ("get", "/api/v1/me"),
        ("get", "/api/v1/outages"),
        ("post", "/api/v1/outages/{id}/ack"),
        ("post", "/api/v1/outages/{id}/shelve"),
        ("post", "/api/v1/outages/{id}/unshelve"),
        ("post", "/api/v1/outages/bulk"),
        ("post", "/api/v1/outages/{id}/comment"),
        ("post", "/api/v1/outages/{id}/assign"),
        ("get", "/api/v1/outages/{id}"),
        ("get", "/api/v1/work-orders/{id}"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users/{username}/disable"),
        ("post", "/api/v1/users/{username}/enable"),
        ("get", "/api/v1/exports/{kind}"),
        ("get", "/api/v1/map"),
        ("get", "/api/v1/map/base"),
        ("get", "/api/v1/work-orders"),
        ("post", "/api/v1/work-orders/{id}/transition"),
        ("get", "/api/v1/reports/teams"),
        ("get", "/api/v1/reports/sla-breaches"),
        ("get", "/api/v1/reports/alarms"),
        ("get", "/api/v1/devices"),
        ("get", "/api/v1/devices/{id}"),
        ("get", "/api/v1/devices/{id}/history"),
        ("get", "/api/v1/state"),
        ("get", "/api/v1/reports/energy"),
        ("post", "/api/v1/commands"),
        ("get", "/api/v1/commands"),
        ("post", "/api/v1/commands/preview"),
        ("get", "/api/v1/commands/{id}"),
        ("get", "/api/v1/commands/{id}/devices"),
        ("get", "/api/v1/schedules"),
        ("post", "/api/v1/schedules"),
        ("delete", "/api/v1/schedules/{id}"),
        ("get", "/api/v1/events"),
        ("get", "/gtfs-rt/{tenant}/vehicle-positions.pb"),
        ("get", "/open311/v2/services.json"),
        ("get", "/open311/v2/services/{service_code}.json"),
        ("get", "/open311/v2/requests.json"),
        ("post", "/open311/v2/requests.json"),
        ("get", "/open311/v2/requests/{service_request_id}.json"),
        ("get", "/public/{tenant}/works.geojson"),
        ("get", "/public/{tenant}/works.ics"),
        ("get", "/public/{tenant}/map.geojson"),
        ("get", "/public/{tenant}/"),
        ("get", "/public/{tenant}"),
        ("post", "/public/{tenant}/subscriptions"),
        ("get", "/public/{tenant}/subscriptions/confirm"),
        ("post", "/public/{tenant}/subscriptions/confirm"),
        ("get", "/public/{tenant}/subscriptions/unsubscribe"),
        ("post", "/public/{tenant}/subscriptions/unsubscribe"),
        ("get", "/api/v1/webhooks"),
        ("post", "/api/v1/webhooks"),
        ("get", "/api/v1/webhooks/{id}"),
        ("delete", "/api/v1/webhooks/{id}"),
        ("post", "/api/v1/webhooks/{id}/enable"),
        ("get", "/api/v1/webhooks/{id}/messages"),
        ("get", "/api/v1/openapi.json"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in routes {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is missing from the document"
        );
    }
    let operations: Vec<&serde_json::Value> = paths
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .collect();
    assert_eq!(operations.len(), routes.len(), "and nothing else");
    let ids: HashSet<&str> = operations
        .iter()
        .map(|o| o["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), routes.len(), "operation ids are unique");
    // A path as the document writes it, filled in as a client generated from it would.
    let definition = paths
        .keys()
        .find(|p| p.starts_with("/open311/v2/services/"))
        .unwrap()
        .replace("{service_code}", "streetlight_out");
    let r = city.api.call(Req::get(&definition, &Auth::None)).await;
    assert_eq!(r.status, 200, "{definition}: {}", r.body);
    assert_eq!(r.json()["service_code"], "streetlight_out");
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes["session"].is_object() && schemes["token"].is_object());
}

#[tokio::test]
async fn nul_characters_and_cursors_out_of_time_are_refused_at_the_edge() {
    use base64::Engine;
    let mut city = City::start().await;
    let a = city.a.clone();
    let outage = city.open_outage(&a).await;
    let shelve = format!("/api/v1/outages/{outage}/shelve");
    let comment = format!("/api/v1/outages/{outage}/comment");
    let until = (chrono::Utc::now() + chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let shelve_body = format!(r#"{{"until": "{until}", "reason": "storm\u0000"}}"#);
    let cursor = |tag: &str, micros: i64| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{tag}:{micros}:1"))
    };
    let far_past = format!(
        "/api/v1/outages?cursor={}",
        cursor("o", -8_000_000_000_000_000_000)
    );
    let far_future = format!(
        "/api/v1/work-orders?cursor={}",
        cursor("w", 8_000_000_000_000_000_000)
    );
    let form = "application/x-www-form-urlencoded";
    let key = match &city.tokens["viewer"] {
        tests::api::Auth::Token(t) => t.clone(),
        _ => unreachable!(),
    };
    let open311_post = format!(
        "jurisdiction_id={a}&service_code=streetlight_out&lat=38.71002&long=-9.13998&description=dark%00&api_key={key}"
    );
    // (method, path, content type, body, a fragment of the error)
    let cases: Vec<(&str, String, &str, Option<&str>, &str)> = vec![
        (
            "POST",
            "/api/v1/login".into(),
            "application/json",
            Some(r#"{"username": "ad\u0000min", "password": "whatever it is"}"#),
            "the body holds a NUL character",
        ),
        (
            "POST",
            comment.clone(),
            "application/json",
            Some(r#"{"text": "a\u0000b"}"#),
            "the body holds a NUL character",
        ),
        (
            "POST",
            shelve.clone(),
            "application/json",
            Some(&shelve_body),
            "the body holds a NUL character",
        ),
        (
            "POST",
            "/api/v1/users/a%00b/disable".into(),
            "application/json",
            Some("{}"),
            "the path holds a NUL character",
        ),
        (
            "GET",
            "/api/v1/devices?district=a%00".into(),
            "application/json",
            None,
            "the query string holds a NUL character",
        ),
        (
            "GET",
            far_past,
            "application/json",
            None,
            "cursor is not one this list gave out",
        ),
        (
            "GET",
            far_future,
            "application/json",
            None,
            "cursor is not one this list gave out",
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, content_type, body, fragment) in &cases {
        let r = city
            .api
            .call(Req {
                method,
                path,
                auth: city.tokens["admin"].clone(),
                body: *body,
                content_type,
            })
            .await;
        let error = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if r.status != 400 || !error.contains(fragment) {
            failures.push(format!(
                "{method} {path}: got {} `{}`, want 400 with `{fragment}`",
                r.status, r.body
            ));
        }
    }
    // Open311 answers in its own format.
    for (method, path, body) in [
        (
            "GET",
            format!("/open311/v2/requests.json?jurisdiction_id={a}%00"),
            None,
        ),
        (
            "GET",
            format!("/open311/v2/requests.json?jurisdiction_id={a}&service_code=x%00"),
            None,
        ),
        (
            "POST",
            "/open311/v2/requests.json".to_owned(),
            Some(open311_post.as_str()),
        ),
    ] {
        let r = city
            .api
            .call(Req {
                method,
                path: &path,
                auth: tests::api::Auth::None,
                body,
                content_type: form,
            })
            .await;
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        let description = v[0]["description"].as_str().unwrap_or_default();
        if r.status != 400 || v[0]["code"] != 400 || !description.contains("NUL character") {
            failures.push(format!(
                "{method} {path}: got {} `{}`, want 400 in Open311's format",
                r.status, r.body
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // Nothing was stored.
    assert_eq!(
        city.db
            .count("SELECT count(*) FROM outage_events WHERE transition IN ('comment', 'shelved')")
            .await,
        0
    );
}
