//! Fair sharing of the API server's request slots between users, after upstream's API
//! Priority and Fairness: one client cannot take the slots every other client needs.
//!
//! # Rules
//!
//! - Users in `system:masters` (the admin, and in `podvisor up` the scheduler and the
//!   controllers that use its token) are **exempt**, as upstream's `exempt` priority level:
//!   their requests are never refused for concurrency.
//! - Every other user draws on the shared pool of `total` slots (`max_requests_in_flight`),
//!   and holds at most `per_user` of them at once (a quarter of the pool, at least one):
//!   a client that opens hundreds of slow requests is answered 429 once it holds its share,
//!   while others still find slots.
//! - Long-running requests (watches, log follows, exec) take no slot, as upstream.
//!
//! A slot is a guard ([`Slot`]); dropping it (the request finished, or its connection was
//! closed) gives the slot back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::auth::UserInfo;

/// The slot accounting shared by every request of one server.
#[derive(Debug)]
pub struct FlowControl {
    total: usize,
    per_user: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_use: usize,
    by_user: HashMap<String, usize>,
}

/// One request slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    owner: Option<(Arc<FlowControl>, String)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((fc, user)) = self.owner.take() {
            let mut st = fc.state.lock().unwrap_or_else(|p| p.into_inner());
            st.in_use = st.in_use.saturating_sub(1);
            if let Some(n) = st.by_user.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    st.by_user.remove(&user);
                }
            }
        }
    }
}

impl FlowControl {
    /// A pool of `total` slots, each non-exempt user holding at most a quarter of it.
    pub fn new(total: usize) -> Arc<FlowControl> {
        Arc::new(FlowControl {
            total,
            per_user: (total / 4).max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// Whether `user` is exempt from concurrency limits (`system:masters`).
    pub fn exempt(user: &UserInfo) -> bool {
        user.groups.iter().any(|g| g == "system:masters")
    }

    /// Takes a slot for a short request of `user`, or `None` (answer 429) when the pool is
    /// full or the user already holds its share.
    pub fn try_begin(self: &Arc<Self>, user: &UserInfo) -> Option<Slot> {
        if FlowControl::exempt(user) {
            return Some(Slot { owner: None });
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mine = st.by_user.get(&user.name).copied().unwrap_or(0);
        if st.in_use >= self.total || mine >= self.per_user {
            return None;
        }
        st.in_use += 1;
        *st.by_user.entry(user.name.clone()).or_insert(0) += 1;
        Some(Slot {
            owner: Some((self.clone(), user.name.clone())),
        })
    }

    /// Slots in use by non-exempt users.
    pub fn in_use(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, group: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: name.into(),
            groups: vec![group.into()],
        }
    }

    /// One user holding its share cannot starve the others; the admin is never refused.
    #[test]
    fn one_user_cannot_take_every_slot() {
        let fc = FlowControl::new(8);
        let node = user("system:node:n1", "system:nodes");
        let other = user("system:node:n2", "system:nodes");
        let admin = user("admin", "system:masters");
        let held: Vec<Slot> = (0..2).map(|_| fc.try_begin(&node).expect("slot")).collect();
        assert!(fc.try_begin(&node).is_none(), "over its share");
        let mut others: Vec<Slot> = (0..2)
            .map(|_| fc.try_begin(&other).expect("slot"))
            .collect();
        let _admin: Vec<Slot> = (0..100)
            .map(|_| fc.try_begin(&admin).expect("exempt"))
            .collect();
        assert_eq!(fc.in_use(), 4);
        drop(held);
        assert_eq!(fc.in_use(), 2);
        others.push(fc.try_begin(&node).expect("share back"));
        assert_eq!(fc.in_use(), 3);
    }

    #[test]
    fn the_pool_bounds_everyone_together() {
        let fc = FlowControl::new(4);
        let users: Vec<UserInfo> = (0..6)
            .map(|i| user(&format!("u{i}"), "system:authenticated"))
            .collect();
        let slots: Vec<Slot> = users.iter().filter_map(|u| fc.try_begin(u)).collect();
        assert_eq!(slots.len(), 4);
        assert!(fc.try_begin(&users[5]).is_none());
    }
}
