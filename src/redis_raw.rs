//! tenantry's own connection to one Redis server, for a reply read with
//! [`crate::resp`] instead of the `redis` crate's parser: a presence `list`'s
//! `HGETALL` of thousands of strings (docs/performance-design.md, "Presence
//! list: one reader of our own"). The crate's synchronous `Connection` only
//! hands out parsed values, so the bytes need a socket of our own.
//!
//! Spoken only where it is plain: one server over TCP or a Unix socket, RESP2
//! (the crate's default); a TLS or cluster URL keeps the crate's connections
//! ([`RawTarget::of`] says `None`). The handshake is the crate's: `AUTH` with
//! the URL's credentials, `SELECT` of its database. Errors are the crate's
//! `RedisError`s (I/O, a server's error reply, a malformed reply), so the
//! store maps them as it maps every other call's.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
#[cfg(unix)]
use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, ErrorKind, ProtocolVersion, RedisError, RedisResult};

use crate::resp::{self, Head, Scanner};

/// The smallest read buffer.
const READ_CHUNK: usize = 64 * 1024;

/// Where and how to connect: the address, and the handshake's commands.
pub struct RawTarget {
    addr: RawAddr,
    /// `AUTH` and `SELECT`, packed, or nothing.
    hello: Vec<u8>,
    hello_replies: usize,
}

enum RawAddr {
    Tcp(String, u16),
    #[cfg(unix)]
    Unix(PathBuf),
}

impl RawTarget {
    /// The target of a single-server client; `None` for TLS, RESP3 or any
    /// address this module does not speak.
    pub fn of(info: &ConnectionInfo) -> Option<RawTarget> {
        let settings = info.redis_settings();
        if settings.protocol() != ProtocolVersion::RESP2 {
            return None;
        }
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => RawAddr::Tcp(host.clone(), *port),
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => RawAddr::Unix(path.clone()),
            _ => return None,
        };
        let mut hello = Vec::new();
        let mut hello_replies = 0;
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            hello.extend_from_slice(&auth.get_packed_command());
            hello_replies += 1;
        }
        if settings.db() != 0 {
            hello.extend_from_slice(&redis::cmd("SELECT").arg(settings.db()).get_packed_command());
            hello_replies += 1;
        }
        Some(RawTarget {
            addr,
            hello,
            hello_replies,
        })
    }

    /// A new connection, authenticated and on the URL's database.
    pub fn connect(&self, connect_timeout: Duration, io_timeout: Duration) -> RedisResult<RawConn> {
        let stream = match &self.addr {
            RawAddr::Tcp(host, port) => {
                let mut last = None;
                let mut connected = None;
                for addr in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, connect_timeout) {
                        Ok(s) => {
                            connected = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let stream = match (connected, last) {
                    (Some(s), _) => s,
                    (None, Some(e)) => return Err(e.into()),
                    (None, None) => {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{host} resolves to no address"),
                        )
                        .into())
                    }
                };
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(io_timeout))?;
                stream.set_write_timeout(Some(io_timeout))?;
                Stream::Tcp(stream)
            }
            #[cfg(unix)]
            RawAddr::Unix(path) => {
                let stream = UnixStream::connect(path)?;
                stream.set_read_timeout(Some(io_timeout))?;
                stream.set_write_timeout(Some(io_timeout))?;
                Stream::Unix(stream)
            }
        };
        let mut conn = RawConn {
            stream,
            size_hint: READ_CHUNK,
        };
        if self.hello_replies > 0 {
            let replies = conn.call(&self.hello, self.hello_replies)?;
            for i in 0..self.hello_replies {
                replies.check(i)?;
            }
        }
        Ok(conn)
    }
}

enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

/// One connection: a request written whole, its replies read into one
/// buffer.
pub struct RawConn {
    stream: Stream,
    /// The last reply's size: the next buffer starts at it.
    size_hint: usize,
}

/// Replies read in one go: the bytes, and where each reply starts and ends
/// (reply `i` is `buf[bounds[i]..bounds[i + 1]]`).
pub struct Replies {
    pub buf: Vec<u8>,
    pub bounds: Vec<usize>,
    pub scanner: Scanner,
}

impl Replies {
    /// The `RedisError` the `redis` crate would make of reply `i` when it
    /// is an error reply (its code, kind and message).
    pub fn check(&self, i: usize) -> RedisResult<()> {
        let (start, end) = (self.bounds[i], self.bounds[i + 1]);
        match resp::head(&self.buf, start) {
            Ok(Some((Head::Error(_), _))) => {
                match redis::parse_redis_value(&self.buf[start..end])? {
                    value @ redis::Value::ServerError(_) => value.extract_error().map(drop),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// True when reply `i` is a `NOSCRIPT` error.
    pub fn is_noscript(&self, i: usize) -> bool {
        match resp::head(&self.buf, self.bounds[i]) {
            Ok(Some((Head::Error(msg), _))) => self.buf[msg].starts_with(b"NOSCRIPT"),
            _ => false,
        }
    }
}

impl RawConn {
    /// Writes `request` (packed commands) and reads `replies` whole replies.
    /// An I/O error, a timeout or a malformed reply leaves the connection
    /// in an unknown state: the caller drops it.
    pub fn call(&mut self, request: &[u8], replies: usize) -> RedisResult<Replies> {
        self.call_scanning(request, Scanner::new(0, replies))
    }

    /// Like [`RawConn::call`], with a scanner that may collect a reply's
    /// strings as it passes them ([`Scanner::collecting`]); the scanner is
    /// handed back with the replies.
    pub fn call_scanning(&mut self, request: &[u8], scanner: Scanner) -> RedisResult<Replies> {
        let mut scanner = scanner;
        match &mut self.stream {
            Stream::Tcp(s) => s.write_all(request)?,
            #[cfg(unix)]
            Stream::Unix(s) => s.write_all(request)?,
        }
        // Zeroed once (fresh pages from the allocator), doubled when full.
        let mut buf = vec![0u8; self.size_hint.max(READ_CHUNK)];
        let mut len = 0;
        loop {
            let done = scanner.advance(&buf[..len]).map_err(|e| {
                RedisError::from((ErrorKind::Parse, "malformed reply", e.to_string()))
            })?;
            if done {
                break;
            }
            if len == buf.len() {
                buf.resize(2 * len, 0);
            }
            let read = match &mut self.stream {
                Stream::Tcp(s) => s.read(&mut buf[len..]),
                #[cfg(unix)]
                Stream::Unix(s) => s.read(&mut buf[len..]),
            };
            match read {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )
                    .into());
                }
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(len);
        let bounds = scanner.bounds().to_vec();
        // Bytes past the last reply would be a reply to nothing we sent.
        if bounds.last() != Some(&buf.len()) {
            return Err(RedisError::from((
                ErrorKind::Parse,
                "malformed reply",
                "more bytes than the replies asked for".to_owned(),
            )));
        }
        self.size_hint = buf.len();
        Ok(Replies {
            buf,
            bounds,
            scanner,
        })
    }
}
