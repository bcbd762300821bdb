//! The Redis connection layer shared by every Redis backend (presence and
//! state): one pool per URL, shared by all tenants; Lua scripts run by SHA
//! (`EVALSHA`), sent whole (`EVAL`) on `NOSCRIPT`; connect and I/O timeouts;
//! transparent reconnection; and errors that name the server without its
//! password.
//!
//! Backends only see [`RedisStore::eval`] (one script, its keys, its
//! arguments: one round trip), [`RedisStore::query`] (one plain command) and
//! [`RedisStore::ping`]. Keys are passed separately from arguments and every
//! call touches keys of one hash tag only, so on a Redis Cluster
//! (`redis+cluster://` URLs, see [`crate::redis_url`]) each call is routed by
//! the slot of its first key and stays one round trip; `MOVED`/`ASK`
//! redirections after a resharding are followed by the cluster client.
//!
//! Built on the `redis` crate's synchronous connections (single server and
//! cluster): no async runtime in the extension. Callers release the GIL
//! around these calls.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
#[cfg(feature = "redis-cluster")]
use redis::cluster::{ClusterClient, ClusterConnection};
#[cfg(feature = "redis-tls")]
use redis::TlsCertificates;
#[cfg(all(feature = "redis-tls", feature = "redis-cluster"))]
use redis::TlsMode;
use redis::{Client, Connection, ConnectionLike, ErrorKind, RedisError, RedisResult, Value};

use crate::redis_raw::{RawConn, RawTarget};
use crate::redis_url::{self, Endpoint, Tls};
use crate::resp;

/// Idle connections kept per pool; more concurrent callers open more
/// connections, and those above this number are closed when returned.
pub const MAX_IDLE: usize = 16;
/// Longest accepted connect or I/O timeout, in seconds.
pub const MAX_TIMEOUT_SECS: f64 = 300.0;
/// Keys per `DEL` of [`RedisStore::delete`].
pub const DELETE_BATCH: usize = 500;
/// Retries of a cluster call after a redirection (`MOVED`/`ASK`), a
/// `TRYAGAIN`/`CLUSTERDOWN` reply or a dropped node connection. Small, so an
/// unreachable node fails fast instead of backing off for seconds.
pub const CLUSTER_RETRIES: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StoreOptions {
    /// Bound on establishing a connection (TCP connect and handshake).
    pub connect_timeout: Duration,
    /// Bound on each read and write once connected.
    pub io_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
        }
    }
}

/// A timeout in seconds from configuration or a constructor argument.
pub fn timeout_from_secs(what: &str, value: f64) -> Result<Duration, StoreError> {
    if !(value > 0.0 && value <= MAX_TIMEOUT_SECS) {
        return Err(StoreError::InvalidConfig {
            reason: format!(
                "{what} must be a number of seconds greater than 0 and at most \
                 {MAX_TIMEOUT_SECS}, got {value}"
            ),
        });
    }
    Duration::try_from_secs_f64(value).map_err(|e| StoreError::InvalidConfig {
        reason: format!("{what}: {e}"),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The URL or an option cannot work; nothing was attempted.
    InvalidConfig { reason: String },
    /// Redis could not be reached, timed out, or is not serving (loading,
    /// read-only replica, out of memory, cluster down...). Retry later.
    Unavailable { url: String, detail: String },
    /// Redis answered with an error or a reply the backend did not expect.
    Failed { url: String, detail: String },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InvalidConfig { reason } => f.write_str(reason),
            StoreError::Unavailable { url, detail } => {
                write!(f, "Redis at {url} is unavailable: {detail}")
            }
            StoreError::Failed { url, detail } => write!(f, "Redis at {url} failed: {detail}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A Lua script and its SHA1, computed once.
pub struct Script {
    code: &'static str,
    sha: String,
}

impl Script {
    pub fn new(code: &'static str) -> Script {
        Script {
            code,
            sha: redis::Script::new(code).get_hash().to_owned(),
        }
    }

    pub fn sha(&self) -> &str {
        &self.sha
    }
}

/// `EVALSHA`/`EVAL` of `body` with `keys` and `args`.
fn script_cmd(name: &str, body: &str, keys: &[&str], args: &[Arg<'_>]) -> redis::Cmd {
    let mut cmd = redis::cmd(name);
    cmd.arg(body).arg(keys.len()).arg(keys);
    for arg in args {
        match *arg {
            Arg::Str(s) => cmd.arg(s),
            Arg::Bytes(b) => cmd.arg(b),
            Arg::Int(i) => cmd.arg(i),
            Arg::Float(x) => cmd.arg(x),
        };
    }
    cmd
}

/// A script argument.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
    Int(i64),
    Float(f64),
}

/// Where commands go: one server, or a cluster routed by each call's first
/// key.
enum Target {
    Single(Client),
    #[cfg(feature = "redis-cluster")]
    Cluster(ClusterClient),
}

/// A pooled connection.
enum Conn {
    Single(Connection),
    /// Holds one connection per node it has talked to, and the slot map.
    #[cfg(feature = "redis-cluster")]
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => c.as_mut(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Single(c) => c.is_open(),
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => c.is_open(),
        }
    }
}

pub struct RedisStore {
    /// The URL with its password hidden, for messages.
    url: String,
    /// The password, so it can be scrubbed from error details too.
    secret: Option<String>,
    options: StoreOptions,
    target: Target,
    idle: Mutex<Vec<Conn>>,
    /// A plain single server: connections of our own for the replies
    /// [`RedisStore::eval_then_spans`] reads (`None`: TLS, cluster).
    raw: Option<RawTarget>,
    raw_idle: Mutex<Vec<RawConn>>,
}

type RegistryKey = (String, StoreOptions);

/// One store per (URL, options), shared by every backend and tenant while
/// any of them is alive.
static REGISTRY: LazyLock<Mutex<HashMap<RegistryKey, Weak<RedisStore>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The custom CA of a TLS URL (`ssl_ca_certs`), read once when the store is
/// made, so a missing file is a configuration error naming the path.
#[cfg(feature = "redis-tls")]
fn tls_certificates(url: &str, tls: Option<&Tls>) -> Result<Option<TlsCertificates>, StoreError> {
    let Some(path) = tls.and_then(|t| t.ca_certs.as_deref()) else {
        return Ok(None);
    };
    let root_cert = std::fs::read(path).map_err(|e| StoreError::InvalidConfig {
        reason: format!("cannot read ssl_ca_certs {path:?} of Redis URL {url}: {e}"),
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    }))
}

/// A client for one server, trusting the custom CA of a TLS URL. The outer
/// error is an unreadable CA file, the inner one the `redis` crate's refusal.
fn single_client(
    redacted: &str,
    url: &str,
    tls: Option<&Tls>,
) -> Result<RedisResult<Client>, StoreError> {
    #[cfg(feature = "redis-tls")]
    if let Some(certs) = tls_certificates(redacted, tls)? {
        return Ok(Client::build_with_tls(url, certs));
    }
    // Without TLS support redis_url::endpoint has refused a TLS URL already.
    #[cfg(not(feature = "redis-tls"))]
    let _ = (redacted, tls);
    Ok(Client::open(url))
}

impl RedisStore {
    /// The shared store for `url`, created (without connecting) if needed.
    pub fn shared(url: &str, options: StoreOptions) -> Result<Arc<RedisStore>, StoreError> {
        let key = (url.to_owned(), options);
        let mut registry = REGISTRY.lock();
        if let Some(store) = registry.get(&key).and_then(Weak::upgrade) {
            return Ok(store);
        }
        let store = Arc::new(RedisStore::new(url, options)?);
        registry.retain(|_, weak| weak.strong_count() > 0);
        registry.insert(key, Arc::downgrade(&store));
        Ok(store)
    }

    /// A store of its own (not shared); does not connect.
    pub fn new(url: &str, options: StoreOptions) -> Result<RedisStore, StoreError> {
        let endpoint = redis_url::endpoint(url).map_err(|e| StoreError::InvalidConfig {
            reason: format!("invalid Redis URL: {e}"),
        })?;
        let redacted = redis_url::redact(url);
        let refused = |e: RedisError| StoreError::InvalidConfig {
            reason: format!("cannot use Redis URL {redacted}: {}", e.to_string().trim()),
        };
        let (target, secret, raw) = match endpoint {
            Endpoint::Single { url, tls } => {
                let client = single_client(&redacted, &url, tls.as_ref())?.map_err(refused)?;
                let secret = client
                    .get_connection_info()
                    .redis_settings()
                    .password()
                    .map(str::to_owned);
                let raw = RawTarget::of(client.get_connection_info());
                (Target::Single(client), secret, raw)
            }
            #[cfg(not(feature = "redis-cluster"))]
            Endpoint::Cluster { .. } => {
                // redis_url::endpoint refuses a cluster URL in this build.
                return Err(StoreError::InvalidConfig {
                    reason: format!("cannot use Redis URL {redacted}: no Redis Cluster support"),
                });
            }
            #[cfg(feature = "redis-cluster")]
            Endpoint::Cluster { nodes, tls } => {
                // Every seed carries the same credentials; read them once.
                let first = Client::open(nodes[0].as_str()).map_err(refused)?;
                let secret = first
                    .get_connection_info()
                    .redis_settings()
                    .password()
                    .map(str::to_owned);
                let mut builder = ClusterClient::builder(nodes)
                    .connection_timeout(options.connect_timeout)
                    .response_timeout(options.io_timeout)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                #[cfg(feature = "redis-tls")]
                {
                    if let Some(tls) = &tls {
                        builder = builder.tls(if tls.verify {
                            TlsMode::Secure
                        } else {
                            TlsMode::Insecure
                        });
                    }
                    if let Some(certs) = tls_certificates(&redacted, tls.as_ref())? {
                        builder = builder.certs(certs);
                    }
                }
                #[cfg(not(feature = "redis-tls"))]
                let _: Option<Tls> = tls; // redis_url::endpoint refuses TLS in this build
                let client = builder.build().map_err(refused)?;
                (Target::Cluster(client), secret, None)
            }
        };
        Ok(RedisStore {
            url: redacted,
            secret: secret.filter(|p| !p.is_empty()),
            options,
            target,
            idle: Mutex::new(Vec::new()),
            raw,
            raw_idle: Mutex::new(Vec::new()),
        })
    }

    /// True for a `redis+cluster://` store.
    pub fn is_cluster(&self) -> bool {
        #[cfg(feature = "redis-cluster")]
        return matches!(self.target, Target::Cluster(_));
        #[cfg(not(feature = "redis-cluster"))]
        false
    }

    /// The URL with the password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// Runs `script` with `keys` and `args`: one `EVALSHA` round trip (plus
    /// an `EVAL` of the whole script the first time a server sees it). Retried
    /// once on a fresh connection when a pooled one turns out to be dead: use
    /// it for idempotent scripts only (see [`RedisStore::eval_once`]).
    pub fn eval(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[Arg<'_>],
    ) -> Result<Value, StoreError> {
        self.eval_with(script, keys, args, true)
    }

    /// Like [`RedisStore::eval`], never sent twice: for scripts that must not
    /// run twice (an increment). After a Redis restart the first such call on
    /// a pooled connection may fail with `Unavailable`; the next one works.
    pub fn eval_once(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[Arg<'_>],
    ) -> Result<Value, StoreError> {
        self.eval_with(script, keys, args, false)
    }

    /// Runs `script` (idempotent), then `then`, a read of the same keys
    /// (one hash tag), in one pipeline: one round trip, atomic per command.
    /// For a large read that is the script's result: Redis serves `then`
    /// natively instead of passing its reply through a Lua table (for a
    /// 1,000-user presence room, three quarters of the script's time).
    /// Returns `then`'s reply.
    pub fn eval_then(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[Arg<'_>],
        then: &redis::Cmd,
    ) -> Result<Value, StoreError> {
        let piped = |eval: redis::Cmd| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors()
                .add_command(eval)
                .add_command(then.clone());
            pipe
        };
        let evalsha = piped(script_cmd("EVALSHA", &script.sha, keys, args));
        let eval = std::cell::OnceCell::new();
        // A cluster connection sends a packed pipeline to the node of its
        // first command's key (every key here shares one hash tag); its
        // `Pipeline::query` refuses, so the packed commands go directly.
        let send = |conn: &mut Conn, pipe: &redis::Pipeline| -> RedisResult<Vec<Value>> {
            match conn {
                Conn::Single(c) => pipe.query(c),
                #[cfg(feature = "redis-cluster")]
                Conn::Cluster(c) => c.req_packed_commands(&pipe.get_packed_pipeline(), 0, 2),
            }
        };
        let noscript = |sent: &RedisResult<Vec<Value>>| match sent {
            Ok(replies) => {
                matches!(replies.first(), Some(Value::ServerError(e)) if e.code() == "NOSCRIPT")
            }
            Err(e) => e.code() == Some("NOSCRIPT"),
        };
        self.run(true, |conn| {
            let mut sent = send(conn, &evalsha);
            if noscript(&sent) {
                let whole = eval.get_or_init(|| piped(script_cmd("EVAL", script.code, keys, args)));
                sent = send(conn, whole);
            }
            let mut replies = sent?.into_iter();
            match (replies.next(), replies.next()) {
                (Some(first), Some(second)) => {
                    first.extract_error()?;
                    second.extract_error()
                }
                _ => Err(RedisError::from((
                    ErrorKind::Client,
                    "a pipeline of two commands got fewer replies",
                ))),
            }
        })
    }

    /// Like [`RedisStore::eval_then`], for a `then` that answers an array
    /// of bulk strings (`HGETALL`): the reply's bytes and each string's
    /// span in them. On a plain single server the reply is read by
    /// tenantry's own reader on a connection of its own (one pool of them
    /// per store, beside the crate's: [`crate::redis_raw`]), nothing parsed
    /// into values; over TLS or on a cluster, by the `redis` crate.
    pub fn eval_then_spans(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[Arg<'_>],
        then: &redis::Cmd,
    ) -> Result<(Vec<u8>, Vec<Range<usize>>), StoreError> {
        let Some(target) = &self.raw else {
            let reply = self.eval_then(script, keys, args, then)?;
            return self.spans_of(reply);
        };
        let request = |name: &str, body: &str| {
            let mut packed = script_cmd(name, body, keys, args).get_packed_command();
            packed.extend_from_slice(&then.get_packed_command());
            packed
        };
        let evalsha = request("EVALSHA", &script.sha);
        let eval = std::cell::OnceCell::new();
        self.raw_run(target, |conn| {
            // `then`'s strings are kept as the reply is scanned.
            let scanner = || resp::Scanner::collecting(0, 2, 1);
            let mut replies = conn.call_scanning(&evalsha, scanner())?;
            if replies.is_noscript(0) {
                let whole = eval.get_or_init(|| request("EVAL", script.code));
                replies = conn.call_scanning(whole, scanner())?;
            }
            replies.check(0)?;
            replies.check(1)?;
            let spans = replies.scanner.bulk_strings(&replies.buf).map_err(|e| {
                RedisError::from((ErrorKind::Parse, "malformed reply", e.to_string()))
            })?;
            Ok((replies.buf, spans))
        })
    }

    /// The bulk strings of a reply the `redis` crate parsed, packed into one
    /// buffer as [`RedisStore::eval_then_spans`] returns them.
    fn spans_of(&self, reply: Value) -> Result<(Vec<u8>, Vec<Range<usize>>), StoreError> {
        let items = match reply {
            Value::Array(items) => items,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => return Err(self.unexpected("HGETALL", &other)),
        };
        let bulk = |v: &Value| match v {
            Value::BulkString(b) => Some(b.len()),
            _ => None,
        };
        let mut packed = Vec::with_capacity(items.iter().filter_map(bulk).sum());
        let mut spans = Vec::with_capacity(items.len());
        for item in &items {
            let Value::BulkString(b) = item else {
                return Err(self.unexpected("HGETALL", item));
            };
            spans.push(packed.len()..packed.len() + b.len());
            packed.extend_from_slice(b);
        }
        Ok((packed, spans))
    }

    /// [`RedisStore::run`] on a connection of our own.
    fn raw_run<T, F>(&self, target: &RawTarget, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(&mut RawConn) -> RedisResult<T>,
    {
        let connect = || {
            target
                .connect(self.options.connect_timeout, self.options.io_timeout)
                .map_err(|e| self.unavailable(&e))
        };
        let pooled = self.raw_idle.lock().pop();
        let (mut conn, reused) = match pooled {
            Some(conn) => (conn, true),
            None => (connect()?, false),
        };
        let mut result = op(&mut conn);
        if let Err(e) = &result {
            if reused && e.is_connection_dropped() && !e.is_timeout() {
                // The others idle since before that are most likely dead too.
                let stale = std::mem::take(&mut *self.raw_idle.lock());
                drop(stale);
                conn = connect()?;
                result = op(&mut conn);
            }
        }
        match result {
            Ok(value) => {
                self.raw_checkin(conn);
                Ok(value)
            }
            Err(e) => {
                // Only a server's error reply (of a known code or not)
                // leaves the connection in step.
                if matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
                    self.raw_checkin(conn);
                }
                Err(self.error_of(&e))
            }
        }
    }

    fn raw_checkin(&self, conn: RawConn) {
        let mut idle = self.raw_idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn eval_with(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[Arg<'_>],
        retry: bool,
    ) -> Result<Value, StoreError> {
        let build = |name: &str, body: &str| script_cmd(name, body, keys, args);
        let evalsha = build("EVALSHA", &script.sha);
        // Sent whole on NOSCRIPT: routed like EVALSHA (by its first key, on
        // a cluster), and it caches the script on that server.
        let eval = std::cell::OnceCell::new();
        self.run(retry, |conn| {
            let conn = conn.like();
            match evalsha.query::<Value>(conn) {
                Err(e) if e.code() == Some("NOSCRIPT") => eval
                    .get_or_init(|| build("EVAL", script.code))
                    .query::<Value>(conn),
                other => other,
            }
        })
    }

    /// One plain command (its keys of one hash tag): one round trip. Retried
    /// like [`RedisStore::eval`], so for idempotent commands only.
    pub fn query(&self, cmd: &redis::Cmd) -> Result<Value, StoreError> {
        self.run(true, |conn| cmd.query::<Value>(conn.like()))
    }

    /// `PING` (on a cluster: one node); returns the round-trip time.
    pub fn ping(&self) -> Result<Duration, StoreError> {
        let start = Instant::now();
        self.run(true, |conn| redis::cmd("PING").query::<Value>(conn.like()))?;
        Ok(start.elapsed())
    }

    /// `(host, port)` of every primary of a cluster (from `CLUSTER SLOTS`);
    /// empty for a single server.
    pub fn cluster_primaries(&self) -> Result<Vec<(String, u16)>, StoreError> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let reply = self.run(true, |conn| {
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<Value>(conn.like())
        })?;
        let mut primaries = Vec::new();
        if let Value::Array(ranges) = &reply {
            for range in ranges {
                let Value::Array(parts) = range else { continue };
                let Some(Value::Array(node)) = parts.get(2) else {
                    continue;
                };
                let host = match node.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => continue,
                };
                let Some(Value::Int(port)) = node.get(1) else {
                    continue;
                };
                let Ok(port) = u16::try_from(*port) else {
                    continue;
                };
                if !primaries.contains(&(host.clone(), port)) {
                    primaries.push((host, port));
                }
            }
        }
        if primaries.is_empty() {
            return Err(self.unexpected("CLUSTER SLOTS", &reply));
        }
        Ok(primaries)
    }

    /// Every key matching the glob `pattern`: `SCAN ... MATCH` of the
    /// server, or of every primary of a cluster (a pattern with a hash tag
    /// matches keys of one slot, but the scan does not rely on knowing which
    /// node holds it while a cluster reshards).
    pub fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let nodes = self.cluster_primaries()?;
        let targets: Vec<Option<&(String, u16)>> = if nodes.is_empty() {
            vec![None]
        } else {
            nodes.iter().map(Some).collect()
        };
        let mut found = Vec::new();
        for node in targets {
            let mut cursor = b"0".to_vec();
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(&cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = self.query_node(node, &cmd)?;
                let Value::Array(parts) = &reply else {
                    return Err(self.unexpected("SCAN", &reply));
                };
                let (Some(Value::BulkString(next)), Some(Value::Array(keys))) =
                    (parts.first(), parts.get(1))
                else {
                    return Err(self.unexpected("SCAN", &reply));
                };
                for key in keys {
                    match key {
                        Value::BulkString(k) => found.push(k.clone()),
                        _ => return Err(self.unexpected("SCAN", &reply)),
                    }
                }
                if next.as_slice() == b"0" {
                    break;
                }
                cursor.clone_from(next);
            }
        }
        found.sort_unstable();
        found.dedup(); // SCAN may return a key twice
        Ok(found)
    }

    /// `DEL` of `keys`, [`DELETE_BATCH`] at a time; the number deleted. On a
    /// cluster the keys of one call must share a slot (one hash tag).
    pub fn delete(&self, keys: &[Vec<u8>]) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for batch in keys.chunks(DELETE_BATCH) {
            let mut cmd = redis::cmd("DEL");
            for key in batch {
                cmd.arg(key.as_slice());
            }
            match self.query(&cmd)? {
                Value::Int(n) => deleted += n.max(0) as u64,
                other => return Err(self.unexpected("DEL", &other)),
            }
        }
        Ok(deleted)
    }

    /// One command sent to one cluster node by address (`SCAN` of that
    /// node); on a single server, to the server.
    pub fn query_node(
        &self,
        node: Option<&(String, u16)>,
        cmd: &redis::Cmd,
    ) -> Result<Value, StoreError> {
        #[cfg(feature = "redis-cluster")]
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        #[cfg(not(feature = "redis-cluster"))]
        let _ = node; // no cluster: every command goes to the one server
        self.run(true, |conn| match (node, conn) {
            #[cfg(feature = "redis-cluster")]
            (Some((host, port)), Conn::Cluster(c)) => c.route_command(
                cmd,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                }),
            ),
            (_, conn) => cmd.query::<Value>(conn.like()),
        })
    }

    /// Runs `op` on a pooled connection. A pooled connection the server has
    /// closed meanwhile (restart, idle timeout) is replaced and, when `retry`
    /// is set, `op` runs once more on a fresh connection (every retried
    /// operation of our backends is idempotent).
    fn run<F>(&self, retry: bool, mut op: F) -> Result<Value, StoreError>
    where
        F: FnMut(&mut Conn) -> RedisResult<Value>,
    {
        let (mut conn, reused) = self.checkout()?;
        match op(&mut conn) {
            Ok(value) => {
                self.checkin(conn);
                Ok(value)
            }
            Err(e) if reused && e.is_connection_dropped() && !e.is_timeout() => {
                drop(conn);
                // The others idle since before that are most likely dead too.
                let stale = std::mem::take(&mut *self.idle.lock());
                drop(stale);
                if !retry {
                    return Err(self.unavailable(&e));
                }
                let mut conn = self.connect()?;
                match op(&mut conn) {
                    Ok(value) => {
                        self.checkin(conn);
                        Ok(value)
                    }
                    Err(e) => Err(self.failed(conn, &e)),
                }
            }
            Err(e) => Err(self.failed(conn, &e)),
        }
    }

    fn checkout(&self) -> Result<(Conn, bool), StoreError> {
        if let Some(conn) = self.idle.lock().pop() {
            return Ok((conn, true));
        }
        Ok((self.connect()?, false))
    }

    fn checkin(&self, conn: Conn) {
        if !conn.is_open() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let io = Some(self.options.io_timeout);
        match &self.target {
            Target::Single(client) => {
                let conn = client
                    .get_connection_with_timeout(self.options.connect_timeout)
                    .map_err(|e| self.unavailable(&e))?;
                conn.set_read_timeout(io)
                    .and_then(|()| conn.set_write_timeout(io))
                    .map_err(|e| self.unavailable(&e))?;
                Ok(Conn::Single(conn))
            }
            #[cfg(feature = "redis-cluster")]
            Target::Cluster(client) => {
                // Connects to a seed, reads the slot map and connects to the
                // primaries (each bounded by the connect timeout).
                let conn = client.get_connection().map_err(|e| self.unavailable(&e))?;
                conn.set_read_timeout(io)
                    .and_then(|()| conn.set_write_timeout(io))
                    .map_err(|e| self.unavailable(&e))?;
                Ok(Conn::Cluster(Box::new(conn)))
            }
        }
    }

    /// Maps an error and keeps the connection only when the server answered
    /// (an error reply leaves the connection in a known state; an I/O error
    /// or a timeout may leave a reply in flight, so that connection goes).
    fn failed(&self, conn: Conn, e: &RedisError) -> StoreError {
        if matches!(e.kind(), ErrorKind::Server(_)) {
            self.checkin(conn);
        }
        self.error_of(e)
    }

    fn error_of(&self, e: &RedisError) -> StoreError {
        if is_unavailability(e) {
            self.unavailable(e)
        } else {
            StoreError::Failed {
                url: self.url.clone(),
                detail: self.scrub(e),
            }
        }
    }

    fn unavailable(&self, e: &RedisError) -> StoreError {
        StoreError::Unavailable {
            url: self.url.clone(),
            detail: self.scrub(e),
        }
    }

    /// The error's text, never containing the password.
    fn scrub(&self, e: &RedisError) -> String {
        let mut text = e.to_string().trim().to_owned();
        if let Some(secret) = &self.secret {
            text = text.replace(secret.as_str(), "***");
        }
        if text.is_empty() {
            text = "unknown error".to_owned();
        }
        text
    }

    /// A reply the backend did not expect.
    pub fn unexpected(&self, what: &str, value: &Value) -> StoreError {
        let mut shown = format!("{value:?}");
        if shown.len() > 120 {
            let mut cut = 120;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push('…');
        }
        StoreError::Failed {
            url: self.url.clone(),
            detail: format!("unexpected reply to {what}: {shown}"),
        }
    }
}

/// Errors that say "Redis cannot serve now" rather than "this call is wrong".
fn is_unavailability(e: &RedisError) -> bool {
    if matches!(
        e.kind(),
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound
    ) || e.is_timeout()
        || e.is_connection_dropped()
    {
        return true;
    }
    // A cluster whose slot map has a hole (a node down, no replica).
    if matches!(e.kind(), ErrorKind::Client) && e.to_string().contains("slot") {
        return true;
    }
    matches!(
        e.code(),
        Some(
            "LOADING"
                | "BUSY"
                | "MASTERDOWN"
                | "READONLY"
                | "CLUSTERDOWN"
                | "TRYAGAIN"
                | "OOM"
                | "NOAUTH"
                | "WRONGPASS"
        )
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};

    /// A loopback port with nothing listening on it.
    pub fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        port
    }

    /// A throwaway redis-server on a free loopback port, when one is
    /// installed (scripts/test.sh installs it; the Python suite exercises
    /// the same scripts through the bindings either way).
    pub struct Server(Child, u16, std::path::PathBuf);

    impl Server {
        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/0", self.1)
        }

        /// A server for a test that needs one: `redis-server` missing is a
        /// failure, never a silent pass (scripts/test.sh installs it).
        pub fn require() -> Server {
            match Server::start() {
                Some(server) => server,
                None => panic!(
                    "this test needs redis-server on PATH (Debian's redis-server; \
                     scripts/test.sh installs it)"
                ),
            }
        }

        pub fn start() -> Option<Server> {
            let port = closed_port();
            let dir = std::env::temp_dir().join(format!("tenantry-redis-{port}"));
            std::fs::create_dir_all(&dir).ok()?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let server = Server(child, port, dir);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(server);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.2);
        }
    }

    #[test]
    fn stores_are_shared_per_url_and_do_not_connect() {
        let url = format!("redis://127.0.0.1:{}/0", closed_port());
        let a = RedisStore::shared(&url, StoreOptions::default()).unwrap();
        let b = RedisStore::shared(&url, StoreOptions::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = format!("redis://127.0.0.1:{}/1", closed_port());
        let c = RedisStore::shared(&other, StoreOptions::default()).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn unreachable_servers_fail_fast_without_the_password() {
        let url = format!("redis://user:hunter2@127.0.0.1:{}/0", closed_port());
        let store = RedisStore::new(&url, StoreOptions::default()).unwrap();
        let start = Instant::now();
        let err = store.ping().unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{msg}");
        assert!(
            msg.contains("127.0.0.1") && msg.contains("user:***@"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn bad_urls_and_timeouts_are_refused_up_front() {
        assert!(matches!(
            RedisStore::new("http://x", StoreOptions::default()),
            Err(StoreError::InvalidConfig { .. })
        ));
        let err = RedisStore::new("redis://:pw@h:bad", StoreOptions::default())
            .err()
            .unwrap();
        assert!(!err.to_string().contains("pw@"), "{err}");
        assert!(timeout_from_secs("x", 0.0).is_err());
        assert!(timeout_from_secs("x", 0.5).is_ok());
    }

    #[test]
    fn scan_finds_one_tenants_keys_and_delete_removes_only_them() {
        use crate::keys::{format_key, tenant_key_pattern, KeyPrefix, Kind};
        use crate::tenant_id::TenantId;

        let server = Server::require();
        let store = RedisStore::shared(&server.url(), StoreOptions::default()).unwrap();
        let prefix = KeyPrefix::new("scan*test").unwrap(); // a glob character in the prefix
        let (acme, acme2) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("acme2").unwrap(),
        );
        let mut set = redis::cmd("MSET");
        for n in 0..1200 {
            set.arg(format_key(&prefix, &acme, Kind::State, &format!("k{n}")))
                .arg(1);
        }
        set.arg(format_key(&prefix, &acme2, Kind::State, "k0"))
            .arg(1);
        // Another prefix the glob would match unescaped.
        set.arg("scanXtest:{tenant:acme}:state:k0").arg(1);
        store.query(&set).unwrap();
        let pattern = tenant_key_pattern(&prefix, &acme);
        let found = store.scan(&pattern).unwrap();
        assert_eq!(found.len(), 1200);
        assert_eq!(store.delete(&found).unwrap(), 1200); // three DEL batches
        assert!(store.scan(&pattern).unwrap().is_empty());
        let rest = store.scan("*").unwrap();
        assert_eq!(rest.len(), 2, "{rest:?}");
    }

    #[test]
    fn script_hashes_are_sha1() {
        let s = Script::new("return 1");
        assert_eq!(s.sha().len(), 40);
        assert_eq!(s.sha(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    type Fields = HashMap<Vec<u8>, Vec<u8>>;

    fn fields(buf: &[u8], spans: &[Range<usize>]) -> Fields {
        assert_eq!(spans.len() % 2, 0);
        spans
            .chunks(2)
            .map(|p| (buf[p[0].clone()].to_vec(), buf[p[1].clone()].to_vec()))
            .collect()
    }

    /// The reply read by tenantry's own reader, and by the crate's.
    fn both(store: &RedisStore, script: &Script, key: &str) -> (Fields, Fields) {
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(key);
        let (buf, spans) = store
            .eval_then_spans(script, &[key], &[], &hgetall)
            .unwrap();
        let crate_reply = store.eval_then(script, &[key], &[], &hgetall).unwrap();
        let (cbuf, cspans) = store.spans_of(crate_reply).unwrap();
        (fields(&buf, &spans), fields(&cbuf, &cspans))
    }

    #[test]
    fn our_reader_reads_what_the_crate_reads() {
        let server = Server::require();
        let store = RedisStore::new(&server.url(), StoreOptions::default()).unwrap();
        assert!(store.raw.is_some(), "a plain redis:// URL uses our reader");
        let script = Script::new("return redis.call('HLEN', KEYS[1])");
        let key = "{t}:odd";
        let big = "é".repeat(150_000); // 300 KB: many reads
        let mut hset = redis::cmd("HSET");
        hset.arg(key)
            .arg("empty")
            .arg("")
            .arg(&b"bin\r\n\0\xff"[..])
            .arg(&b"\r\n$3\r\n*1\r\n\0\xfe"[..])
            .arg("unicode \u{1F600} \u{20AC}")
            .arg("{\"n\":\"\u{e9}\"}")
            .arg("big")
            .arg(&big);
        for i in 0..4_000 {
            hset.arg(format!("3:u{i}:tab"))
                .arg(format!("1.5 {{\"i\":{i}}}"));
        }
        store.query(&hset).unwrap();
        let (ours, theirs) = both(&store, &script, key);
        assert_eq!(ours.len(), 4_004);
        assert_eq!(ours, theirs);
        assert_eq!(ours[&b"big"[..]], big.as_bytes());
        assert_eq!(ours[&b"bin\r\n\0\xff"[..]], b"\r\n$3\r\n*1\r\n\0\xfe");
        assert_eq!(ours[&b"empty"[..]], b"");
        // A missing key is an empty hash.
        let (ours, theirs) = both(&store, &script, "{t}:missing");
        assert!(ours.is_empty() && theirs.is_empty());
    }

    #[test]
    fn our_connections_recover_like_the_crates() {
        let server = Server::require();
        let store = RedisStore::new(&server.url(), StoreOptions::default()).unwrap();
        let script = Script::new("return 1");
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg("{t}:h");
        let call =
            |keys: &[&str], then: &redis::Cmd| store.eval_then_spans(&script, keys, &[], then);
        store
            .query(redis::cmd("HSET").arg("{t}:h").arg("f").arg("v"))
            .unwrap();
        assert_eq!(call(&["{t}:h"], &hgetall).unwrap().1.len(), 2);

        // NOSCRIPT (a flushed script cache): sent whole, then by SHA again.
        store.query(redis::cmd("SCRIPT").arg("FLUSH")).unwrap();
        assert_eq!(call(&["{t}:h"], &hgetall).unwrap().1.len(), 2);

        // An error reply is the call's failure, naming it; the connection
        // answered, so it stays in the pool and the next call works.
        store
            .query(redis::cmd("SET").arg("{t}:s").arg("v"))
            .unwrap();
        let mut wrong = redis::cmd("HGETALL");
        wrong.arg("{t}:s");
        match call(&["{t}:s"], &wrong) {
            Err(StoreError::Failed { detail, .. }) => {
                assert!(detail.contains("WRONGTYPE"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        let failing = Script::new("return redis.call('INCR', KEYS[1])");
        match store.eval_then_spans(&failing, &["{t}:h"], &[], &hgetall) {
            Err(StoreError::Failed { detail, .. }) => {
                assert!(detail.contains("WRONGTYPE"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.raw_idle.lock().len(), 1);
        assert_eq!(call(&["{t}:h"], &hgetall).unwrap().1.len(), 2);

        // Pooled connections the server dropped are replaced on first use.
        store
            .query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal"))
            .ok();
        assert_eq!(call(&["{t}:h"], &hgetall).unwrap().1.len(), 2);

        // A server gone is unavailable, not a parse error.
        drop(server);
        store.raw_idle.lock().clear();
        match call(&["{t}:h"], &hgetall) {
            Err(StoreError::Unavailable { .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn our_connections_authenticate_and_select_the_database() {
        let server = Server::require();
        let port = server.1;
        let admin = RedisStore::new(&server.url(), StoreOptions::default()).unwrap();
        admin
            .query(
                redis::cmd("ACL")
                    .arg("SETUSER")
                    .arg("alice")
                    .arg("on")
                    .arg(">s3cret")
                    .arg("~*")
                    .arg("+@all"),
            )
            .unwrap();
        let alice = |db: u8, password: &str| {
            let url = format!("redis://alice:{password}@127.0.0.1:{port}/{db}");
            RedisStore::new(&url, StoreOptions::default()).unwrap()
        };
        let (db3, db0) = (alice(3, "s3cret"), alice(0, "s3cret"));
        db3.query(redis::cmd("HSET").arg("{t}:h").arg("in").arg("3"))
            .unwrap();
        let script = Script::new("return 1");
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg("{t}:h");
        let (buf, spans) = db3
            .eval_then_spans(&script, &["{t}:h"], &[], &hgetall)
            .unwrap();
        assert_eq!(fields(&buf, &spans)[&b"in"[..]], b"3");
        let (_, spans) = db0
            .eval_then_spans(&script, &["{t}:h"], &[], &hgetall)
            .unwrap();
        assert!(spans.is_empty(), "database 0 holds no such hash");
        // A wrong password: unavailable, and never shown.
        match alice(3, "wrong-pw").eval_then_spans(&script, &["{t}:h"], &[], &hgetall) {
            Err(e @ StoreError::Unavailable { .. }) => {
                assert!(!e.to_string().contains("wrong-pw"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A fake server on loopback: answers every request it reads with
    /// `reply` (empty: never answers), for as many connections as come.
    fn fake_server(reply: &'static [u8]) -> u16 {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || (!reply.is_empty() && stream.write_all(reply).is_err()) {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    fn spans_from(port: u16) -> Result<(Vec<u8>, Vec<Range<usize>>), StoreError> {
        let options = StoreOptions {
            connect_timeout: Duration::from_millis(500),
            io_timeout: Duration::from_millis(200),
        };
        let store = RedisStore::new(&format!("redis://127.0.0.1:{port}/0"), options).unwrap();
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg("{t}:h");
        let result = store.eval_then_spans(&Script::new("return 1"), &["{t}:h"], &[], &hgetall);
        // A connection that failed other than by an error reply is not kept.
        if result.is_err() {
            assert!(store.raw_idle.lock().is_empty());
        }
        result
    }

    #[test]
    fn a_stalled_or_lying_server_fails_the_call_and_loses_the_connection() {
        match spans_from(fake_server(b"")) {
            Err(StoreError::Unavailable { .. }) => {}
            other => panic!("a server that never answers: {other:?}"),
        }
        for (reply, what) in [
            (&b":1\r\n*1\r\n:2\r\n"[..], "expected a bulk string"),
            (b":1\r\n*1\r\n$3\r\nabcdef\r\n", "longer than its length"),
            (b":1\r\n%1\r\n", "not RESP2"),
            (b":1\r\n$9999999999\r\n", "over 512 MB"),
            (b":1\r\n*0\r\n+extra\r\n", "more bytes than the replies"),
        ] {
            match spans_from(fake_server(reply)) {
                Err(StoreError::Failed { detail, .. }) => {
                    assert!(detail.contains(what), "{reply:?}: {detail}")
                }
                other => panic!("{reply:?}: {other:?}"),
            }
        }
        // Well-formed, whatever the script answered.
        let (buf, spans) = spans_from(fake_server(b"$-1\r\n*2\r\n$1\r\na\r\n$0\r\n\r\n")).unwrap();
        assert_eq!(fields(&buf, &spans)[&b"a"[..]], b"");
    }
}
