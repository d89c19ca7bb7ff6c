//! Shares of what clients hold for a long time: exports (each holds a database connection
//! and a long transaction for as long as its client downloads) and live event streams
//! (each holds a connection for as long as its client listens). They are few: at most
//! [`Shares::total`] in all, [`Shares::per_user`] per person (their tokens and sessions
//! together) and [`Shares::per_tenant`] per municipality (one covering several counts
//! against each), so no one person, and no one municipality, can take every slot from
//! the others.
//!
//! Pure bookkeeping: a [`Slot`] is held while its export or stream runs and given back when
//! dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::ApiError;

/// How many may run at once.
#[derive(Debug, Clone, Copy)]
pub struct Shares {
    /// In all.
    pub total: usize,
    /// Per person.
    pub per_user: usize,
    /// Per tenant.
    pub per_tenant: usize,
}

/// How long a refused caller is told to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Running {
    total: usize,
    by_user: HashMap<String, usize>,
    by_tenant: HashMap<i32, usize>,
}

/// What is running, of one kind.
pub struct Slots {
    /// What runs, for refusals' sentences (`exports`).
    what: &'static str,
    shares: Shares,
    running: Mutex<Running>,
}

/// One running export's or stream's place; given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    user: String,
    tenants: Vec<i32>,
}

impl Slots {
    pub fn new(what: &'static str, shares: Shares) -> Arc<Slots> {
        Arc::new(Slots {
            what,
            shares,
            running: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        // Counters only; a panic elsewhere leaves them consistent.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `user` over `tenants` (ids, with their slugs for the refusal's
    /// sentence), or why not: 429 past the person's share, 503 past a tenant's or the
    /// server's.
    pub fn take(self: &Arc<Self>, user: &str, tenants: &[(i32, &str)]) -> Result<Slot, ApiError> {
        let mut running = self.lock();
        let (l, what) = (&self.shares, self.what);
        if running.total >= l.total {
            return Err(ApiError::unavailable(format!(
                "{} {what} are running already, the most the server runs at once; \
                 try again when one has finished",
                l.total
            )));
        }
        if running.by_user.get(user).copied().unwrap_or(0) >= l.per_user {
            return Err(ApiError::too_many(
                format!(
                    "you have {} {what} running already, the most one person may run at once; \
                     try again when one has finished",
                    l.per_user
                ),
                RETRY_AFTER,
            ));
        }
        if let Some((_, slug)) = tenants
            .iter()
            .find(|(id, _)| running.by_tenant.get(id).copied().unwrap_or(0) >= l.per_tenant)
        {
            return Err(ApiError::unavailable(format!(
                "{} {what} of `{slug}` are running already, the most one municipality may run at once; \
                 try again when one has finished",
                l.per_tenant
            )));
        }
        running.total += 1;
        *running.by_user.entry(user.to_owned()).or_default() += 1;
        for (id, _) in tenants {
            *running.by_tenant.entry(*id).or_default() += 1;
        }
        Ok(Slot {
            slots: self.clone(),
            user: user.to_owned(),
            tenants: tenants.iter().map(|(id, _)| *id).collect(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.slots.lock();
        running.total -= 1;
        if let Some(n) = running.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                running.by_user.remove(&self.user);
            }
        }
        for id in &self.tenants {
            if let Some(n) = running.by_tenant.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    running.by_tenant.remove(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_per_person_tenant_and_server() {
        let slots = Slots::new(
            "exports",
            Shares {
                total: 4,
                per_user: 2,
                per_tenant: 3,
            },
        );
        let a = [(1, "a")];
        let b = [(2, "b")];
        let v1 = slots.take("viewer", &a).unwrap();
        let _v2 = slots.take("viewer", &a).unwrap();
        let refused = slots.take("viewer", &b).err().unwrap();
        assert_eq!(refused.status().as_u16(), 429);
        assert!(
            refused.message().contains("one person"),
            "{}",
            refused.message()
        );
        let _o = slots.take("operator", &a).unwrap();
        let refused = slots.take("admin", &a).err().unwrap();
        assert_eq!(refused.status().as_u16(), 503);
        assert!(
            refused.message().contains("of `a`"),
            "{}",
            refused.message()
        );
        let _r = slots.take("regional", &b).unwrap();
        let refused = slots.take("other", &b).err().unwrap();
        assert!(
            refused.message().starts_with("4 exports are running"),
            "{}",
            refused.message()
        );
        drop(v1);
        assert!(slots.take("viewer", &b).is_ok(), "a slot given back");
    }
}
