//! Serial ports and pseudo-terminals as tokio streams.
//!
//! Why not `tokio-serial`: the `serialport` crate configures Linux ports with the `TCGETS2` ioctl
//! (termios2), which qemu-user does not translate, so every open fails with ENOSYS when our ARM
//! tests run under qemu. A modem only needs a standard baud rate, which classic termios
//! (`TCGETS`/`TCSETS`, translated by qemu) can set. So this module opens the device itself with
//! `nix`, configures it raw 8N1 without flow control, and wraps the non-blocking fd in
//! [`tokio::io::unix::AsyncFd`].
//!
//! Verified: the tests of this module and of the simulator (real ptys, TIOCEXCL, flock, termios)
//! pass natively on x86_64 and as an aarch64 build under qemu-aarch64-static 7.2.
//!
//! The same [`TtyStream`] serves both ends of a pseudo-terminal pair, which is how the modem
//! simulator (`smshub sim`) looks like a serial device to the driver.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::termios::{self, BaudRate, ControlFlags, FlushArg, SetArg, SpecialCharacterIndices};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A serial device or one end of a pty, readable and writable from tokio.
///
/// Reads that fail with EIO are reported as end of file: on Linux that is what a pty master gets
/// once no slave is open, and what a USB serial device gives after it was unplugged. Either way
/// the reader's right reaction is the same as for EOF: the device is gone, reopen it.
#[derive(Debug)]
pub struct TtyStream {
    fd: AsyncFd<OwnedFd>,
    /// Whether we set TIOCEXCL and must clear it on drop (see [`Drop`] below).
    exclusive: bool,
}

impl TtyStream {
    fn new(fd: OwnedFd, exclusive: bool) -> io::Result<Self> {
        // SAFETY: the OwnedFd moves into the AsyncFd, which is its only owner from here on, so
        // the descriptor stays open and unchanged for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(Self { fd, exclusive })
    }
}

impl Drop for TtyStream {
    /// TIOCEXCL stays on a tty until its last close. The simulator keeps its pty slave open, so
    /// without clearing the flag here a driver that closes and reopens the port (as it does after
    /// a timeout) would be locked out of its own device with EBUSY.
    fn drop(&mut self) {
        if self.exclusive {
            // SAFETY: TIOCNXCL takes no argument and only touches the tty behind a valid fd.
            unsafe { nix::libc::ioctl(self.fd.get_ref().as_raw_fd(), nix::libc::TIOCNXCL) };
        }
    }
}

fn baud_rate(baud: u32) -> Option<BaudRate> {
    Some(match baud {
        1200 => BaudRate::B1200,
        2400 => BaudRate::B2400,
        4800 => BaudRate::B4800,
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        115200 => BaudRate::B115200,
        230400 => BaudRate::B230400,
        460800 => BaudRate::B460800,
        921600 => BaudRate::B921600,
        _ => return None,
    })
}

/// Raw 8N1, no flow control, modem lines ignored (CLOCAL), receiver on (CREAD).
fn configure_raw(fd: impl AsFd, baud: Option<BaudRate>) -> nix::Result<()> {
    let mut t = termios::tcgetattr(&fd)?;
    termios::cfmakeraw(&mut t);
    if let Some(b) = baud {
        termios::cfsetspeed(&mut t, b)?;
    }
    t.control_flags &= !(ControlFlags::CSTOPB | ControlFlags::PARENB | ControlFlags::CRTSCTS);
    t.control_flags |= ControlFlags::CS8 | ControlFlags::CLOCAL | ControlFlags::CREAD;
    t.input_flags &= !(termios::InputFlags::IXON | termios::InputFlags::IXOFF);
    // Non-blocking fd anyway; VMIN=1/VTIME=0 keeps read() semantics simple if it ever blocks.
    t.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    t.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    termios::tcsetattr(&fd, SetArg::TCSANOW, &t)
}

fn open_error(path: &Path, what: &str, err: Errno) -> io::Error {
    let hint = match err {
        Errno::ENOENT | Errno::ENODEV | Errno::ENXIO => "device not found: is the modem plugged in? see hardware/",
        Errno::EACCES | Errno::EPERM => "permission denied: add the user to group dialout",
        Errno::EBUSY | Errno::EWOULDBLOCK => "in use by another process (ModemManager?)",
        Errno::ENOTTY => "not a terminal device: check the configured path",
        _ => "cannot use this device",
    };
    io::Error::new(io::Error::from(err).kind(), format!("{}: {what} failed: {hint} ({err})", path.display()))
}

/// Opens a serial device for exclusive use, raw 8N1 at `baud`, without flow control.
///
/// Exclusivity is enforced twice: TIOCEXCL makes further opens fail with EBUSY (except for root,
/// which the kernel lets through), and a non-blocking `flock` catches a second smshub or any
/// other cooperating program even when running as root. Two processes sharing a modem corrupt
/// each other's AT exchanges, so failing loudly is the only safe choice.
///
/// Bytes already waiting in the input queue are discarded: they belong to whoever had the port
/// before (stale URCs, half responses), and the driver rereads SIM storage on start anyway.
pub fn open_serial(path: &Path, baud: u32) -> io::Result<TtyStream> {
    let rate = baud_rate(baud).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: unsupported baud rate {baud} (use a standard rate such as 115200)", path.display()),
        )
    })?;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = open(path, flags, Mode::empty()).map_err(|e| open_error(path, "open", e))?;
    // SAFETY: flock and TIOCEXCL take no pointers; the fd is valid for the duration of the call.
    let rc = unsafe { nix::libc::flock(fd.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
    if rc != 0 {
        return Err(open_error(path, "lock", Errno::last()));
    }
    // SAFETY: as above.
    let rc = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCEXCL) };
    if rc != 0 {
        return Err(open_error(path, "TIOCEXCL", Errno::last()));
    }
    let stream = TtyStream::new(fd, true)?;
    configure_raw(stream.fd.get_ref(), Some(rate)).map_err(|e| open_error(path, "configure (termios)", e))?;
    termios::tcflush(stream.fd.get_ref(), FlushArg::TCIOFLUSH).map_err(|e| open_error(path, "flush", e))?;
    Ok(stream)
}

/// Opens a pseudo-terminal pair, both ends raw, and returns the master as a stream, the slave's
/// path (for a client to open with [`open_serial`]) and the slave fd itself.
///
/// The caller should keep the slave fd open for as long as the pty should exist: while no slave
/// fd is open, Linux makes reads on the master fail with EIO, so a simulator would see a
/// "disconnect" every time its client closes and reopens the port. Holding a slave fd ourselves
/// makes the master behave like a modem that is simply powered on. Dropping the master (and this
/// slave fd) is then the simulated unplug: the client's reads return EOF or EIO.
pub fn open_pty_pair() -> io::Result<(TtyStream, PathBuf, OwnedFd)> {
    let pair = nix::pty::openpty(None, None)
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("openpty failed: {e}")))?;
    let slave_path = nix::unistd::ttyname(&pair.slave)
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("ttyname of new pty slave failed: {e}")))?;
    configure_raw(&pair.slave, Some(BaudRate::B115200)).map_err(|e| {
        io::Error::new(io::Error::from(e).kind(), format!("{}: configure (termios) failed: {e}", slave_path.display()))
    })?;
    // The master shares the slave's line settings; only its fd needs to be non-blocking.
    let flags = nix::fcntl::fcntl(&pair.master, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    nix::fcntl::fcntl(&pair.master, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    let master = TtyStream::new(pair.master, false)?;
    Ok((master, slave_path, pair.slave))
}

impl AsyncRead for TtyStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: the other side of the pty is gone or the device was unplugged; see the
                // type's doc. Reported as EOF (nothing added to `buf`).
                Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for TtyStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // write() hands bytes to the tty layer; there is no user-space buffer to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(10);

    async fn read_exactly(s: &mut TtyStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        timeout(WAIT, s.read_exact(&mut buf)).await.unwrap().unwrap();
        buf
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_between_pty_master_and_opened_slave() {
        let (mut master, path, _slave) = open_pty_pair().unwrap();
        let mut client = open_serial(&path, 115200).unwrap();
        client.write_all(b"AT\r").await.unwrap();
        assert_eq!(read_exactly(&mut master, 3).await, b"AT\r");
        master.write_all(b"\r\nOK\r\n").await.unwrap();
        assert_eq!(read_exactly(&mut client, 6).await, b"\r\nOK\r\n");
    }

    #[tokio::test]
    async fn raw_mode_passes_control_bytes_unchanged() {
        let (mut master, path, _slave) = open_pty_pair().unwrap();
        let mut client = open_serial(&path, 115200).unwrap();
        let bytes = [0x1a, 0x1b, 0x03, 0x11, 0x13, b'\n', b'\r', 0x00, 0xff];
        client.write_all(&bytes).await.unwrap();
        assert_eq!(read_exactly(&mut master, bytes.len()).await, bytes);
        master.write_all(&bytes).await.unwrap();
        assert_eq!(read_exactly(&mut client, bytes.len()).await, bytes);
    }

    #[test]
    fn missing_device_error_names_the_path_and_what_to_do() {
        let err = open_serial(Path::new("/dev/does-not-exist-smshub"), 115200).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/dev/does-not-exist-smshub"), "{msg}");
        assert!(msg.contains("is the modem plugged in"), "{msg}");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn unsupported_baud_rate_is_rejected_with_the_path() {
        let err = open_serial(Path::new("/dev/null"), 12345).unwrap_err();
        assert!(err.to_string().contains("/dev/null"));
        assert!(err.to_string().contains("12345"));
    }

    #[test]
    fn a_non_tty_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let err = open_serial(&file, 115200).unwrap_err();
        assert!(err.to_string().contains("plain"), "{err}");
    }

    #[tokio::test]
    async fn second_open_of_the_same_port_fails_as_busy_and_reopen_works_after_close() {
        let (_master, path, _slave) = open_pty_pair().unwrap();
        let first = open_serial(&path, 115200).unwrap();
        let err = open_serial(&path, 115200).unwrap_err();
        assert!(err.to_string().contains("in use by another process"), "{err}");
        drop(first);
        open_serial(&path, 115200).unwrap();
    }

    #[tokio::test]
    async fn closing_the_master_gives_the_client_eof_or_error() {
        let (master, path, slave) = open_pty_pair().unwrap();
        let mut client = open_serial(&path, 115200).unwrap();
        drop(master);
        drop(slave);
        let mut buf = [0u8; 16];
        // EOF (Ok(0)) or an error (EIO) are both fine; data is not.
        if let Ok(n) = timeout(WAIT, client.read(&mut buf)).await.unwrap() {
            assert_eq!(n, 0);
        }
    }

    #[tokio::test]
    async fn master_does_not_see_eof_while_the_kept_slave_fd_is_open() {
        let (mut master, path, _slave) = open_pty_pair().unwrap();
        let client = open_serial(&path, 115200).unwrap();
        drop(client);
        let mut buf = [0u8; 4];
        // Nothing to read and no EOF: the read must still be pending.
        assert!(timeout(Duration::from_millis(200), master.read(&mut buf)).await.is_err());
    }
}
