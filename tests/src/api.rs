//! The HTTP API in the test process, on a real socket, and a small HTTP client for it.
//!
//! [`TestApi::start`] serves `api::router` exactly as `cityhub serve` does (peer
//! addresses included, for sign-in throttling), on a free port. [`TestApi::call`] sends
//! one request per connection, from a chosen loopback address (any of 127.0.0.0/8), so
//! tests can play several clients. Users and tokens are made through `store`, as the
//! `cityhub users` commands make them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use store::{Admin, NewUser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The session secret of test servers (a real-looking one: weak ones are refused).
pub const TEST_SECRET: &str = "3f0c9a57d1e24b8c96a7f2e05b4d18c7a9e3f6b2";

/// A password every test user has.
pub const PASSWORD: &str = "correct horse battery staple";

/// The API served in this process until dropped.
pub struct TestApi {
    pub addr: SocketAddr,
    /// The server's state, for what tests do that clients cannot (writing the refusals'
    /// tallies now rather than at the next minute).
    pub state: api::AppState,
    stop: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApi {
    pub async fn start(database_url: &str) -> TestApi {
        TestApi::start_with(database_url, api::HttpLimits::default()).await
    }

    /// Like [`TestApi::start`], with the connections bounded as `http` says.
    pub async fn start_with(database_url: &str, http: api::HttpLimits) -> TestApi {
        TestApi::start_configured(database_url, |c| c.http = http).await
    }

    /// Like [`TestApi::start`], with the configuration changed by `change` first.
    pub async fn start_configured(
        database_url: &str,
        change: impl FnOnce(&mut api::ApiConfig),
    ) -> TestApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut config = api::ApiConfig {
            database_url: database_url.to_owned(),
            database_read_url: None,
            session_secret: api::SessionSecret::parse(TEST_SECRET).expect("test secret"),
            secure_cookie: false,
            clock: Arc::new(model::Timestamp::now),
            dashboard: api::DashboardConfig::default(),
            health: None,
            http: api::HttpLimits::default(),
            exports: Default::default(),
            allowed_origins: Vec::new(),
            open311: Default::default(),
            refusals_every: api::refusals::FLUSH_EVERY,
            staleness: api::Staleness::default(),
        };
        change(&mut config);
        let state = api::AppState::new(
            prometheus_client::registry::Registry::default(),
            "partitioned",
            config,
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(api::serve(listener, state.clone(), stop.clone()));
        TestApi {
            addr,
            state,
            stop,
            task: Some(task),
        }
    }

    /// Sends a request from 127.0.0.1.
    pub async fn call(&self, req: Req<'_>) -> Reply {
        self.call_from(Ipv4Addr::LOCALHOST, req).await
    }

    /// Sends a request from `from` (a loopback address).
    pub async fn call_from(&self, from: Ipv4Addr, req: Req<'_>) -> Reply {
        Reply::parse(&self.send(from, req, "").await)
    }

    /// Sends a request with `extra` header lines (each ending in CRLF); the reply's status
    /// and headers, and its body as bytes.
    pub async fn call_raw(&self, req: Req<'_>, extra: &str) -> (Reply, Vec<u8>) {
        let raw = self.send(Ipv4Addr::LOCALHOST, req, extra).await;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |i| i + 4);
        (Reply::parse(&raw[..split]), raw[split..].to_vec())
    }

    async fn send(&self, from: Ipv4Addr, req: Req<'_>, extra: &str) -> Vec<u8> {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(IpAddr::V4(from), 0))
            .expect("bind the client address");
        let mut stream = socket.connect(self.addr).await.expect("connect");
        let mut head = format!(
            "{} {} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n",
            req.method, req.path
        );
        match &req.auth {
            Auth::None => {}
            Auth::Token(t) => head.push_str(&format!("Authorization: Bearer {t}\r\n")),
            Auth::Cookie(c) => head.push_str(&format!("Cookie: {c}\r\n")),
            Auth::Header(h) => head.push_str(&format!("Authorization: {h}\r\n")),
        }
        let body = req.body.unwrap_or("");
        if req.body.is_some() {
            head.push_str(&format!(
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                req.content_type,
                body.len()
            ));
        }
        head.push_str(extra);
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("send");
        stream.write_all(body.as_bytes()).await.expect("send body");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read the reply");
        raw
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How a request proves who sends it.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// An API token (`Authorization: Bearer`).
    Token(String),
    /// A `Cookie` header value.
    Cookie(String),
    /// A raw `Authorization` header value.
    Header(String),
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Req<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub auth: Auth,
    pub body: Option<&'a str>,
    pub content_type: &'a str,
}

impl<'a> Req<'a> {
    pub fn get(path: &'a str, auth: &Auth) -> Req<'a> {
        Req {
            method: "GET",
            path,
            auth: auth.clone(),
            body: None,
            content_type: "application/json",
        }
    }

    pub fn post(path: &'a str, auth: &Auth, body: &'a str) -> Req<'a> {
        Req {
            method: "POST",
            path,
            auth: auth.clone(),
            body: Some(body),
            content_type: "application/json",
        }
    }
}

/// A reply: status, headers (names lower-case) and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP reply: {text}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error` sentence of an error reply.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error sentence: {}", self.body))
            .to_owned()
    }

    /// The session cookie a sign-in set, as a `Cookie` header value.
    pub fn session_cookie(&self) -> Option<String> {
        self.cookie_set("cityhub_session")
    }

    /// The cookie `name` the reply set, as a `Cookie` header value (`name=value`).
    pub fn cookie_set(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next())
            .map(str::trim)
            .find(|pair| pair.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

/// Creates a user with the test [`PASSWORD`] (hashed as the CLI hashes it).
pub async fn add_user(
    db: &mut Admin,
    username: &str,
    role: &str,
    tenants: &[&str],
    team: Option<&str>,
) {
    let hash = api::auth::hash_password(PASSWORD).expect("hash");
    let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
    db.add_user(
        &NewUser {
            username,
            password_hash: &hash,
            role,
            team,
            tenants: &tenants,
        },
        "test",
    )
    .await
    .expect("add user");
}

/// A new API token of `username`, as `cityhub users token` makes it.
pub async fn add_token(db: &mut Admin, username: &str, name: &str) -> String {
    let token = api::auth::new_api_token();
    db.add_api_token(username, name, &api::auth::api_token_digest(&token), "test")
        .await
        .expect("add token");
    token
}
