//! Connections that hold the server without using it: idle sockets and half-sent heads
//! are closed after the header timeout, a body sent a byte at a time after the body
//! timeout, and at the connection cap the idle and the slow senders make room, so
//! `/health` keeps answering.

use std::net::SocketAddr;
use std::time::Duration;

use tests::api::{Req, TestApi};
use tests::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CAP: usize = 16;

fn limits() -> api::HttpLimits {
    api::HttpLimits {
        max_connections: CAP,
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        send_timeout: Duration::from_secs(20),
        ..api::HttpLimits::default()
    }
}

/// Reads until the server closes the connection (or 30 s pass, which fails the test):
/// what it answered, if anything.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    got
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_dropped_and_health_answers_at_the_cap() {
    let db = TestDb::new().await;
    let api = TestApi::start_with(&db.url, limits()).await;

    // The cap filled: half of it saying nothing, half sending a head that never ends.
    let mut idle = Vec::new();
    let mut half = Vec::new();
    for i in 0..CAP {
        let mut s = connect(api.addr).await;
        if i % 2 == 0 {
            idle.push(s);
        } else {
            s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .await
                .unwrap();
            half.push(s);
        }
    }
    // The server answers health checks all the same: each new connection closes the
    // one that has waited longest for a request.
    for _ in 0..(CAP + 4) {
        let reply = api.call(Req::get("/health", &tests::api::Auth::None)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // And closes every one of them, without an answer to the idle.
    for mut s in idle {
        assert!(until_closed(&mut s).await.is_empty());
    }
    for mut s in half {
        let answer = until_closed(&mut s).await;
        assert!(
            answer.is_empty() || String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_refused_and_the_connection_closed() {
    let db = TestDb::new().await;
    let api = TestApi::start_with(&db.url, limits()).await;
    let mut s = connect(api.addr).await;
    s.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":",
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut s).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request's body did not arrive within 1 s"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_serves_requests_then_closes_when_idle() {
    let db = TestDb::new().await;
    let api = TestApi::start_with(&db.url, limits()).await;
    let mut s = connect(api.addr).await;
    for _ in 0..3 {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    until_closed(&mut s).await;
}

#[tokio::test]
async fn bodies_sent_slowly_make_room_at_the_cap() {
    let db = TestDb::new().await;
    let api = TestApi::start_with(
        &db.url,
        api::HttpLimits {
            body_timeout: Duration::from_secs(25),
            ..limits()
        },
    )
    .await;
    // The cap filled with sign-ins whose bodies never finish: each is a request in
    // flight, but one that waits for its client, not for the server.
    let mut slow = Vec::new();
    for _ in 0..CAP {
        let mut s = connect(api.addr).await;
        s.write_all(
            b"POST /api/v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..4 {
        let reply = api.call(Req::get("/health", &tests::api::Auth::None)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // One of them was closed to make room, long before its body timeout; the checks,
    // one after another, each took that place in turn.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut closed = 0;
    for s in &mut slow {
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 1, "the others still wait for their bodies");
}
