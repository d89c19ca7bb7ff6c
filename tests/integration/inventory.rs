//! The published inventory schema (docs/inventory.schema.json) against an independent
//! JSON Schema validator: the inventories cityhub writes and ships are valid, the ones it
//! refuses are not.

use std::path::{Path, PathBuf};
use std::process::Command;

use tests::hub::cityhub_binary;

fn validate(files: &[&Path]) -> (bool, String) {
    let python = std::env::var("CITYHUB_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CITYHUB_TEST_PYTHON is not set: run the tests with ./scripts/test.sh, which \
             prepares the Python checkers (or `source scripts/services.sh; source scripts/python.sh`)"
        )
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(python)
        .arg(root.join("tests/python/validate_json.py"))
        .arg(root.join("docs/inventory.schema.json"))
        .args(files)
        .output()
        .expect("run the validator");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn feature(props: &str, geometry: &str) -> String {
    format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","geometry":{geometry},"properties":{props}}}]}}"#
    )
}

#[test]
fn the_inventories_cityhub_writes_and_ships_are_valid_and_the_ones_it_refuses_are_not() {
    let dir = std::env::temp_dir().join(tests::unique("schema-"));
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new(cityhub_binary())
        .args([
            "simulate", "city", "--seed", "3", "--lamps", "300", "--meters", "40",
        ])
        .args(["--vehicles", "8", "--out"])
        .arg(&dir)
        .env("CITYHUB_CONFIG", "/dev/null")
        .status()
        .unwrap();
    assert!(status.success());
    let generated = dir.join("inventory.geojson");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/inventory.geojson");
    let (ok, said) = validate(&[&generated, &demo]);
    assert!(ok, "{said}");

    let point = r#"{"type":"Point","coordinates":[-9.14,38.71]}"#;
    let line = r#"{"type":"LineString","coordinates":[[-9.14,38.71],[-9.13,38.72]]}"#;
    let cases: [(&str, String); 7] = [
        (
            "lantern",
            feature(r#"{"id":"a","kind":"lantern","tenant":"x"}"#, point),
        ),
        ("no-tenant", feature(r#"{"id":"a","kind":"light"}"#, point)),
        (
            "bad-id",
            feature(r#"{"id":"a b","kind":"light","tenant":"x"}"#, point),
        ),
        (
            "bad-tenant",
            feature(r#"{"id":"a","kind":"light","tenant":"Lisbon"}"#, point),
        ),
        (
            "off-earth",
            feature(
                r#"{"id":"a","kind":"light","tenant":"x"}"#,
                r#"{"type":"Point","coordinates":[200,0]}"#,
            ),
        ),
        (
            "rating-as-text",
            feature(
                r#"{"id":"a","kind":"light","tenant":"x","rated_power_w":"70"}"#,
                point,
            ),
        ),
        (
            "route-as-point",
            feature(r#"{"id":"28","kind":"route","tenant":"x"}"#, point),
        ),
    ];
    let mut bad: Vec<PathBuf> = Vec::new();
    for (name, text) in &cases {
        let path = dir.join(format!("{name}.geojson"));
        std::fs::write(&path, text).unwrap();
        bad.push(path);
    }
    for path in &bad {
        let (ok, said) = validate(&[path]);
        assert!(
            !ok && said.contains("invalid"),
            "{}: {said}",
            path.display()
        );
        // cityhub refuses the same file.
        let out = Command::new(cityhub_binary())
            .args(["devices", "import"])
            .arg(path)
            .env("CITYHUB_CONFIG", "/dev/null")
            .env("CITYHUB_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("is not a usable inventory"),
            "{}: {err}",
            path.display()
        );
    }
    let route = feature(
        r#"{"id":"28","kind":"route","tenant":"x","headway_s":600}"#,
        line,
    );
    let path = dir.join("route.geojson");
    std::fs::write(&path, route).unwrap();
    let (ok, said) = validate(&[&path]);
    assert!(ok, "{said}");
    let _ = std::fs::remove_dir_all(dir);
}
