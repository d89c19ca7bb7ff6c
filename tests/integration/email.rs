//! E-mail: residents' subscriptions to planned works with double opt-in and one-click
//! unsubscribe, and crews' addresses subscribed to events, mailed to a real SMTP server
//! (aiosmtpd, tests/python/smtp_sink.py) rather than ours.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use model::Kind;
use serde_json::{json, Value};
use tests::api::{add_token, add_user, Auth, Req, TestApi};
use tests::db::{devices, opened};
use tests::{eventually, unique, TestDb};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// The SMTP server, running until dropped, and the mails it took.
struct Sink {
    port: u16,
    file: PathBuf,
    _child: tokio::process::Child,
}

impl Sink {
    async fn start() -> Sink {
        let python = std::env::var("CITYHUB_TEST_PYTHON").unwrap_or_else(|_| {
            panic!(
                "CITYHUB_TEST_PYTHON is not set: run `source scripts/services.sh; source scripts/python.sh` \
                 (or scripts/test.sh) so mails are taken by a real SMTP server"
            )
        });
        let file = std::env::temp_dir().join(format!("{}.jsonl", unique("mails-")));
        let mut child = tokio::process::Command::new(&python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/smtp_sink.py"))
            .arg(&file)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .await
            .unwrap();
        Sink {
            port: line.trim().parse().expect("the SMTP server's port"),
            file,
            _child: child,
        }
    }

    /// The mails to `to`, in the order taken.
    fn mails_to(&self, to: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|m| m["to"].as_array().unwrap().iter().any(|t| t == to))
            .collect()
    }

    async fn wait_for(&self, to: &str, n: usize) -> Vec<Value> {
        eventually(
            Duration::from_secs(20),
            &format!("{n} mails to {to}"),
            || async {
                let mails = self.mails_to(to);
                (mails.len() >= n).then_some(mails)
            },
        )
        .await
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The path and query of the first link under `http://hub.test` in `body`.
fn link(body: &str, path: &str) -> String {
    let start = body
        .find(&format!("http://hub.test{path}"))
        .unwrap_or_else(|| panic!("no {path} link in {body}"));
    body[start + "http://hub.test".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A resident gets only the confirmation until they confirm (a page opened from the link
/// confirms nothing: its button does); then the works planned in their district, without
/// their reason, each with a one-click unsubscribe a mail program can use; once
/// unsubscribed, nothing. An address asking again and again gets three confirmations a
/// day at most, and every answer is the same. A crew's address subscribed by an
/// administrator gets the events it asked for.
#[tokio::test]
async fn residents_confirm_before_anything_is_sent_and_stop_in_one_click() {
    let db = TestDb::new().await;
    let t = unique("t");
    let mut city = devices(&t, &[(Kind::Light, 3), (Kind::Cabinet, 1)]);
    city[2].district = Some("north".into());
    db.import(&city).await;
    let ids = db.device_ids(&t).await;
    let sink = Sink::start().await;
    let api = TestApi::start(&db.url).await;
    api.state.public_pages().set_tenants(vec![t.clone()]);
    let subscribe = |email: &str, district: Option<&str>| {
        let mut body = json!({ "email": email });
        if let Some(d) = district {
            body["district"] = json!(d);
        }
        let (api, path) = (&api, format!("/public/{t}/subscriptions"));
        async move {
            api.call(Req::post(&path, &Auth::None, &body.to_string()))
                .await
        }
    };
    // Without e-mail set up, nobody subscribes.
    let reply = subscribe("ana@example.org", Some("centre")).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(
        reply.error().contains("does not send e-mail"),
        "{}",
        reply.body
    );
    api.state.set_email_enabled(true);
    for (email, district, why) in [
        ("not an address", None, "not an e-mail address"),
        ("ana\u{0}@example.org", None, "NUL"),
        (
            "ana@example.org",
            Some("atlantis"),
            "not one of the city's: centre, north",
        ),
    ] {
        let reply = subscribe(email, district).await;
        assert_eq!(reply.status, 400, "{email}: {}", reply.body);
        assert!(reply.error().contains(why), "{email}: {}", reply.body);
    }
    let other = api
        .call(Req::post(
            "/public/nowhere/subscriptions",
            &Auth::None,
            r#"{"email": "ana@example.org"}"#,
        ))
        .await;
    assert_eq!(other.status, 404);

    let reply = subscribe("ana@example.org", Some("centre")).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let answer = reply.json();
    // Three at once for a new address: one subscription, every answer alike.
    let (a, b, c) = tokio::join!(
        subscribe("cat@example.org", None),
        subscribe("cat@example.org", None),
        subscribe("cat@example.org", None)
    );
    for r in [a, b, c] {
        assert_eq!((r.status, r.json()), (202, answer.clone()), "{}", r.body);
    }
    assert_eq!(
        db.count("SELECT count(*) FROM webhook_subscriptions WHERE url = 'mailto:cat@example.org'")
            .await,
        1
    );
    // Bob never confirms, however often he asks.
    for _ in 0..5 {
        assert_eq!(
            subscribe("bob@example.org", Some("north")).await.json(),
            answer
        );
    }
    let stop = CancellationToken::new();
    let email = notify::EmailConfig {
        smtp_host: "127.0.0.1".into(),
        smtp_port: sink.port,
        tls: notify::email::Tls::None,
        from: "City works <works@city.example>".into(),
        public_url: "http://hub.test".into(),
        ..notify::EmailConfig::default()
    };
    let webhooks = notify::WebhookConfig {
        retry_first_s: 0.2,
        retry_max_s: 0.5,
        ..notify::WebhookConfig::default()
    };
    tokio::spawn(notify::run(webhooks, email, db.url.clone(), stop.clone()));

    let confirmation = &sink.wait_for("ana@example.org", 1).await[0];
    assert_eq!(
        confirmation["headers"]["subject"],
        json!(format!("Confirm: planned works in centre, {t}"))
    );
    assert!(confirmation["headers"].get("list-unsubscribe").is_none());
    let confirm = link(
        confirmation["body"].as_str().unwrap(),
        &format!("/public/{t}/subscriptions/confirm"),
    );
    // Works planned before the confirmation are not sent.
    let mut admin = db.admin().await;
    let now = chrono::Utc::now();
    let hour = chrono::Duration::hours(1);
    admin
        .add_maintenance_window(
            &t,
            "district",
            "centre",
            now + hour,
            now + hour * 2,
            "Ana Pereira rewires it",
            "ana",
        )
        .await
        .unwrap();
    // A scanner opening the link confirms nothing.
    let page = api.call(Req::get(&confirm, &Auth::None)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<form method=\"post\""), "{}", page.body);
    let confirmed =
        "SELECT count(*) FROM webhook_subscriptions WHERE resident AND confirmed_at IS NOT NULL";
    assert_eq!(db.count(confirmed).await, 0);
    let done = api.call(Req::post(&confirm, &Auth::None, "")).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("works planned in centre"),
        "{}",
        done.body
    );
    assert_eq!(db.count(confirmed).await, 1);
    assert_eq!(
        api.call(Req::post(&confirm, &Auth::None, "")).await.status,
        404,
        "used once"
    );

    admin
        .add_maintenance_window(
            &t,
            "device",
            "L0",
            now + hour * 24,
            now + hour * 30,
            "Ana Pereira rewires it",
            "ana",
        )
        .await
        .unwrap();
    admin
        .add_maintenance_window(
            &t,
            "district",
            "north",
            now + hour * 24,
            now + hour * 30,
            "north works",
            "ana",
        )
        .await
        .unwrap();
    let mails = sink.wait_for("ana@example.org", 2).await;
    let works = &mails[1];
    let subject = works["headers"]["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("Planned works in centre: "),
        "{subject}"
    );
    let body = works["body"].as_str().unwrap();
    for word in ["Ana", "Pereira", "rewires"] {
        assert!(
            !body.contains(word) && !subject.contains(word),
            "{word} in {works}"
        );
    }
    let unsubscribe = works["headers"]["list-unsubscribe"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        works["headers"]["list-unsubscribe-post"],
        json!("List-Unsubscribe=One-Click")
    );
    let in_body = link(body, &format!("/public/{t}/subscriptions/unsubscribe"));
    assert_eq!(unsubscribe, format!("<http://hub.test{in_body}>"));

    // A mail program's one-click unsubscribe (RFC 8058).
    let path = unsubscribe
        .trim_matches(['<', '>'])
        .trim_start_matches("http://hub.test");
    let reply = api
        .call(Req {
            content_type: "application/x-www-form-urlencoded",
            ..Req::post(path, &Auth::None, "List-Unsubscribe=One-Click")
        })
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    admin
        .add_maintenance_window(
            &t,
            "tenant",
            &t,
            now + hour * 48,
            now + hour * 50,
            "everywhere",
            "ana",
        )
        .await
        .unwrap();

    // A crew's address, subscribed by an administrator.
    let boss = unique("boss");
    add_user(&mut admin, &boss, "admin", &[&t], None).await;
    let boss = Auth::Token(add_token(&mut admin, &boss, "mail").await);
    let reply = api
        .call(Req::post(
            "/api/v1/webhooks",
            &boss,
            r#"{"url": "mailto:crew@city.example", "event_types": ["outage.opened"]}"#,
        ))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["secret"], Value::Null);
    db.store()
        .await
        .detection
        .apply_outage_changes(&[opened(ids["L0"], "lamp_failure", &now.to_rfc3339())])
        .await
        .unwrap();
    let crew = &sink.wait_for("crew@city.example", 1).await[0];
    assert_eq!(
        crew["headers"]["subject"],
        json!(format!("[{t}] outage opened: lamp failure L0 (centre)"))
    );
    assert!(crew["headers"]["list-unsubscribe"]
        .as_str()
        .unwrap()
        .contains("/subscriptions/unsubscribe?token="));

    // Give the deliverer time for anything it should not send.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    assert_eq!(
        sink.mails_to("ana@example.org").len(),
        2,
        "nothing after unsubscribing"
    );
    let bob = sink.mails_to("bob@example.org");
    assert_eq!(
        bob.len(),
        3,
        "three confirmations a day, and no works: {bob:?}"
    );
    assert!(bob.iter().all(|m| m["headers"]["subject"]
        .as_str()
        .unwrap()
        .starts_with("Confirm:")));
}
