//! Signing in and out, wrong credentials, throttling, API tokens.

use std::net::Ipv4Addr;

use tests::api::{Auth, Req, PASSWORD};

use super::City;

fn login_body(username: &str, password: &str) -> String {
    serde_json::json!({"username": username, "password": password}).to_string()
}

#[tokio::test]
async fn signing_in_sets_a_strict_cookie_and_signing_out_ends_the_session() {
    let city = City::start().await;
    let api = &city.api;
    let r = api
        .call(Req::post(
            "/api/v1/login",
            &Auth::None,
            &login_body("operator", PASSWORD),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r.header("set-cookie").unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    let me = r.json();
    assert_eq!(me["username"], "operator");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["tenants"], serde_json::json!([city.a]));
    let cookie = Auth::Cookie(r.session_cookie().unwrap());

    let r = api.call(Req::get("/api/v1/me", &cookie)).await;
    assert_eq!((r.status, r.json()["via"].as_str()), (200, Some("session")));

    let r = api.call(Req::post("/api/v1/logout", &cookie, "")).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = api.call(Req::get("/api/v1/me", &cookie)).await;
    assert_eq!(r.status, 401);
    assert!(r.error().contains("sign in again"), "{}", r.error());

    let r = api.call(Req::get("/api/v1/me", &Auth::None)).await;
    assert_eq!(r.status, 401);
    assert!(r.error().contains("sign in first"), "{}", r.error());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"cityhub\"")
    );

    let audited = city
        .db
        .count("SELECT count(*) FROM audit_log WHERE actor = 'operator' AND action IN ('session.login', 'session.logout')")
        .await;
    assert_eq!(audited, 2);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let city = City::start().await;
    let wrong_password = city
        .api
        .call(Req::post(
            "/api/v1/login",
            &Auth::None,
            &login_body("operator", "not the password"),
        ))
        .await;
    let no_such_user = city
        .api
        .call_from(
            Ipv4Addr::new(127, 0, 0, 2),
            Req::post(
                "/api/v1/login",
                &Auth::None,
                &login_body("nobody", PASSWORD),
            ),
        )
        .await;
    assert_eq!((wrong_password.status, no_such_user.status), (401, 401));
    assert_eq!(wrong_password.body, no_such_user.body);
    assert_eq!(wrong_password.error(), "wrong user name or password");
    assert!(wrong_password.header("set-cookie").is_none());
}

#[tokio::test]
async fn sign_in_is_throttled_per_name_and_address_per_address_and_per_name() {
    let city = City::start().await;
    let login = |from: u8, user: &str, password: &str| {
        let body = login_body(user, password);
        let api = &city.api;
        async move {
            api.call_from(
                Ipv4Addr::new(127, 0, 0, from),
                Req::post("/api/v1/login", &Auth::None, &body),
            )
            .await
        }
    };
    // Five wrong passwords for one name from one address ...
    for _ in 0..5 {
        assert_eq!(login(10, "operator", "guess").await.status, 401);
    }
    // ... and the name is locked from that address, even with the right password ...
    let r = login(10, "operator", PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        r.error().contains("too many failed sign-ins"),
        "{}",
        r.error()
    );
    // ... but not from elsewhere: one address cannot lock a person out.
    assert_eq!(login(11, "operator", PASSWORD).await.status, 200);
    assert_eq!(
        login(10, "viewer", PASSWORD).await.status,
        200,
        "other names are not locked from that address"
    );

    // Twenty wrong names from one address lock the address for every name.
    for n in 0..20 {
        assert_eq!(login(30, &format!("guess{n}"), "guess").await.status, 401);
    }
    assert_eq!(login(30, "dispatcher", PASSWORD).await.status, 429);
    assert_eq!(login(31, "dispatcher", PASSWORD).await.status, 200);

    // The crew member signed in from her own browser once: it keeps a device cookie.
    let signed_in = login(60, "crew", PASSWORD).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let crews_cookie = api::v1::session::device_cookie_name("crew");
    let device = signed_in
        .cookie_set(&crews_cookie)
        .expect("a device cookie");
    let set = signed_in
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with(&format!("{crews_cookie}=")))
        .unwrap();
    assert!(
        set.1
            .contains("Path=/api/v1/login; HttpOnly; SameSite=Strict"),
        "{}",
        set.1
    );
    // Fifty wrong passwords for one name from fifty addresses lock the name everywhere ...
    for from in 100..150 {
        assert_eq!(login(from, "crew", "guess").await.status, 401);
    }
    assert_eq!(login(200, "crew", PASSWORD).await.status, 429);
    // ... another name's device cookie is no use, under its own name or under crew's as a
    // forger would send it ...
    let body = login_body("crew", PASSWORD);
    let viewer = login(61, "viewer", PASSWORD).await;
    let viewers_cookie = api::v1::session::device_cookie_name("viewer");
    let viewers_device = viewer.cookie_set(&viewers_cookie).unwrap();
    let forged = viewers_device.replace(&viewers_cookie, &crews_cookie);
    for cookie in [viewers_device.clone(), forged] {
        let r = city
            .api
            .call_from(
                Ipv4Addr::new(127, 0, 0, 202),
                Req::post("/api/v1/login", &Auth::Cookie(cookie.clone()), &body),
            )
            .await;
        assert_eq!(r.status, 429, "{cookie}: {}", r.body);
    }
    // ... but a browser that signed in as her before, and as others after her (a shared
    // console keeps each name's cookie): the crowd cannot lock her out.
    let jar = format!("{viewers_device}; {device}");
    let from_her_browser = city
        .api
        .call_from(
            Ipv4Addr::new(127, 0, 0, 201),
            Req::post("/api/v1/login", &Auth::Cookie(jar), &body),
        )
        .await;
    assert_eq!(from_her_browser.status, 200, "{}", from_her_browser.body);
}

#[tokio::test]
async fn api_tokens_work_until_revoked() {
    let mut city = City::start().await;
    let r = city.get("/api/v1/me", "viewer").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["via"], "token");

    city.store
        .admin
        .revoke_api_token("viewer", "tests", "test")
        .await
        .unwrap();
    let r = city.get("/api/v1/me", "viewer").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.error(),
        "this API token is not valid: it is unknown, was revoked, or its user is disabled"
    );

    for header in ["Basic dmlld2VyOnB3", "Bearer ", "Bearer chk_made_up"] {
        let r = city
            .api
            .call(Req::get("/api/v1/me", &Auth::Header(header.into())))
            .await;
        assert_eq!(r.status, 401, "{header}: {}", r.body);
    }
    let used = city
        .db
        .count("SELECT count(*) FROM api_tokens WHERE last_used_at IS NOT NULL")
        .await;
    assert_eq!(used, 1, "the viewer's token noted its use");
}

#[tokio::test]
async fn a_page_of_another_site_cannot_make_changes_with_the_session_cookie() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let r = city
        .api
        .call(Req::post(
            "/api/v1/login",
            &Auth::None,
            &login_body("operator", PASSWORD),
        ))
        .await;
    let cookie = Auth::Cookie(r.session_cookie().unwrap());
    let form = "application/x-www-form-urlencoded";
    // What a forged form posts: the cookie, a form body, the other site's origin.
    let forged = [
        "Origin: https://evil.example\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "Sec-Fetch-Site: same-site\r\nOrigin: https://other.city.example\r\n",
    ];
    for headers in forged {
        let outage = city.open_outage(&a).await;
        let path = format!("/api/v1/outages/{outage}/ack");
        let (r, body) = city
            .api
            .call_raw(
                Req {
                    content_type: form,
                    ..Req::post(&path, &cookie, "x=1")
                },
                headers,
            )
            .await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(r.status, 403, "{headers}: {body}");
        assert!(body.contains("another site"), "{body}");
        let state: String = city
            .db
            .client
            .query_one("SELECT state FROM outages WHERE id = $1", &[&outage])
            .await
            .unwrap()
            .get(0);
        assert_eq!(state, "open", "{headers}: nothing changed");
    }
    // Sign-in from another site's page is refused too (it would sign a victim's browser
    // in as someone else).
    let (r, _) = city
        .api
        .call_raw(
            Req::post(
                "/api/v1/login",
                &Auth::None,
                &login_body("operator", PASSWORD),
            ),
            "Origin: https://evil.example\r\n",
        )
        .await;
    assert_eq!(r.status, 403);

    // The dashboard's own pages, programs without an Origin, and tokens go on working.
    for (auth, headers) in [
        (&cookie, "Origin: http://localhost\r\n"),
        (&cookie, "Sec-Fetch-Site: same-origin\r\n"),
        (&cookie, ""),
        (
            &city.tokens["operator"].clone(),
            "Origin: https://evil.example\r\n",
        ),
    ] {
        let outage = city.open_outage(&a).await;
        let path = format!("/api/v1/outages/{outage}/ack");
        let (r, body) = city.api.call_raw(Req::post(&path, auth, ""), headers).await;
        assert_eq!(
            r.status,
            200,
            "{headers}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}
