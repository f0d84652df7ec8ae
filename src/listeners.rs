//! The client listening sockets of a running balancer, as one table that the workers
//! follow.
//!
//! Every configured address has one `SO_REUSEPORT` socket per worker, so the kernel
//! spreads connections and a connection never changes thread. The table keeps, per
//! address, the sockets no worker took yet and a duplicate of every socket: the
//! duplicates are what a binary upgrade hands to the new process ([`crate::upgrade`]).
//! A reload changes the table ([`Listeners::prepare`], then [`Listeners::commit`]) and
//! bumps a version; each worker then reconciles its accept loops with the table
//! ([`Listeners::take`]), so there is no queue of commands to bound, only the latest state.
//!
//! Entries are keyed by the address as configured (`127.0.0.1:0` stays `127.0.0.1:0`
//! whatever port it got), so a reload or an upgrade with the same file matches the
//! sockets already open.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::tls::Acceptor;

/// Pending-connection queue per listening socket. nginx's default of 511 drops SYNs in a
/// burst of new connections; the kernel caps this at `net.core.somaxconn` anyway.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Sockets received from the process this one replaces, by the address each was
/// configured as there ([`crate::upgrade`]).
#[derive(Debug, Default)]
pub struct Inherited {
    /// Client listening sockets.
    pub listeners: Vec<(SocketAddr, TcpListener)>,
    /// The admin listening socket, if the old process had one.
    pub admin: Option<(SocketAddr, TcpListener)>,
}

/// One configured address and its sockets.
#[derive(Debug)]
struct Entry {
    /// Identity across reloads, for the workers' accept loops.
    id: u64,
    /// The address as configured.
    configured: SocketAddr,
    /// The address as bound (port resolved).
    local: SocketAddr,
    /// Sockets not yet taken, by worker index.
    pending: Vec<Vec<TcpListener>>,
    /// A duplicate of every socket of this address, for a binary upgrade.
    handover: Vec<TcpListener>,
}

#[derive(Debug, Default)]
struct Table {
    entries: Vec<Entry>,
    admin: Option<(SocketAddr, TcpListener)>,
    next_id: u64,
    /// The acceptor of each `[[server.tls]]` address, by configured address; the other
    /// addresses are plain HTTP.
    tls: HashMap<SocketAddr, Arc<Acceptor>>,
}

/// The listener table shared by the workers.
#[derive(Debug)]
pub struct Listeners {
    table: Mutex<Table>,
    version: watch::Sender<u64>,
    workers: usize,
}

/// Listener changes bound by a reload that has not been applied yet.
#[derive(Debug, Default)]
pub struct Plan {
    add: Vec<Entry>,
    remove: Vec<SocketAddr>,
}

/// What one worker should run after a change: new sockets, and the identities that are
/// still wanted (any other accept loop stops).
#[derive(Debug, Default)]
pub struct Taken {
    /// Newly available sockets for this worker, with their entry's identity and, for a
    /// TLS listener, its acceptor.
    pub new: Vec<(u64, TcpListener, Option<Arc<Acceptor>>)>,
    /// Every identity in the table.
    pub wanted: HashSet<u64>,
}

/// Opens one listening socket with `SO_REUSEPORT`, so every worker can bind the address.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The sockets for `configured`: the inherited ones spread over the workers (every one is
/// accepted by some worker), and fresh ones for workers left without.
fn open(configured: SocketAddr, workers: usize, inherited: Vec<TcpListener>) -> io::Result<Entry> {
    debug_assert!(workers > 0);
    let context = |e: io::Error| io::Error::new(e.kind(), format!("listen {configured}: {e}"));
    let mut pending: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut handover = Vec::with_capacity(workers.max(inherited.len()));
    for (index, socket) in inherited.into_iter().enumerate() {
        socket.set_nonblocking(true)?;
        handover.push(socket.try_clone()?);
        pending[index % workers].push(socket);
    }
    let mut local = handover.first().map(TcpListener::local_addr).transpose()?;
    for slot in pending.iter_mut().filter(|slot| slot.is_empty()) {
        // A port of 0 is resolved by the first bind and reused, so workers share a port.
        let socket = bind(local.unwrap_or(configured)).map_err(context)?;
        local = Some(socket.local_addr()?);
        handover.push(socket.try_clone()?);
        slot.push(socket);
    }
    let local = local.ok_or_else(|| context(io::Error::other("no socket")))?;
    Ok(Entry { id: 0, configured, local, pending, handover })
}

/// `https` for a TLS listener's configured address, else `http`, for logs.
fn scheme(table: &Table, configured: &SocketAddr) -> &'static str {
    match table.tls.contains_key(configured) {
        true => "https",
        false => "http",
    }
}

/// `addrs` without repeats, in order: one entry per address.
fn distinct(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut seen = HashSet::with_capacity(addrs.len());
    addrs.iter().copied().filter(|addr| seen.insert(*addr)).collect()
}

impl Listeners {
    /// Opens `addrs` for `workers` workers, adopting `inherited` sockets. Inherited sockets
    /// of addresses no longer configured are listed too, so that their queued connections
    /// are accepted; the caller retires them with [`Listeners::retire_unconfigured`].
    pub fn open(
        addrs: &[SocketAddr],
        workers: usize,
        inherited: Inherited,
    ) -> io::Result<Listeners> {
        let mut by_addr: Vec<(SocketAddr, Vec<TcpListener>)> = Vec::new();
        for (configured, socket) in inherited.listeners {
            match by_addr.iter_mut().find(|(addr, _)| *addr == configured) {
                Some((_, sockets)) => sockets.push(socket),
                None => by_addr.push((configured, vec![socket])),
            }
        }
        let mut table = Table { admin: inherited.admin, ..Table::default() };
        let mut wanted = distinct(addrs);
        wanted.extend(by_addr.iter().map(|(addr, _)| *addr).filter(|a| !addrs.contains(a)));
        for configured in wanted {
            let position = by_addr.iter().position(|(addr, _)| *addr == configured);
            let sockets = position.map(|i| by_addr.swap_remove(i).1).unwrap_or_default();
            let mut entry = open(configured, workers, sockets)?;
            entry.id = table.next_id;
            table.next_id += 1;
            table.entries.push(entry);
        }
        let (version, _) = watch::channel(0);
        Ok(Listeners { table: Mutex::new(table), version, workers })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a consistent table: every change is a
        // single push, remove or take.
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the listeners inherited for addresses that `addrs` no longer has, once each
    /// worker accepted what was queued on them.
    pub fn retire_unconfigured(&self, addrs: &[SocketAddr]) {
        let remove: Vec<SocketAddr> = {
            let table = self.lock();
            let extra = table.entries.iter().map(|e| e.configured).filter(|a| !addrs.contains(a));
            extra.collect()
        };
        if !remove.is_empty() {
            self.commit(Plan { add: Vec::new(), remove });
        }
    }

    /// Binds the addresses of `addrs` not open yet and lists the open ones it lacks.
    /// Nothing changes until [`Listeners::commit`]; on error the new sockets close.
    pub fn prepare(&self, addrs: &[SocketAddr]) -> io::Result<Plan> {
        let wanted = distinct(addrs);
        let open_now: Vec<SocketAddr> = self.lock().entries.iter().map(|e| e.configured).collect();
        let mut plan = Plan::default();
        for &addr in wanted.iter().filter(|addr| !open_now.contains(addr)) {
            plan.add.push(open(addr, self.workers, Vec::new())?);
        }
        plan.remove = open_now.into_iter().filter(|addr| !wanted.contains(addr)).collect();
        Ok(plan)
    }

    /// Applies a plan and tells the workers. Connections on a removed address finish.
    pub fn commit(&self, plan: Plan) {
        if plan.add.is_empty() && plan.remove.is_empty() {
            return;
        }
        let mut table = self.lock();
        for addr in &plan.remove {
            if let Some(index) = table.entries.iter().position(|e| e.configured == *addr) {
                let entry = table.entries.remove(index);
                tracing::info!("stopped listening on {}://{}", scheme(&table, addr), entry.local);
            }
        }
        for mut entry in plan.add {
            entry.id = table.next_id;
            table.next_id += 1;
            let scheme = scheme(&table, &entry.configured);
            tracing::info!(workers = self.workers, "listening on {scheme}://{}", entry.local);
            table.entries.push(entry);
        }
        drop(table);
        self.version.send_modify(|version| *version += 1);
    }

    /// The sockets that worker `index` has not taken yet, and the identities still wanted.
    pub fn take(&self, index: usize) -> Taken {
        let mut table = self.lock();
        let mut taken = Taken::default();
        let Table { entries, tls, .. } = &mut *table;
        for entry in entries {
            taken.wanted.insert(entry.id);
            let acceptor = tls.get(&entry.configured);
            if let Some(slot) = entry.pending.get_mut(index) {
                let sockets = std::mem::take(slot).into_iter();
                taken.new.extend(sockets.map(|s| (entry.id, s, acceptor.cloned())));
            }
        }
        taken
    }

    /// Changes to the table, for the workers to follow.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The bound client addresses (ports resolved), in configured order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.lock().entries.iter().map(|entry| entry.local).collect()
    }

    /// The bound addresses of the TLS listeners (`tls`) or of the plain ones.
    pub fn addrs_of_kind(&self, tls: bool) -> Vec<SocketAddr> {
        let table = self.lock();
        let is_tls = |entry: &&Entry| table.tls.contains_key(&entry.configured);
        table.entries.iter().filter(|e| is_tls(e) == tls).map(|entry| entry.local).collect()
    }

    /// Whether a listener configured as `addr` is open.
    pub fn is_open(&self, addr: SocketAddr) -> bool {
        self.lock().entries.iter().any(|entry| entry.configured == addr)
    }

    /// The acceptor of the TLS listener configured as `addr`, if it is one.
    pub fn acceptor(&self, addr: SocketAddr) -> Option<Arc<Acceptor>> {
        self.lock().tls.get(&addr).cloned()
    }

    /// Sets which addresses are TLS listeners, and their acceptors. Call it before the
    /// workers take the sockets of a new address ([`Listeners::commit`]); an address
    /// already served keeps the kind its accept loops started with.
    pub fn set_tls(&self, acceptors: HashMap<SocketAddr, Arc<Acceptor>>) {
        self.lock().tls = acceptors;
    }

    /// Takes the inherited admin socket if it was configured as `addr` there too; one
    /// configured otherwise (or with the admin listener now off) is closed.
    pub fn take_admin(&self, addr: Option<SocketAddr>) -> Option<TcpListener> {
        let (configured, socket) = self.lock().admin.take()?;
        if Some(configured) == addr {
            return Some(socket);
        }
        tracing::warn!("admin listener {configured} is not configured any more; closing it");
        None
    }

    /// Keeps a duplicate of the admin socket for a later upgrade.
    pub fn keep_admin(&self, configured: SocketAddr, socket: &TcpListener) -> io::Result<()> {
        self.lock().admin = Some((configured, socket.try_clone()?));
        Ok(())
    }

    /// Duplicates of every socket, for handing over: client listeners, then the admin one
    /// (`true` marks it).
    pub fn handover(&self) -> io::Result<Vec<(bool, SocketAddr, TcpListener)>> {
        let table = self.lock();
        let mut out = Vec::new();
        for entry in &table.entries {
            for socket in &entry.handover {
                out.push((false, entry.configured, socket.try_clone()?));
            }
        }
        if let Some((configured, socket)) = &table.admin {
            out.push((true, *configured, socket.try_clone()?));
        }
        Ok(out)
    }

    /// Drops the duplicates, on shutdown: once the workers stop accepting, a socket
    /// nobody else holds closes and refuses new connections instead of queueing them.
    pub fn release(&self) {
        let mut table = self.lock();
        for entry in &mut table.entries {
            entry.handover.clear();
            entry.pending.clear();
        }
        table.admin = None;
    }
}
