//! The handover channel between an old and a new weir process: a Unix `SOCK_SEQPACKET`
//! socket in Linux's abstract namespace, so there is no file to clean up and every
//! message (one short text, at most one file descriptor) arrives whole.
//!
//! Descriptors travel as `SCM_RIGHTS` through `rustix`, which hands received ones back as
//! `OwnedFd`: taking ownership of a descriptor number needs no `unsafe` in weir. Anyone on
//! the host could connect to an abstract name, so each side checks who the peer is
//! (`SO_PEERCRED`) before trusting it ([`Channel::peer_pid`]).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{
    self, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// Longest message text: a keyword and a socket address fit many times over.
pub const MAX_MESSAGE_BYTES: usize = 256;

/// One end of a handover connection.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

fn address(name: &str) -> io::Result<SocketAddrUnix> {
    Ok(SocketAddrUnix::new_abstract_name(name.as_bytes())?)
}

fn seqpacket(flags: SocketFlags) -> io::Result<OwnedFd> {
    let flags = flags | SocketFlags::CLOEXEC;
    Ok(net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, flags, None)?)
}

/// Listens on the abstract `name`, without blocking, for one connection.
pub fn listen(name: &str) -> io::Result<OwnedFd> {
    let fd = seqpacket(SocketFlags::NONBLOCK)?;
    net::bind(&fd, &address(name)?)?;
    net::listen(&fd, 1)?;
    Ok(fd)
}

/// Accepts a waiting connection; `None` when none is waiting yet.
pub fn accept(listener: &OwnedFd) -> io::Result<Option<Channel>> {
    // The accepted socket does not inherit O_NONBLOCK: reads block, up to the timeout.
    match net::accept_with(listener, SocketFlags::CLOEXEC) {
        Ok(fd) => Ok(Some(Channel { fd })),
        Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Connects to the abstract `name`.
pub fn connect(name: &str) -> io::Result<Channel> {
    let fd = seqpacket(SocketFlags::empty())?;
    net::connect(&fd, &address(name)?)?;
    Ok(Channel { fd })
}

impl Channel {
    /// The process id of the peer, as the kernel recorded it at connect time.
    pub fn peer_pid(&self) -> io::Result<u32> {
        let credentials = net::sockopt::socket_peercred(&self.fd)?;
        Ok(credentials.pid.as_raw_pid().unsigned_abs())
    }

    /// Bounds every later send and receive.
    pub fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        // A zero timeout would mean "wait forever" to the kernel.
        let timeout = timeout.max(Duration::from_millis(1));
        net::sockopt::set_socket_timeout(&self.fd, net::sockopt::Timeout::Recv, Some(timeout))?;
        net::sockopt::set_socket_timeout(&self.fd, net::sockopt::Timeout::Send, Some(timeout))?;
        Ok(())
    }

    /// Sends one message: `text` and, optionally, one descriptor.
    pub fn send(&self, text: &str, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        debug_assert!(text.len() <= MAX_MESSAGE_BYTES);
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("control buffer too small"));
        }
        let iov = [IoSlice::new(text.as_bytes())];
        let sent = net::sendmsg(&self.fd, &iov, &mut control, SendFlags::NOSIGNAL)?;
        if sent != text.len() {
            return Err(io::Error::other("short handover message"));
        }
        Ok(())
    }

    /// Receives one message; `None` when the peer closed the connection.
    pub fn recv(&self) -> io::Result<Option<(String, Option<OwnedFd>)>> {
        let mut text = [0u8; MAX_MESSAGE_BYTES];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut text)];
        let message = net::recvmsg(&self.fd, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
        let mut received = None;
        for item in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = item {
                // More than one descriptor breaks the protocol; extras close on drop.
                for fd in fds {
                    received.get_or_insert(fd);
                }
            }
        }
        if message.flags.intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC) {
            return Err(io::Error::other("oversized handover message"));
        }
        if message.bytes == 0 && received.is_none() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&text[..message.bytes]).into_owned();
        Ok(Some((text, received)))
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
