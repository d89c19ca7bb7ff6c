//! The OpenAPI document against a contract fuzzer: schemathesis (an independent tool, from
//! PyPI) reads `/api/v1/openapi.json`, generates requests for every operation from it, and
//! checks that no answer is a server error and every answer matches the document.

use std::process::Stdio;

use tests::db::{opened, opened_with_order};

use super::{fresh_kind, City, CREW_TEAM};

/// Examples per operation; fixed seed so a failure can be replayed.
const EXAMPLES: &str = "25";
const SEED: &str = "20261122";

#[tokio::test]
async fn every_operation_keeps_to_the_document_under_generated_requests() {
    let python = std::env::var("CITYHUB_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CITYHUB_TEST_PYTHON is not set: run the tests with ./scripts/test.sh, which \
             prepares the checkers of tests/python/requirements.txt under target/python"
        )
    });
    let mut city = City::start().await;
    // Something to find: outages with and without work orders in the admin's tenant.
    let a = city.a.clone();
    let mut changes = Vec::new();
    for i in 0..5 {
        let device = city.device(&a, &format!("L{i}"));
        changes.push(opened(device, fresh_kind(), "2026-03-01T00:00:00Z"));
        changes.push(opened_with_order(
            device,
            fresh_kind(),
            "2026-03-01T01:00:00Z",
            CREW_TEAM,
            3600,
        ));
    }
    city.store
        .detection
        .apply_outage_changes(&changes)
        .await
        .unwrap();
    let token = match &city.tokens["admin"] {
        tests::api::Auth::Token(t) => t.clone(),
        other => panic!("the admin signs in with a token, not {other:?}"),
    };
    let url = format!("http://{}/api/v1/openapi.json", city.api.addr);
    let out = tokio::process::Command::new(&python)
        .args(["-m", "schemathesis.cli", "run", &url])
        .args([
            // utoipa writes OpenAPI 3.1, which this schemathesis reads behind a flag.
            "--experimental",
            "openapi-3.1",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--hypothesis-max-examples",
            EXAMPLES,
            "--hypothesis-seed",
            SEED,
            "--hypothesis-suppress-health-check",
            "all",
            // The caller signs in with the token below; generated cookies would only test
            // the HTTP parser's refusal of bytes no browser sends.
            "--generation-with-security-parameters=false",
            "--request-timeout",
            "20000",
            // The live stream answers forever by design; it has tests of its own.
            "--exclude-path",
            "/api/v1/events",
            "--header",
            &format!("Authorization: Bearer {token}"),
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found the API breaking its document:\n{stdout}\n{stderr}"
    );
    // It really ran the operations (a document it could not read would run none).
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains("passed"))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}\n{stderr}"));
    let passed: usize = summary
        .split_whitespace()
        .zip(summary.split_whitespace().skip(1))
        .find(|(_, w)| w.starts_with("passed"))
        .and_then(|(n, _)| n.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or(0);
    assert!(passed >= 20, "only {passed} operations ran:\n{stdout}");
}
