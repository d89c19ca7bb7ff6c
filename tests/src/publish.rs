use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::task::JoinHandle;

use crate::broker::{tester, TESTER_PASSWORD};

/// A QoS 1 publisher that knows how many of its messages the broker accepted.
pub struct Publisher {
    pub client: AsyncClient,
    acked: Arc<AtomicU64>,
    sent: u64,
    task: JoinHandle<()>,
}

impl Publisher {
    /// A publisher signed in as a tester account of its own.
    pub async fn connect(port: u16) -> Publisher {
        Publisher::connect_as(port, &tester(port), TESTER_PASSWORD).await
    }

    /// A publisher signed in as `user` (whose client id the broker makes `user`).
    pub async fn connect_as(port: u16, user: &str, password: &str) -> Publisher {
        let mut o = MqttOptions::new(user, "127.0.0.1", port);
        o.set_credentials(user, password)
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(500)
            .set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 1000);
        let acked = Arc::new(AtomicU64::new(0));
        let a = acked.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready_tx);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("publisher connects")
            .expect("publisher connects");
        Publisher {
            client,
            acked,
            sent: 0,
            task,
        }
    }

    pub async fn send(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queue publish");
        self.sent += 1;
    }

    /// Publishes a retained message: the broker keeps it and hands it to every new
    /// subscription.
    pub async fn send_retained(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload.into())
            .await
            .expect("queue publish");
        self.sent += 1;
    }

    /// Waits until the broker acknowledged everything sent so far.
    pub async fn flush(&self) {
        let sent = self.sent;
        let acked = self.acked.clone();
        crate::eventually(Duration::from_secs(30), "the broker's PUBACKs", || {
            let acked = acked.clone();
            async move { (acked.load(Ordering::Relaxed) >= sent).then_some(()) }
        })
        .await;
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
