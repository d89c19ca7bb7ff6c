//! What the rules load besides their own outages: maintenance windows with the devices
//! they cover, the commands in force and the bus routes.

use std::collections::HashMap;

use model::{Device, Kind};
use serde_json::json;
use store::StoreError;
use tests::db::{devices, utc};
use tests::{unique, Store, TestDb};

/// A fresh database with `kinds` of one tenant's devices, a store session and the ids.
async fn start(kinds: &[(Kind, usize)]) -> (TestDb, Store, HashMap<String, i32>) {
    let tenant = unique("t");
    let db = TestDb::new().await;
    db.import(&devices(&tenant, kinds)).await;
    let ids = db.device_ids(&tenant).await;
    let store = db.store().await;
    (db, store, ids)
}

/// Devices of two districts and two cabinets (`C0` feeds L0-L2, `C1` feeds L3), plus a
/// second tenant with a device of the same name.
fn town(tenant: &str, other: &str) -> Vec<Device> {
    let mut town = devices(
        tenant,
        &[(Kind::Cabinet, 2), (Kind::Light, 4), (Kind::Meter, 2)],
    );
    for d in &mut town {
        if d.id == "L3" {
            d.cabinet = Some("C1".into());
        }
        if matches!(d.id.as_str(), "C1" | "L3" | "M1") {
            d.district = Some("harbour".into());
        }
    }
    town.extend(devices(other, &[(Kind::Light, 1)]));
    town
}

#[tokio::test]
async fn a_maintenance_window_covers_every_device_of_its_scope() {
    let (tenant, other) = (unique("t"), unique("u"));
    let db = TestDb::new().await;
    db.import(&town(&tenant, &other)).await;
    let ids = db.device_ids(&tenant).await;
    let mut store = db.store().await;
    let (starts, ends) = (utc("2026-03-01T22:00:00Z"), utc("2026-03-02T04:00:00Z"));
    let cases: [(&str, &str, &[&str]); 6] = [
        ("device", "L1", &["L1"]),
        ("cabinet", "C0", &["C0", "L0", "L1", "L2"]),
        ("cabinet", "C1", &["C1", "L3"]),
        ("district", "harbour", &["C1", "L3", "M1"]),
        ("district", "centre", &["C0", "L0", "L1", "L2", "M0"]),
        (
            "tenant",
            &tenant,
            &["C0", "C1", "L0", "L1", "L2", "L3", "M0", "M1"],
        ),
    ];
    let mut want = Vec::new();
    for (scope, target, covered) in cases {
        let id = store
            .admin
            .add_maintenance_window(&tenant, scope, target, starts, ends, "relamping", "olga")
            .await
            .unwrap_or_else(|e| panic!("{scope} {target}: {e}"));
        let mut device_ids: Vec<i32> = covered.iter().map(|d| ids[*d]).collect();
        device_ids.sort_unstable();
        want.push((id, device_ids));
    }
    // Over before the time asked about: not listed.
    store
        .admin
        .add_maintenance_window(
            &tenant,
            "device",
            "L0",
            utc("2026-03-01T10:00:00Z"),
            starts,
            "old",
            "olga",
        )
        .await
        .unwrap();
    let windows = store
        .detection
        .maintenance_windows(utc("2026-03-01T22:00:00Z"))
        .await
        .unwrap();
    let got: Vec<(i64, Vec<i32>)> = windows
        .iter()
        .map(|w| (w.id, w.device_ids.clone()))
        .collect();
    assert_eq!(got, want);
    assert!(windows
        .iter()
        .all(|w| (w.starts_at, w.ends_at, w.reason.as_str()) == (starts, ends, "relamping")));
    assert!(store
        .detection
        .maintenance_windows(ends)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_maintenance_window_refuses_unknown_targets_and_backward_times() {
    let (tenant, other) = (unique("t"), unique("u"));
    let db = TestDb::new().await;
    db.import(&town(&tenant, &other)).await;
    let mut store = db.store().await;
    let (starts, ends) = (utc("2026-03-01T22:00:00Z"), utc("2026-03-02T04:00:00Z"));
    let cases: [(&str, &str, &str, _, _, &str); 9] = [
        (
            "nowhere",
            "device",
            "L0",
            starts,
            ends,
            "unknown tenant `nowhere`",
        ),
        (
            &tenant,
            "street",
            "L0",
            starts,
            ends,
            "unknown maintenance scope `street`",
        ),
        (&tenant, "device", "L9", starts, ends, "has no device `L9`"),
        (
            &tenant,
            "cabinet",
            "L0",
            starts,
            ends,
            "has no cabinet `L0`",
        ),
        (
            &tenant,
            "district",
            "uptown",
            starts,
            ends,
            "has no district `uptown`",
        ),
        (
            &tenant,
            "tenant",
            &other,
            starts,
            ends,
            "must name its tenant",
        ),
        (&other, "cabinet", "C0", starts, ends, "has no cabinet `C0`"),
        (
            &tenant,
            "device",
            "L0",
            starts,
            starts,
            "must end after it starts",
        ),
        (
            &tenant,
            "device",
            "L0",
            ends,
            starts,
            "must end after it starts",
        ),
    ];
    for (t, scope, target, from, to, fragment) in cases {
        let err = store
            .admin
            .add_maintenance_window(t, scope, target, from, to, "x", "olga")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(fragment),
            "{scope} {target}: `{err}` should say {fragment}"
        );
        assert!(!err.is_retryable());
    }
    assert_eq!(
        db.count("SELECT count(*) FROM maintenance_windows").await,
        0
    );
}

#[tokio::test]
async fn acknowledged_commands_are_in_force_until_they_expire() {
    let (_db, mut store, ids) = start(&[(Kind::Light, 3)]).await;
    let (l0, l1, l2) = (ids["L0"], ids["L1"], ids["L2"]);
    let commands = [
        ("c-1", l0, "set_light", "2026-03-01T10:00:00Z", None),
        (
            "c-2",
            l0,
            "set_light",
            "2026-03-01T11:00:00Z",
            Some("2026-03-01T12:00:00Z"),
        ),
        ("c-3", l0, "reboot", "2026-03-01T10:30:00Z", None),
        ("c-4", l1, "set_schedule", "2026-03-01T10:00:00Z", None),
        ("c-5", l1, "set_light", "2026-03-01T10:00:00Z", None),
        ("c-6", l2, "set_light", "2026-03-01T10:00:00Z", None),
    ];
    for (id, device, action, issued, expires) in commands {
        let body = json!({"id": id, "action": action});
        store
            .admin
            .record_command(
                id,
                device,
                action,
                &body,
                utc(issued),
                expires.map(utc),
                "olga",
            )
            .await
            .unwrap();
    }
    for (id, answer) in [
        ("c-1", "ok"),
        ("c-2", "ok"),
        ("c-3", "ok"),
        ("c-4", "ok"),
        ("c-5", "rejected"),
    ] {
        let row = store
            .detection
            .command_acked(id, answer, utc("2026-03-01T11:00:05Z"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.status,
            if answer == "ok" {
                model::CommandStatus::Acked
            } else {
                model::CommandStatus::Rejected
            }
        );
        assert_eq!(row.acked_at, Some(utc("2026-03-01T11:00:05Z")));
    }
    // A late, different answer changes nothing; an unknown command is no error.
    let again = store
        .detection
        .command_acked("c-5", "ok", utc("2026-03-01T11:30:00Z"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.status.as_str(), again.body["action"].as_str()),
        ("rejected", Some("set_light"))
    );
    assert_eq!(
        store
            .detection
            .command_acked("c-x", "ok", utc("2026-03-01T11:30:00Z"))
            .await
            .unwrap(),
        None
    );
    let failed = store
        .detection
        .command_acked("c-6", "failed", utc("2026-03-01T11:30:00Z"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, model::CommandStatus::Failed);

    let in_force = |at: &'static str| {
        let store = &store;
        async move {
            store
                .detection
                .commands_in_force(utc(at))
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(in_force("2026-03-01T11:30:00Z").await, ["c-2", "c-4"]);
    assert_eq!(
        in_force("2026-03-01T12:00:00Z").await,
        ["c-4"],
        "c-2 replaced c-1 and has expired: L0 follows its schedule"
    );
    assert_eq!(in_force("2026-03-01T10:15:00Z").await, ["c-1", "c-4"]);
    assert!(
        in_force("2026-03-01T09:00:00Z").await.is_empty(),
        "nothing issued yet"
    );

    let err = store
        .detection
        .command_acked("c-1", "done", utc("2026-03-01T11:30:00Z"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownAckStatus(_)), "{err}");
    let body = json!({});
    let at = utc("2026-03-01T10:00:00Z");
    let refused = [
        ("c-1", l0, "set_light", None, "already recorded"),
        ("c-9", l0, "dance", None, "unknown command action `dance`"),
        ("c-9", 999_999, "reboot", None, "no device with id 999999"),
        (
            "c-9",
            l0,
            "reboot",
            Some(at),
            "must expire after it is issued",
        ),
    ];
    for (id, device, action, expires, fragment) in refused {
        let err = store
            .admin
            .record_command(id, device, action, &body, at, expires, "olga")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(fragment),
            "`{err}` should say {fragment}"
        );
    }
}

#[tokio::test]
async fn routes_are_imported_and_vehicles_find_their_own_tenants_route() {
    let city = simulators::city::City::generate(&simulators::city::CitySpec {
        tenant: unique("t"),
        lamps: 30,
        meters: 5,
        vehicles: 12,
        ..Default::default()
    });
    let inventory = model::inventory::parse_inventory(&city.inventory_geojson()).unwrap();
    assert_eq!(inventory.routes.len(), 2);
    let db = TestDb::new().await;
    let mut store = db.store().await;
    store
        .admin
        .import_devices(&inventory.devices)
        .await
        .unwrap();
    assert_eq!(
        store.admin.import_routes(&inventory.routes).await.unwrap(),
        2
    );
    // Another tenant with a route of the same name, and a vehicle on an unknown route.
    let other = unique("u");
    let mut elsewhere = inventory.routes[0].clone();
    elsewhere.tenant.clone_from(&other);
    store.admin.import_routes(&[elsewhere]).await.unwrap();
    store
        .admin
        .import_devices(&devices(&other, &[(Kind::Vehicle, 1)]))
        .await
        .unwrap();

    let route_ids: HashMap<(String, String), i32> = db
        .client
        .query(
            "SELECT t.slug, r.ext_id, r.id FROM routes r JOIN tenants t ON t.id = r.tenant_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let lines: HashMap<i32, Vec<(f64, f64)>> = store
        .detection
        .rule_routes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.line))
        .collect();
    let headways: HashMap<i32, Option<f64>> = store
        .detection
        .rule_routes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.headway_s))
        .collect();
    for r in &city.routes {
        let id = route_ids[&(city.spec.tenant.clone(), r.id.clone())];
        assert_eq!(lines[&id], r.line);
        assert_eq!(headways[&id], Some(r.headway_s), "the timetable's headway");
    }
    let assets = store.detection.rule_assets().await.unwrap();
    let by_id: HashMap<i32, &store::RuleAsset> = assets.iter().map(|a| (a.id, a)).collect();
    let ids = db.device_ids(&city.spec.tenant).await;
    for v in &city.vehicles {
        let asset = by_id[&ids[&v.id]];
        assert_eq!(
            asset.route_id,
            Some(route_ids[&(city.spec.tenant.clone(), v.route.clone())])
        );
    }
    let lamp = by_id[&ids[&city.lamps[0].id]];
    assert_eq!(
        (lamp.route_id, lamp.district.as_deref()),
        (None, Some(city.lamps[0].district.as_str()))
    );
    assert_eq!(lamp.ext_id, city.lamps[0].id);
    let stray = by_id[&db.device_ids(&other).await["V0"]];
    assert_eq!(stray.route_id, None, "route 28 is not in the inventory");
    assert_ne!(stray.tenant_id, lamp.tenant_id);

    // Importing again updates a route in place.
    let mut moved = inventory.routes[0].clone();
    moved.line.reverse();
    assert_eq!(
        store.admin.import_routes(&[moved.clone()]).await.unwrap(),
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM routes").await, 3);
    let id = route_ids[&(moved.tenant.clone(), moved.id.clone())];
    let lines: HashMap<i32, Vec<(f64, f64)>> = store
        .detection
        .rule_routes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.line))
        .collect();
    assert_eq!(lines[&id], moved.line);

    // A line that is not [lon, lat] pairs is named, not skipped.
    db.client
        .execute("UPDATE routes SET line = '[[1]]' WHERE id = $1", &[&id])
        .await
        .unwrap();
    let err = store.detection.rule_routes().await.unwrap_err();
    assert!(
        matches!(err, StoreError::BadRouteLine { id: i, .. } if i == id),
        "{err}"
    );
}
