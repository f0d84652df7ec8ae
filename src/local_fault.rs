//! Local resource exhaustion: errors that say weir itself is out of something (files,
//! memory, socket buffers, local ports), not that a peer failed.
//!
//! They are told apart from backend failures so that running out of files does not
//! eject a healthy backend, is not retried onto another backend (it would fail the same
//! way there), and shows in its own metric, `weir_local_errors_total{op,kind}`.

use std::io;

use rustix::io::Errno;

use crate::shard::Counter;

/// One kind of local resource exhaustion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalFault {
    /// EMFILE: the process's open-file limit.
    ProcessFiles,
    /// ENFILE: the system's open-file limit.
    SystemFiles,
    /// ENOMEM: kernel memory.
    Memory,
    /// ENOBUFS: socket buffer space.
    Buffers,
    /// EADDRNOTAVAIL: no local address or ephemeral port left to connect from.
    LocalAddress,
}

/// Every kind, in metric order.
pub const FAULTS: [LocalFault; 5] = [
    LocalFault::ProcessFiles,
    LocalFault::SystemFiles,
    LocalFault::Memory,
    LocalFault::Buffers,
    LocalFault::LocalAddress,
];

impl LocalFault {
    /// The kind of `error`, if it is local exhaustion.
    pub fn of(error: &io::Error) -> Option<LocalFault> {
        let errno = Errno::from_io_error(error)?;
        FAULTS.into_iter().find(|fault| fault.errno() == errno)
    }

    fn errno(self) -> Errno {
        match self {
            LocalFault::ProcessFiles => Errno::MFILE,
            LocalFault::SystemFiles => Errno::NFILE,
            LocalFault::Memory => Errno::NOMEM,
            LocalFault::Buffers => Errno::NOBUFS,
            LocalFault::LocalAddress => Errno::ADDRNOTAVAIL,
        }
    }

    /// The `kind` label: the errno name in lower case, which is what operators search for.
    pub fn label(self) -> &'static str {
        match self {
            LocalFault::ProcessFiles => "emfile",
            LocalFault::SystemFiles => "enfile",
            LocalFault::Memory => "enomem",
            LocalFault::Buffers => "enobufs",
            LocalFault::LocalAddress => "eaddrnotavail",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where a local fault struck, the `op` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Opening an upstream connection.
    Connect,
    /// Accepting a client connection.
    Accept,
    /// Connecting for an active health probe.
    Probe,
}

/// Every op, in metric order, with its label.
pub const OPS: [(Op, &str); 3] =
    [(Op::Connect, "connect"), (Op::Accept, "accept"), (Op::Probe, "probe")];

/// Local faults counted by op and kind; one set per metrics shard.
#[derive(Debug, Default)]
pub struct LocalErrors([[Counter; FAULTS.len()]; OPS.len()]);

impl LocalErrors {
    /// Counts one fault.
    pub fn record(&self, op: Op, fault: LocalFault) {
        self.0[op as usize][fault.index()].inc();
    }

    /// The count of one op and kind.
    pub fn get(&self, op: Op, fault: LocalFault) -> u64 {
        self.0[op as usize][fault.index()].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_exhaustion_is_told_from_peer_failures() {
        let os = |errno: Errno| io::Error::from_raw_os_error(errno.raw_os_error());
        assert_eq!(LocalFault::of(&os(Errno::MFILE)), Some(LocalFault::ProcessFiles));
        assert_eq!(LocalFault::of(&os(Errno::NFILE)), Some(LocalFault::SystemFiles));
        assert_eq!(LocalFault::of(&os(Errno::NOMEM)), Some(LocalFault::Memory));
        assert_eq!(LocalFault::of(&os(Errno::NOBUFS)), Some(LocalFault::Buffers));
        assert_eq!(LocalFault::of(&os(Errno::ADDRNOTAVAIL)), Some(LocalFault::LocalAddress));
        // What a dead, unreachable or misbehaving backend causes stays a backend failure.
        for errno in [Errno::CONNREFUSED, Errno::CONNRESET, Errno::TIMEDOUT, Errno::HOSTUNREACH] {
            assert_eq!(LocalFault::of(&os(errno)), None, "{errno}");
        }
        assert_eq!(LocalFault::of(&io::ErrorKind::ConnectionRefused.into()), None);
        let labels: Vec<_> = FAULTS.iter().map(|f| f.label()).collect();
        assert_eq!(labels, ["emfile", "enfile", "enomem", "enobufs", "eaddrnotavail"]);
    }

    #[test]
    fn counts_by_op_and_kind() {
        let errors = LocalErrors::default();
        errors.record(Op::Accept, LocalFault::ProcessFiles);
        errors.record(Op::Connect, LocalFault::LocalAddress);
        errors.record(Op::Connect, LocalFault::LocalAddress);
        assert_eq!(errors.get(Op::Accept, LocalFault::ProcessFiles), 1);
        assert_eq!(errors.get(Op::Connect, LocalFault::ProcessFiles), 0);
        assert_eq!(errors.get(Op::Connect, LocalFault::LocalAddress), 2);
    }
}
