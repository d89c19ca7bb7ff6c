//! Webhooks: outage and work order events sent to a real HTTP receiver that verifies
//! every message with the Standard Webhooks reference library
//! (tests/python/webhook_receiver.py), not with ours.

use std::process::Stdio;
use std::time::Duration;

use model::Kind;
use serde_json::{json, Value};
use tests::api::{add_token, add_user, Auth, Req, TestApi};
use tests::db::{devices, opened, resolved};
use tests::hub::HubProcess;
use tests::{eventually, unique, Setup, TestDb};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// The receiver, running until dropped.
struct Receiver {
    port: u16,
    _child: tokio::process::Child,
}

impl Receiver {
    async fn start() -> Receiver {
        let python = std::env::var("CITYHUB_TEST_PYTHON").unwrap_or_else(|_| {
            panic!(
                "CITYHUB_TEST_PYTHON is not set: run `source scripts/services.sh; source scripts/python.sh` \
                 (or scripts/test.sh) so webhooks are verified with the reference library"
            )
        });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/webhook_receiver.py");
        let mut child = tokio::process::Command::new(&python)
            .arg(script)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .await
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the receiver did not start: `{line}`"));
        Receiver {
            port,
            _child: child,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hook/{name}", self.port)
    }

    async fn control(&self, settings: Value) {
        let body = settings.to_string();
        let request = format!(
            "POST /control HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        exchange(self.port, &request).await;
    }

    /// Every message `name` received, in arrival order.
    async fn received(&self, name: &str) -> Vec<Value> {
        let reply = exchange(
            self.port,
            &format!("GET /received/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let body = reply.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str::<Value>(body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

async fn exchange(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// What the receiver took in once per `webhook-id`, in the order first received:
/// (type, device) of each, after checking that every message verified.
fn first_of_each(received: &[Value]) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    received
        .iter()
        .inspect(|m| assert_eq!(m["verified"], json!(true), "{m}"))
        .filter(|m| seen.insert(m["id"].as_str().unwrap().to_owned()))
        .map(|m| {
            (
                m["body"]["type"].as_str().unwrap().to_owned(),
                m["body"]["data"]["device"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn at(minutes_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339()
}

/// The deliverer in this process, with waits short enough for a test.
fn deliver(url: &str, disable_after_s: f64) -> CancellationToken {
    let stop = CancellationToken::new();
    let config = notify::WebhookConfig {
        retry_first_s: 0.2,
        retry_max_s: 0.8,
        disable_after_s,
        allow_private_addresses: true,
        ..notify::WebhookConfig::default()
    };
    let (url, until) = (url.to_owned(), stop.clone());
    tokio::spawn(async move {
        if let Err(e) = notify::run(config, notify::EmailConfig::default(), url, until).await {
            panic!("the deliverer stopped: {e}");
        }
    });
    stop
}

/// Subscribes `url` with `filters` as `auth`; the answer.
async fn subscribe(api: &TestApi, auth: &Auth, url: &str, filters: Value) -> (u16, Value) {
    let mut body = json!({ "url": url });
    body.as_object_mut()
        .unwrap()
        .extend(filters.as_object().unwrap().clone());
    let body = body.to_string();
    let reply = api.call(Req::post("/api/v1/webhooks", auth, &body)).await;
    let json = reply.json();
    (reply.status, json)
}

/// A receiver that answers 503 for a while misses nothing: once it answers again it gets
/// every message, each subscription's in the order the events were recorded, each signed
/// so the reference library verifies it; the failures meanwhile are visible through the
/// API; filters hold; and only an administrator of the tenant subscribes, to a URL the
/// hub may reach.
#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_event_afterwards_in_order() {
    let db = TestDb::new().await;
    let (t, other) = (unique("t"), unique("o"));
    let mut city = devices(&t, &[(Kind::Light, 4)]);
    // A district where nothing happens.
    city[3].district = Some("north".into());
    db.import(&city).await;
    db.import(&devices(&other, &[(Kind::Light, 1)])).await;
    let ids = db.device_ids(&t).await;
    let mut admin = db.admin().await;
    let (boss, op) = (unique("boss"), unique("op"));
    add_user(&mut admin, &boss, "admin", &[&t], None).await;
    add_user(&mut admin, &op, "operator", &[&t], None).await;
    let boss = Auth::Token(add_token(&mut admin, &boss, "hooks").await);
    let op = Auth::Token(add_token(&mut admin, &op, "hooks").await);
    let receiver = Receiver::start().await;
    let api = TestApi::start(&db.url).await;

    // Refusals first: the hub's own network is out of reach unless allowed; an operator
    // does not manage webhooks; another tenant is not the caller's; filters are checked.
    let (status, e) = subscribe(&api, &boss, &receiver.url("all"), json!({})).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("not a public internet address"),
        "{e}"
    );
    api.state.set_webhooks_reach_private(true);
    for (auth, filters, code, why) in [
        (&op, json!({}), 403, "may not manage webhooks"),
        (&boss, json!({"tenant": other}), 404, ""),
        (
            &boss,
            json!({"event_types": ["outage.exploded"]}),
            400,
            "not one of",
        ),
        (&boss, json!({"kinds": []}), 400, "1 to 100 values"),
        (
            &boss,
            json!({"severities": ["apocalyptic"]}),
            400,
            "critical",
        ),
        (&boss, json!({"districts": ["a\u{0}b"]}), 400, "NUL"),
        (&boss, json!({"districts": ["a\u{7}b"]}), 400, "districts"),
        (&boss, json!({"secret": "whsec_mine"}), 400, "unknown field"),
    ] {
        let (status, e) = subscribe(&api, auth, &receiver.url("x"), filters.clone()).await;
        assert_eq!(status, code, "{filters}: {e}");
        assert!(e["error"].as_str().unwrap().contains(why), "{filters}: {e}");
    }
    let (_, e) = subscribe(&api, &boss, "ftp://127.0.0.1/x", json!({})).await;
    assert!(
        e["error"].as_str().unwrap().contains("http or https"),
        "{e}"
    );

    let mut hooks = std::collections::HashMap::new();
    for (name, filters) in [
        ("all", json!({"description": "the city's asset system"})),
        ("elsewhere", json!({"districts": ["north"]})),
        (
            "resolved",
            json!({"event_types": ["outage.resolved"], "kinds": ["lamp_failure"]}),
        ),
    ] {
        let (status, hook) = subscribe(&api, &boss, &receiver.url(name), filters).await;
        assert_eq!(status, 201, "{hook}");
        let secret = hook["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_"), "{hook}");
        receiver
            .control(json!({"secrets": {name: secret}, "modes": {name: "down"}}))
            .await;
        hooks.insert(name, hook["id"].as_i64().unwrap());
    }
    // The secret is shown once: not in the list.
    let list = api.call(Req::get("/api/v1/webhooks", &boss)).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list}");
    assert!(!list.to_string().contains("whsec_"), "{list}");

    let mut store = db.store().await;
    store
        .detection
        .apply_outage_changes(&[
            opened(ids["L0"], "lamp_failure", &at(10)),
            opened(ids["L1"], "lamp_failure", &at(9)),
        ])
        .await
        .unwrap();
    store
        .detection
        .apply_outage_changes(&[resolved(ids["L0"], "lamp_failure", &at(8))])
        .await
        .unwrap();
    let stop = deliver(&db.url, 3600.0);

    // Down: the attempts fail, are kept and shown.
    let all = hooks["all"];
    let path = format!("/api/v1/webhooks/{all}");
    eventually(Duration::from_secs(20), "three failed attempts", || async {
        let hook = api.call(Req::get(&path, &boss)).await.json();
        (hook["status"] == json!("retrying") && hook["failures"].as_i64() >= Some(3)).then_some(())
    })
    .await;
    let messages = api
        .call(Req::get(&format!("{path}/messages"), &boss))
        .await
        .json();
    let oldest = messages["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(oldest["event_type"], json!("outage.opened"), "{oldest}");
    assert_eq!(oldest["delivered_at"], Value::Null, "{oldest}");
    let attempt = &oldest["attempts"][0];
    assert_eq!(attempt["status"], json!(503), "{oldest}");
    assert_eq!(
        attempt["error"],
        json!("the receiver answered 503: not now"),
        "{oldest}"
    );
    // Only the oldest is tried while it fails: the order holds.
    for m in &messages["items"].as_array().unwrap()[..2] {
        assert_eq!(m["attempts"], json!([]), "{m}");
    }

    // More events while it is down.
    store
        .detection
        .apply_outage_changes(&[
            opened(ids["L2"], "lamp_failure", &at(7)),
            resolved(ids["L1"], "lamp_failure", &at(6)),
        ])
        .await
        .unwrap();
    receiver
        .control(json!({"modes": {"all": "up", "elsewhere": "up", "resolved": "up"}}))
        .await;
    let expected: Vec<(String, String)> = [
        ("outage.opened", "L0"),
        ("outage.opened", "L1"),
        ("outage.resolved", "L0"),
        ("outage.opened", "L2"),
        ("outage.resolved", "L1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let got = eventually(
        Duration::from_secs(20),
        "every message delivered",
        || async {
            let got = first_of_each(&receiver.received("all").await);
            (got.len() >= expected.len()).then_some(got)
        },
    )
    .await;
    assert_eq!(got, expected);
    let resolved_only = eventually(Duration::from_secs(20), "the resolved ones", || async {
        let got = first_of_each(&receiver.received("resolved").await);
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(resolved_only, [expected[2].clone(), expected[4].clone()]);
    let hook = api.call(Req::get(&path, &boss)).await.json();
    assert_eq!(hook["status"], json!("active"), "{hook}");
    assert_eq!(
        (hook["pending"].clone(), hook["delivered"].clone()),
        (json!(0), json!(5))
    );
    // A message carries what a receiver acts on.
    let first = &receiver.received("all").await[0]["body"];
    assert_eq!(first["data"]["tenant"], json!(t), "{first}");
    assert_eq!(first["data"]["kind"], json!("lamp_failure"), "{first}");
    assert_eq!(first["data"]["district"], json!("centre"), "{first}");
    stop.cancel();
    let elsewhere = api
        .call(Req::get(
            &format!("/api/v1/webhooks/{}", hooks["elsewhere"]),
            &boss,
        ))
        .await
        .json();
    assert_eq!(
        (elsewhere["pending"].clone(), elsewhere["delivered"].clone()),
        (json!(0), json!(0))
    );
    assert!(receiver.received("elsewhere").await.is_empty());
    assert!(
        db.count("SELECT count(*) FROM audit_log WHERE action = 'webhook.add'")
            .await
            >= 3
    );
}

/// A receiver that keeps failing is disabled with the reason, and nothing is queued for it
/// then; one that answers 410 Gone is disabled at once; an administrator enables it again
/// and the messages queued before are delivered.
#[tokio::test]
async fn a_receiver_that_keeps_failing_is_disabled_with_the_reason() {
    let db = TestDb::new().await;
    let t = unique("t");
    db.import(&devices(&t, &[(Kind::Light, 3)])).await;
    let ids = db.device_ids(&t).await;
    let mut admin = db.admin().await;
    let boss = unique("boss");
    add_user(&mut admin, &boss, "admin", &[&t], None).await;
    let boss = Auth::Token(add_token(&mut admin, &boss, "hooks").await);
    let receiver = Receiver::start().await;
    let api = TestApi::start(&db.url).await;
    api.state.set_webhooks_reach_private(true);
    let mut hooks = std::collections::HashMap::new();
    for (name, mode) in [("failing", "down"), ("gone", "gone")] {
        let (status, hook) = subscribe(&api, &boss, &receiver.url(name), json!({})).await;
        assert_eq!(status, 201, "{hook}");
        receiver
            .control(json!({"secrets": {name: hook["secret"]}, "modes": {name: mode}}))
            .await;
        hooks.insert(name, hook["id"].as_i64().unwrap());
    }
    let mut store = db.store().await;
    store
        .detection
        .apply_outage_changes(&[opened(ids["L0"], "lamp_failure", &at(10))])
        .await
        .unwrap();
    let stop = deliver(&db.url, 1.0);
    for (name, reason) in [
        (
            "failing",
            "attempts in a row failed; the last: the receiver answered 503",
        ),
        ("gone", "410 Gone"),
    ] {
        let path = format!("/api/v1/webhooks/{}", hooks[name]);
        let hook = eventually(Duration::from_secs(20), "disabled", || async {
            let hook = api.call(Req::get(&path, &boss)).await.json();
            (hook["status"] == json!("disabled")).then_some(hook)
        })
        .await;
        assert!(
            hook["disabled_reason"].as_str().unwrap().contains(reason),
            "{hook}"
        );
        assert_eq!(hook["pending"], json!(1), "{hook}");
    }
    // Nothing is queued while disabled.
    store
        .detection
        .apply_outage_changes(&[opened(ids["L1"], "lamp_failure", &at(9))])
        .await
        .unwrap();
    let failing = format!("/api/v1/webhooks/{}", hooks["failing"]);
    assert_eq!(
        api.call(Req::get(&failing, &boss)).await.json()["pending"],
        json!(1)
    );

    receiver.control(json!({"modes": {"failing": "up"}})).await;
    let reply = api
        .call(Req::post(&format!("{failing}/enable"), &boss, ""))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = eventually(Duration::from_secs(20), "the queued message", || async {
        let got = first_of_each(&receiver.received("failing").await);
        got.iter()
            .any(|(kind, _)| kind == "outage.opened")
            .then_some(got)
    })
    .await;
    assert_eq!(got, [("outage.opened".to_owned(), "L0".to_owned())]);
    stop.cancel();
    let gone = receiver.received("gone").await;
    assert_eq!(gone.len(), 1, "one attempt, then no more: {gone:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM audit_log WHERE action = 'webhook.enable'")
            .await,
        1
    );
    // Removed: the list no longer has it; it cannot be enabled.
    let reply = api
        .call(Req {
            method: "DELETE",
            ..Req::get(&failing, &boss)
        })
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = api
        .call(Req::post(&format!("{failing}/enable"), &boss, ""))
        .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
}

/// A hub killed while a receiver is still answering a message sends that message again
/// after its restart, with the same `webhook-id`, and then the others in order: none is
/// lost.
#[tokio::test]
async fn a_hub_killed_mid_delivery_loses_no_message() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 3)]).await;
    let ids = db.device_ids(&t).await;
    let receiver = Receiver::start().await;
    let tenant_id: i32 = db
        .client
        .query_one("SELECT id FROM tenants WHERE slug = $1", &[&t])
        .await
        .unwrap()
        .get(0);
    let secret = notify::signature::new_secret();
    let url = receiver.url("slow");
    db.actions()
        .await
        .add_webhook(&store::notifications::NewWebhook {
            tenant_id,
            url: &url,
            secret: &secret,
            unsubscribe_token: None,
            description: "",
            event_types: None,
            kinds: None,
            severities: None,
            districts: None,
            by: "test",
            at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    receiver
        .control(json!({"secrets": {"slow": secret}, "modes": {"slow": "slow"}, "delay": 30}))
        .await;
    let mut store = db.store().await;
    store
        .detection
        .apply_outage_changes(&[
            opened(ids["L0"], "lamp_failure", &at(10)),
            opened(ids["L1"], "lamp_failure", &at(9)),
            opened(ids["L2"], "lamp_failure", &at(8)),
        ])
        .await
        .unwrap();
    let settings = [
        ("CITYHUB_LEASE_TTL_S", "2"),
        ("CITYHUB_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", "true"),
        ("CITYHUB_WEBHOOKS_RETRY_FIRST_S", "0.2"),
        ("CITYHUB_WEBHOOKS_RETRY_MAX_S", "0.5"),
    ];
    let mut hub = HubProcess::spawn_with(&db.url, broker.port(), &unique("hub-"), &settings);
    eventually(Duration::from_secs(30), "the first message in", || async {
        (!receiver.received("slow").await.is_empty()).then_some(())
    })
    .await;
    hub.kill_9();
    receiver.control(json!({"modes": {"slow": "up"}})).await;
    hub.restart();
    let all = eventually(Duration::from_secs(30), "every message", || async {
        let all = receiver.received("slow").await;
        (first_of_each(&all).len() >= 3).then_some(all)
    })
    .await;
    let ids_in_order: Vec<&str> = all.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids_in_order.len(), 4, "{ids_in_order:?}");
    assert_eq!(
        ids_in_order[0], ids_in_order[1],
        "the first again: {ids_in_order:?}"
    );
    assert_eq!(
        first_of_each(&all)
            .into_iter()
            .map(|(_, device)| device)
            .collect::<Vec<_>>(),
        ["L0", "L1", "L2"]
    );
    hub.kill_9();
}
