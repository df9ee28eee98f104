//! Whether the client has received every byte corral sent on a connection: the kernel's
//! count of bytes sent but not yet acknowledged by the peer (`SIOCOUTQ`). The stop
//! sequence closes an idle kept-alive connection only once it is zero, so a client still
//! reading its last answer (a slow reader, a full window) finishes it and may send its next
//! request within the idle grace, instead of finding the connection closed.
#![allow(unsafe_code)] // one ioctl on a socket this connection owns

use std::os::fd::RawFd;
use std::time::Duration;

/// How often an undelivered answer is looked at again.
const POLL: Duration = Duration::from_millis(10);

/// Bytes on the socket `fd` not yet acknowledged by the client; `None` when the kernel cannot
/// say (not a TCP socket).
fn unacknowledged(fd: RawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: ioctl(SIOCOUTQ, which is TIOCOUTQ's number) writes one c_int through a pointer
    // to a live local; `fd` is the open socket of the connection being served (its owner is
    // alive for the whole call), and on any other fd the call fails without writing.
    let done = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued as *mut libc::c_int) };
    (done == 0).then(|| queued.max(0) as usize)
}

/// Returns once the client has acknowledged everything sent on `fd` (at once when the
/// kernel cannot tell).
pub(super) async fn until_delivered(fd: RawFd) {
    while unacknowledged(fd).is_some_and(|n| n > 0) {
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn bytes_a_peer_has_not_acknowledged_are_counted_until_it_reads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        peer.set_recv_buffer_size(4096).expect("rcvbuf");
        peer.connect(&listener.local_addr().expect("addr").into())
            .expect("connect");
        let (mut ours, _) = listener.accept().expect("accept");
        assert_eq!(unacknowledged(ours.as_raw_fd()), Some(0));
        ours.set_nonblocking(true).expect("nonblocking");
        // More than the peer's window: some stays unacknowledged while it does not read.
        let _ = ours.write(&[b'x'; 256 * 1024]);
        assert!(unacknowledged(ours.as_raw_fd()).is_some_and(|n| n > 0));
        let mut sink = vec![0u8; 64 * 1024];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while unacknowledged(ours.as_raw_fd()) != Some(0) {
            assert!(std::time::Instant::now() < deadline, "never delivered");
            let _ = std::io::Read::read(&mut &peer, &mut sink);
        }
        assert_eq!(unacknowledged(-1), None);
    }
}
