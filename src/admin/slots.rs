//! Admin connection slots: a bound on connections in all, a smaller one per client
//! address, and a reserve that keeps `/healthz` and `/metrics` answering when the
//! ordinary slots are taken.
//!
//! Without these, 64 connections that sent nothing locked every health check out for as
//! long as the idle timeout (issue #9). The per-address cap means one client (a leaking
//! scraper, a port scanner) cannot take every slot; the reserve means that even many
//! addresses cannot starve the health check a load balancer in front of weir depends on.
//! The deadlines in [`super::http`] bound how long any slot is held without a request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Ordinary admin connections served at once; scrapers and operators need few.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;
/// Ordinary slots one client address may hold: a scraper, a status page (which polls on
/// one keep-alive connection) and a few operator commands at once, with room to spare;
/// and an eighth of the slots, so one address never takes them all.
pub const MAX_ADMIN_CONNECTIONS_PER_CLIENT: usize = 8;
/// Slots kept for when the ordinary ones are taken (in all, or by this address). They
/// serve `/healthz` and `/metrics` only, one request each: enough for the few health
/// checkers and scrapers of one host, each request short.
pub const ADMIN_RESERVE_CONNECTIONS: usize = 8;
/// Reserve slots one client address may hold, so no single address empties the reserve.
pub const ADMIN_RESERVE_PER_CLIENT: usize = 2;

/// Which kind of slot a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ordinary slot: every endpoint, keep-alive.
    Ordinary,
    /// A reserve slot: `/healthz` and `/metrics`, one request, then close.
    Reserve,
}

/// Connections held, in all and per client address.
#[derive(Debug, Default)]
struct Held {
    ordinary: usize,
    reserve: usize,
    /// Per address: ordinary and reserve slots held. An address holding none is removed,
    /// so the map is bounded by the slots.
    clients: HashMap<IpAddr, [usize; 2]>,
}

/// The admin listener's slots, shared by its connection tasks.
#[derive(Debug, Default)]
pub struct Slots {
    held: Mutex<Held>,
}

/// One connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
    kind: Kind,
}

impl Slot {
    /// Which kind of slot this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl Slots {
    /// Takes a slot for a connection from `client`: an ordinary one if both bounds allow,
    /// else a reserve one, else none (the connection is closed unanswered).
    pub fn take(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let client = client_key(client);
        // A panic never happens while the lock is held; the counts stay right regardless.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let Held { ordinary, reserve, clients } = &mut *held;
        let mine = clients.entry(client).or_default();
        let kind =
            if *ordinary < MAX_ADMIN_CONNECTIONS && mine[0] < MAX_ADMIN_CONNECTIONS_PER_CLIENT {
                *ordinary += 1;
                Kind::Ordinary
            } else if *reserve < ADMIN_RESERVE_CONNECTIONS && mine[1] < ADMIN_RESERVE_PER_CLIENT {
                *reserve += 1;
                Kind::Reserve
            } else {
                if mine == &[0, 0] {
                    clients.remove(&client);
                }
                return None;
            };
        mine[kind as usize] += 1;
        Some(Slot { slots: Arc::clone(self), client, kind })
    }

    /// Ordinary and reserve slots held now.
    pub fn held(&self) -> (usize, usize) {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        (held.ordinary, held.reserve)
    }
}

/// The client a per-address cap counts: an IPv4 address, or an IPv6 address's /64 (an
/// IPv4-mapped IPv6 address counts as its IPv4 one). One IPv6 host is usually given a
/// whole /64, so keyed by full address it could take every slot, the reserve included.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(PoisonError::into_inner);
        match self.kind {
            Kind::Ordinary => held.ordinary -= 1,
            Kind::Reserve => held.reserve -= 1,
        }
        if let Some(mine) = held.clients.get_mut(&self.client) {
            mine[self.kind as usize] -= 1;
            if mine == &[0, 0] {
                held.clients.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn one_ipv6_host_counts_once_whatever_address_of_its_64_it_uses() {
        let slots = Arc::new(Slots::default());
        let host = |n: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, n, n, n, n));
        let taken: Vec<Slot> = (0..100).filter_map(|n| slots.take(host(n))).collect();
        let caps = MAX_ADMIN_CONNECTIONS_PER_CLIENT + ADMIN_RESERVE_PER_CLIENT;
        assert_eq!(taken.len(), caps, "a /64 is one client");
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(slots.take(other).map(|slot| slot.kind()), Some(Kind::Ordinary));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(client_key(mapped), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        drop(taken);
        assert_eq!(slots.held(), (0, 0));
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn one_address_gets_its_share_then_the_reserve_then_nothing() {
        let slots = Arc::new(Slots::default());
        let taken: Vec<Slot> = (0..100).filter_map(|_| slots.take(ip(1))).collect();
        let kinds: Vec<Kind> = taken.iter().map(Slot::kind).collect();
        let mut expected = vec![Kind::Ordinary; MAX_ADMIN_CONNECTIONS_PER_CLIENT];
        expected.extend([Kind::Reserve; ADMIN_RESERVE_PER_CLIENT]);
        assert_eq!(kinds, expected);
        assert_eq!(slots.take(ip(2)).map(|slot| slot.kind()), Some(Kind::Ordinary));
        drop(taken);
        assert_eq!(slots.held(), (0, 0));
        assert!(slots.held.lock().unwrap().clients.is_empty(), "no address is remembered");
    }

    #[test]
    fn the_reserve_serves_when_every_ordinary_slot_is_taken() {
        let slots = Arc::new(Slots::default());
        let mut taken = Vec::new();
        for host in 0..MAX_ADMIN_CONNECTIONS / MAX_ADMIN_CONNECTIONS_PER_CLIENT {
            for _ in 0..MAX_ADMIN_CONNECTIONS_PER_CLIENT {
                taken.push(slots.take(ip(10 + host as u8)).expect("an ordinary slot"));
            }
        }
        assert_eq!(slots.held(), (MAX_ADMIN_CONNECTIONS, 0));
        let reserve = slots.take(ip(1)).expect("a reserve slot");
        assert_eq!(reserve.kind(), Kind::Reserve);
        drop(taken.pop());
        assert_eq!(slots.take(ip(1)).map(|slot| slot.kind()), Some(Kind::Ordinary));
    }
}
