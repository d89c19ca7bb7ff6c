//! The binary's side of access: `cityhub users`, `cityhub audit verify`, and `serve`
//! refusing a weak session secret.

use std::io::Write;
use std::process::{Command, Stdio};

use model::Kind;
use tests::api::{Auth, Req, TestApi};
use tests::db::devices;
use tests::hub::cityhub_binary;
use tests::{unique, TestDb};

/// Runs `cityhub ARGS` with `stdin` as standard input: (success, stdout, stderr).
fn cityhub(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(cityhub_binary())
        .args(args)
        .env("CITYHUB_CONFIG", "/dev/null")
        .env("CITYHUB_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cityhub");
    // The child may exit before reading (a bad argument); a broken pipe is its answer.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait for cityhub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn users_are_added_with_a_long_password_and_their_printed_token_works() {
    let db = TestDb::new().await;
    let tenant = unique("t");
    db.import(&devices(&tenant, &[(Kind::Light, 2)])).await;
    let env = [("CITYHUB_DATABASE_URL", db.url.as_str())];
    let add = |stdin: &str| {
        cityhub(
            &[
                "users", "add", "olga", "--role", "operator", "--tenant", &tenant,
            ],
            &env,
            stdin,
        )
    };
    let (ok, _, err) = add("short-pw\n");
    assert!(!ok);
    assert!(err.contains("has 8 characters; use at least 12"), "{err}");
    let (ok, out, err) = add("a long enough password\n");
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("Added olga (operator) for {tenant}.")),
        "{out}"
    );
    let (ok, _, err) = add("a long enough password\n");
    assert!(
        !ok && err.contains("there is already a user `olga`"),
        "{err}"
    );
    let (ok, _, err) = cityhub(
        &[
            "users", "add", "ivan", "--role", "operator", "--tenant", "atlantis",
        ],
        &env,
        "a long enough password\n",
    );
    assert!(!ok && err.contains("unknown tenant `atlantis`"), "{err}");
    let (ok, _, err) = cityhub(
        &[
            "users", "add", "ivan", "--role", "crew", "--tenant", &tenant,
        ],
        &env,
        "a long enough password\n",
    );
    assert!(!ok && err.contains("needs a team"), "{err}");
    let (ok, out, err) = cityhub(&["users", "list"], &env, "");
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!("username\trole\tteam\tstate\ttenants\nolga\toperator\t-\tactive\t{tenant}\n")
    );
    let (ok, out, _) = cityhub(&["users", "list", "--tenant", &tenant], &env, "");
    assert!(ok && out.contains("olga"), "{out}");
    let (ok, _, err) = cityhub(&["users", "list", "--tenant", "atlantis"], &env, "");
    assert!(!ok && err.contains("no tenant `atlantis`"), "{err}");

    let (ok, token, err) = cityhub(
        &["users", "token", "olga", "--name", "gis-export"],
        &env,
        "",
    );
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("chk_"), "{token}");
    let stored: Vec<u8> = db
        .client
        .query_one("SELECT token_hash FROM api_tokens", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(stored, token.as_bytes(), "only its digest is kept");

    let api = TestApi::start(&db.url).await;
    let r = api
        .call(Req::get("/api/v1/me", &Auth::Token(token.clone())))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["username"], "olga");
    // The hub's clock, for clients that count deadlines down.
    let now: chrono::DateTime<chrono::Utc> = r.json()["now"].as_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now() - now).num_seconds().abs() < 60, "{now}");
    let login = serde_json::json!({"username": "olga", "password": "a long enough password"});
    let r = api
        .call(Req::post("/api/v1/login", &Auth::None, &login.to_string()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let (ok, _, err) = cityhub(
        &["users", "revoke-token", "olga", "--name", "gis-export"],
        &env,
        "",
    );
    assert!(ok, "{err}");
    let r = api.call(Req::get("/api/v1/me", &Auth::Token(token))).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn audit_verify_passes_then_names_an_edited_and_a_deleted_entry() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    for i in 1..=5 {
        // The last through an API token of hers.
        let actor = if i == 5 {
            "olga (token gis-export)"
        } else {
            "olga"
        };
        store
            .actions
            .audit(
                actor,
                "outage.acknowledge",
                &format!("outage/{i}"),
                serde_json::json!({"n": i}),
            )
            .await
            .unwrap();
    }
    let env = [("CITYHUB_DATABASE_URL", db.url.as_str())];
    let (ok, out, err) = cityhub(&["audit", "verify"], &env, "");
    assert!(ok, "{err}");
    assert!(out.starts_with("audit log intact: 5 entries\n"), "{out}");
    // The newest entries, oldest first; by target or by actor.
    let (ok, out, err) = cityhub(&["audit", "show", "--limit", "2"], &env, "");
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "id\tat\tactor\taction\ttarget\tdetail");
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with("4\t")
            && lines[1].ends_with("\tolga\toutage.acknowledge\toutage/4\t{\"n\":4}"),
        "{out}"
    );
    assert!(lines[2].starts_with("5\t"), "{out}");
    let (ok, out, _) = cityhub(&["audit", "show", "--target", "outage/3"], &env, "");
    assert!(
        ok && out.lines().count() == 2 && out.contains("outage/3"),
        "{out}"
    );
    let (ok, out, _) = cityhub(&["audit", "show", "--actor", "mallory"], &env, "");
    assert!(ok && out.lines().count() == 1, "{out}");
    // A user's entries include those made through their API tokens.
    let shown = |actor: &str| {
        let (ok, out, err) = cityhub(&["audit", "show", "--actor", actor], &env, "");
        assert!(ok, "{err}");
        out.lines().count() - 1
    };
    assert_eq!(shown("olga"), 5);
    assert_eq!(shown("olga (token gis-export)"), 1);
    assert_eq!(shown("olg"), 0);
    let (ok, _, err) = cityhub(&["audit", "show", "--limit", "0"], &env, "");
    assert!(!ok && err.contains("--limit"), "{err}");

    // The table refuses changes; its owner can still switch that off, and the chain shows it.
    let refused = db
        .client
        .execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 2", &[])
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("append-only")
            || format!("{refused:?}").contains("append-only")
    );
    db.client
        .batch_execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        .await
        .unwrap();
    db.client
        .execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 2", &[])
        .await
        .unwrap();
    let (ok, _, err) = cityhub(&["audit", "verify"], &env, "");
    assert!(!ok);
    assert!(
        err.contains("audit log broken at entry 2: its contents do not match its hash"),
        "{err}"
    );

    db.client
        .execute("UPDATE audit_log SET actor = 'olga' WHERE id = 2", &[])
        .await
        .unwrap();
    let (ok, _, err) = cityhub(&["audit", "verify"], &env, "");
    assert!(ok, "put back as it was, it passes again: {err}");

    db.client
        .execute("DELETE FROM audit_log WHERE id = 3", &[])
        .await
        .unwrap();
    let (ok, _, err) = cityhub(&["audit", "verify"], &env, "");
    assert!(!ok);
    assert!(
        err.contains("audit log broken at entry 4: it follows entry 2: entry 3 was deleted"),
        "{err}"
    );
}

/// Appends `n` entries as a change would.
async fn append(store: &mut tests::Store, n: usize) {
    for i in 0..n {
        store
            .actions
            .audit(
                "olga",
                "outage.acknowledge",
                &format!("outage/{i}"),
                serde_json::json!({"n": i}),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_anchor_kept_elsewhere_shows_the_newest_entries_removed_or_the_log_rewritten() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    let env = [("CITYHUB_DATABASE_URL", db.url.as_str())];
    let (ok, _, err) = cityhub(&["audit", "anchor"], &env, "");
    assert!(!ok && err.contains("the audit log is empty"), "{err}");
    append(&mut store, 5).await;
    let (ok, anchor, err) = cityhub(&["audit", "anchor"], &env, "");
    assert!(ok, "{err}");
    let anchor = anchor.trim().to_owned();
    assert!(
        anchor.starts_with("5:") && anchor.len() == 2 + 64,
        "{anchor}"
    );
    append(&mut store, 2).await;
    let (ok, out, err) = cityhub(&["audit", "verify", "--anchor", &anchor], &env, "");
    assert!(ok, "{err}");
    assert!(out.contains("it reaches every anchor given (1)"), "{out}");

    // The owner removes the newest entries: what is left is a whole chain, but it no
    // longer reaches the anchor.
    db.client
        .batch_execute(
            "ALTER TABLE audit_log DISABLE TRIGGER USER; DELETE FROM audit_log WHERE id >= 4",
        )
        .await
        .unwrap();
    let (ok, _, err) = cityhub(&["audit", "verify"], &env, "");
    assert!(ok, "without the anchor the shorter chain passes: {err}");
    let (ok, _, err) = cityhub(&["audit", "verify", "--anchor", &anchor], &env, "");
    assert!(!ok);
    assert!(
        err.contains("audit log broken at entry 5: the log ends at entry 3, before the anchor's entry 5: the newest entries were removed"),
        "{err}"
    );

    // Or rewrites entry 2 and chains everything after it again, as the hub would.
    db.client
        .batch_execute("DELETE FROM audit_log WHERE id >= 2")
        .await
        .unwrap();
    for i in 0..4 {
        store
            .actions
            .audit(
                "mallory",
                "outage.acknowledge",
                &format!("outage/{i}"),
                serde_json::json!({"n": i}),
            )
            .await
            .unwrap();
    }
    let (ok, _, err) = cityhub(&["audit", "verify"], &env, "");
    assert!(ok, "the rewritten chain is whole in itself: {err}");
    let (ok, _, err) = cityhub(&["audit", "verify", "--anchor", &anchor], &env, "");
    assert!(!ok);
    assert!(
        err.contains("audit log broken at entry 5: its hash is")
            && err.contains("the log was rewritten and chained again"),
        "{err}"
    );
    let (ok, _, err) = cityhub(&["audit", "verify", "--anchor", "5:zz"], &env, "");
    assert!(!ok && err.contains("is not a SHA-256 in hex"), "{err}");
}

#[test]
fn serve_refuses_a_weak_session_secret_without_showing_it() {
    for (secret, why) in [
        ("tiny-secret-77", "is too short (14 characters)"),
        (
            "changemechangemechangemechangeme",
            "looks like a placeholder",
        ),
        ("0123456789abcdefghijklmnopqrstuv", "is too predictable"),
        ("qwertyuiopasdfghjklzxcvbnm123456", "is too predictable"),
        ("1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,", "is too predictable"),
    ] {
        let (ok, _, err) = cityhub(
            &["serve"],
            &[
                ("CITYHUB_HTTP_SESSION_SECRET", secret),
                (
                    "CITYHUB_DATABASE_URL",
                    "postgres://postgres@127.0.0.1:1/none",
                ),
            ],
            "",
        );
        assert!(!ok, "{secret} was accepted");
        assert!(err.contains(&format!("http.session_secret {why}")), "{err}");
        assert!(!err.contains(secret), "the secret was printed: {err}");
    }
    let secret = "5b2e8f1c9d0a47e3b6c1f8a2d4e7093b";
    let (ok, out, err) = cityhub(&["config"], &[("CITYHUB_HTTP_SESSION_SECRET", secret)], "");
    assert!(ok, "{err}");
    assert!(out.contains("[http]") && !out.contains(secret), "{out}");
}

#[tokio::test]
async fn serve_logs_the_audit_logs_head_as_it_moves() {
    use std::io::BufRead;
    let db = TestDb::new().await;
    let mut store = db.store().await;
    append(&mut store, 3).await;
    let broker = tests::TestBroker::start();
    let http = simulators::broker::free_port().unwrap();
    let mut child = Command::new(cityhub_binary())
        .arg("serve")
        .env("CITYHUB_CONFIG", "/dev/null")
        .env("CITYHUB_DATABASE_URL", &db.url)
        .env("CITYHUB_MQTT_PORT", broker.port().to_string())
        .env("CITYHUB_MQTT_USERNAME", tests::broker::HUB_USER)
        .env("CITYHUB_MQTT_PASSWORD", tests::broker::HUB_PASSWORD)
        .env(
            "CITYHUB_COMMANDS_MQTT_USERNAME",
            tests::broker::COMMANDS_USER,
        )
        .env(
            "CITYHUB_COMMANDS_MQTT_PASSWORD",
            tests::broker::COMMANDS_PASSWORD,
        )
        .env("CITYHUB_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("CITYHUB_AUDIT_ANCHOR_LOG_S", "1")
        .env("CITYHUB_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("Audit log head") {
                let _ = tx.send(line);
            }
        }
    });
    let next_anchor = || {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the head logged");
        let anchor = line
            .split("anchor=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no anchor in `{line}`"))
            .to_owned();
        anchor
    };
    let first = next_anchor();
    let env = [("CITYHUB_DATABASE_URL", db.url.as_str())];
    let (_, printed, _) = cityhub(&["audit", "anchor"], &env, "");
    assert_eq!(first, printed.trim());
    assert!(first.starts_with("3:"), "{first}");
    append(&mut store, 1).await;
    let moved = next_anchor();
    assert!(
        moved.starts_with("4:"),
        "logged again once it moved: {moved}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
