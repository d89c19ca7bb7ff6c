use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::mpsc;

/// A subscriber that records every message on a filter, as (topic, payload).
pub struct Recorder {
    pub messages: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Subscribes as `user` (a connection of its own: the broker makes the client id
    /// `user`) and returns once the broker has granted the subscription.
    pub async fn subscribe(port: u16, user: &str, password: &str, filter: &str) -> Recorder {
        let mut o = MqttOptions::new(user, "127.0.0.1", port);
        o.set_credentials(user, password)
            .set_max_packet_size(2 << 20, 2 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue the subscription");
        let (tx, messages) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut ready = Some(ready_tx);
            while let Ok(ev) = eventloop.poll().await {
                match ev {
                    Event::Incoming(Incoming::SubAck(_)) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Event::Incoming(Incoming::Publish(p)) => {
                        let _ = tx.send((p.topic, p.payload.to_vec()));
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("SUBACK within 10 s")
            .expect("subscribed");
        Recorder { messages, task }
    }

    /// At least `n` messages (failing after `limit`), then whatever follows within `quiet`.
    pub async fn at_least(
        &mut self,
        n: usize,
        limit: Duration,
        quiet: Duration,
    ) -> Vec<(String, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(m)) => got.push(m),
                _ => panic!("received {} of {n} messages within {limit:?}", got.len()),
            }
        }
        got.extend(self.until_quiet(quiet).await);
        got
    }

    /// Everything received until nothing more arrives for `quiet`.
    pub async fn until_quiet(&mut self, quiet: Duration) -> Vec<(String, Vec<u8>)> {
        let mut got = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(quiet, self.messages.recv()).await {
            got.push(m);
        }
        got
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
