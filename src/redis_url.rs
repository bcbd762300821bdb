//! Redis URL checks shared by the config parser, the system checks, the
//! connection layer and the error messages: refuse a URL that cannot work
//! (before anything connects), tell a single server from a cluster, and print
//! a URL without its password.
//!
//! Accepted forms:
//! * `redis://[user:password@]host[:port][/db]` (also `valkey://`),
//!   `unix:///path/to.sock` or `redis+unix:///path` — one server;
//! * `redis+cluster://[user:password@]host1:port1[,host2:port2…][/0]` — a
//!   Redis Cluster, given by one or more seed nodes (the client discovers
//!   the others); database 0 only, as Redis Cluster has no other.
//!
//! * `rediss://…` (also `valkeys://`) and `rediss+cluster://…` — the same
//!   over TLS (rustls). The server certificate is verified against the
//!   system's trust store, or against the CA bundle named by
//!   `?ssl_ca_certs=/path/ca.pem`; `?ssl_cert_reqs=none` turns verification
//!   off (the redis-py conventions). `ssl_cert_reqs=required` is the default.
//!   Any other `ssl_*` option, or an `ssl_*` option on a plain URL, is refused
//!   with its name.
//!
//! TLS and cluster URLs need the Cargo features `redis-tls` and
//! `redis-cluster` (every build has them but scripts/demo.sh's light one); a
//! build without one refuses such a URL here, naming the feature, so the
//! config check and the connection layer say so before anything connects.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError {
    pub reason: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for UrlError {}

/// The scheme of a Redis Cluster URL.
pub const CLUSTER_SCHEME: &str = "redis+cluster";

/// The scheme of a Redis Cluster URL over TLS.
pub const TLS_CLUSTER_SCHEME: &str = "rediss+cluster";

const SCHEMES: [&str; 8] = [
    "redis",
    "unix",
    "redis+unix",
    "valkey",
    CLUSTER_SCHEME,
    "rediss",
    "valkeys",
    TLS_CLUSTER_SCHEME,
];
const TLS_SCHEMES: [&str; 3] = ["rediss", "valkeys", TLS_CLUSTER_SCHEME];

/// How a TLS connection checks the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// False only for `ssl_cert_reqs=none`.
    pub verify: bool,
    /// A PEM CA bundle to trust instead of the system's roots.
    pub ca_certs: Option<String>,
}

/// What a URL points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// One server: the URL for the `redis` crate (the `ssl_*` options taken
    /// out, `#insecure` added when verification is off).
    Single { url: String, tls: Option<Tls> },
    /// A Redis Cluster: one `redis://` (or `rediss://`) URL per seed node,
    /// each carrying the credentials of the cluster URL.
    Cluster {
        nodes: Vec<String>,
        tls: Option<Tls>,
    },
}

/// Which kinds of Redis URL a build can connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Support {
    /// `rediss://`, `valkeys://`, `rediss+cluster://` (Cargo feature `redis-tls`).
    pub tls: bool,
    /// `redis+cluster://`, `rediss+cluster://` (Cargo feature `redis-cluster`).
    pub cluster: bool,
}

impl Support {
    /// What this build was compiled with.
    pub const BUILT: Support = Support {
        tls: cfg!(feature = "redis-tls"),
        cluster: cfg!(feature = "redis-cluster"),
    };

    /// The optional Cargo features this build has (`tenantry._core.BUILD_FEATURES`).
    pub fn features(self) -> Vec<&'static str> {
        let mut features = Vec::new();
        if self.tls {
            features.push("redis-tls");
        }
        if self.cluster {
            features.push("redis-cluster");
        }
        features
    }
}

fn error<T>(reason: String) -> Result<T, UrlError> {
    Err(UrlError { reason })
}

/// Checks the shape of a Redis URL without connecting.
pub fn check(url: &str) -> Result<(), UrlError> {
    endpoint(url).map(|_| ())
}

/// Checks a URL and says whether it names one server or a cluster; refuses
/// a URL this build cannot connect to (see [`Support::BUILT`]).
pub fn endpoint(url: &str) -> Result<Endpoint, UrlError> {
    endpoint_for(url, Support::BUILT)
}

/// [`endpoint`] for a build with `support`.
pub fn endpoint_for(url: &str, support: Support) -> Result<Endpoint, UrlError> {
    let endpoint = parse(url)?;
    let (tls, cluster) = match &endpoint {
        Endpoint::Single { tls, .. } => (tls.is_some(), false),
        Endpoint::Cluster { tls, .. } => (tls.is_some(), true),
    };
    let mut missing = Vec::new();
    if tls && !support.tls {
        missing.push(("TLS", "redis-tls"));
    }
    if cluster && !support.cluster {
        missing.push(("Redis Cluster", "redis-cluster"));
    }
    if missing.is_empty() {
        return Ok(endpoint);
    }
    let what: Vec<&str> = missing.iter().map(|m| m.0).collect();
    let features: Vec<String> = missing.iter().map(|m| format!("`{}`", m.1)).collect();
    error(format!(
        "{} needs {} support, which this build of tenantry leaves out (built without the \
         Cargo feature {}, as scripts/demo.sh's light build is): install the full build \
         (pip install tenantry, or maturin develop --release in a checkout)",
        redact(url),
        what.join(" and "),
        features.join(" and "),
    ))
}

fn parse(url: &str) -> Result<Endpoint, UrlError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return error(format!(
            "{} is not a URL (expected redis://host:port/db or \
             redis+cluster://host1:port1,host2:port2)",
            redact(url)
        ));
    };
    if !SCHEMES.contains(&scheme) {
        return error(format!(
            "unsupported scheme {scheme:?} in {} (use one of {})",
            redact(url),
            SCHEMES.join(", ")
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return error(format!("{} contains whitespace", redact(url)));
    }
    if scheme == "unix" || scheme == "redis+unix" {
        if rest.is_empty() || !rest.starts_with('/') {
            return error(format!("{} has no socket path", redact(url)));
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (kept, tls) = tls_options(url, false, query)?;
        debug_assert!(tls.is_none());
        return Ok(Endpoint::Single {
            url: join(&format!("{scheme}://{path}"), &kept, None),
            tls,
        });
    }
    if rest.contains('#') {
        return error(format!(
            "{} has a '#' fragment; use ?ssl_cert_reqs=none to turn off certificate checks",
            redact(url)
        ));
    }
    let is_tls = TLS_SCHEMES.contains(&scheme);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let path_and_query = &rest[authority_end..];
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let db = path.trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return error(format!(
            "{} has an invalid database number {db:?}",
            redact(url)
        ));
    }
    let (kept, tls) = tls_options(url, is_tls, query.unwrap_or(""))?;
    let cluster = scheme == CLUSTER_SCHEME || scheme == TLS_CLUSTER_SCHEME;
    if !cluster {
        if hosts.contains(',') {
            return error(format!(
                "{} lists several hosts: use {CLUSTER_SCHEME}://host1:port1,host2:port2 \
                 for a Redis Cluster",
                redact(url)
            ));
        }
        check_host_port(url, hosts)?;
        let base = format!("{scheme}://{authority}{path}");
        return Ok(Endpoint::Single {
            url: join(&base, &kept, tls.as_ref()),
            tls,
        });
    }
    if !db.is_empty() && db != "0" {
        return error(format!(
            "{} names database {db}, but a Redis Cluster only has database 0",
            redact(url)
        ));
    }
    if !kept.is_empty() {
        return error(format!(
            "{} has query parameters other than ssl_cert_reqs / ssl_ca_certs, which a \
             cluster URL does not take",
            redact(url)
        ));
    }
    let node_scheme = if is_tls { "rediss" } else { "redis" };
    let mut nodes = Vec::new();
    for node in hosts.split(',') {
        check_host_port(url, node)?;
        let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        nodes.push(format!("{node_scheme}://{auth}{node}/0"));
    }
    Ok(Endpoint::Cluster { nodes, tls })
}

/// Splits the query into the `ssl_*` options (read here) and the rest (kept
/// for the `redis` crate). `ssl_*` options need a TLS scheme.
fn tls_options(
    url: &str,
    is_tls: bool,
    query: &str,
) -> Result<(Vec<String>, Option<Tls>), UrlError> {
    let mut kept = Vec::new();
    let mut tls = Tls {
        verify: true,
        ca_certs: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !key.starts_with("ssl_") {
            kept.push(pair.to_owned());
            continue;
        }
        if !is_tls {
            return error(format!(
                "{} sets the TLS option {key} but is not a TLS URL: use rediss:// \
                 (or rediss+cluster://)",
                redact(url)
            ));
        }
        match (key, value) {
            ("ssl_cert_reqs", "none") => tls.verify = false,
            ("ssl_cert_reqs", "required") => tls.verify = true,
            ("ssl_cert_reqs", other) => {
                return error(format!(
                    "{} has an invalid ssl_cert_reqs value {other:?} (use required or none)",
                    redact(url)
                ))
            }
            ("ssl_ca_certs", "") => {
                return error(format!(
                    "{} has an empty ssl_ca_certs (give the path of a PEM CA bundle)",
                    redact(url)
                ))
            }
            ("ssl_ca_certs", path) => tls.ca_certs = Some(percent_decode(url, path)?),
            (other, _) => {
                return error(format!(
                    "{} has an unknown TLS option {other:?} (supported: \
                     ssl_cert_reqs=required|none, ssl_ca_certs=/path/ca.pem)",
                    redact(url)
                ))
            }
        }
    }
    Ok((kept, is_tls.then_some(tls)))
}

/// Decodes `%XX` escapes in a query value (a path may contain spaces).
fn percent_decode(url: &str, value: &str) -> Result<String, UrlError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return error(format!("{} has a malformed %-escape", redact(url)));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).or_else(|_| error(format!("{} has a non-UTF-8 path", redact(url))))
}

/// The URL for the `redis` crate: the kept query, `#insecure` when the
/// server certificate is not checked.
fn join(base: &str, kept: &[String], tls: Option<&Tls>) -> String {
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if tls.is_some_and(|t| !t.verify) {
        out.push_str("#insecure");
    }
    out
}

fn check_host_port(url: &str, host_port: &str) -> Result<(), UrlError> {
    let (host, port) = if let Some(stripped) = host_port.strip_prefix('[') {
        match stripped.split_once(']') {
            Some((h, p)) => match p {
                "" => (h, None),
                _ => match p.strip_prefix(':') {
                    Some(port) => (h, Some(port)),
                    None => return error(format!("{} has a malformed host", redact(url))),
                },
            },
            None => return error(format!("{} has an unclosed '['", redact(url))),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return error(format!("{} has no host", redact(url)));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return error(format!("{} has an invalid port {port:?}", redact(url)));
        }
    }
    Ok(())
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            let hidden = if userinfo.contains(':') || !userinfo.is_empty() {
                format!("{user}:***")
            } else {
                String::new()
            };
            format!("{scheme}://{hidden}@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIGHT: Support = Support {
        tls: false,
        cluster: false,
    };

    #[test]
    fn a_build_without_tls_or_cluster_refuses_those_urls_naming_the_feature() {
        for (url, needs) in [
            ("rediss://:pw@h:6380/0", vec!["TLS", "`redis-tls`"]),
            ("valkeys://h:6380", vec!["TLS", "`redis-tls`"]),
            (
                "redis+cluster://:pw@a:7000,b:7001",
                vec!["Redis Cluster", "`redis-cluster`"],
            ),
            (
                "rediss+cluster://a:7000?ssl_cert_reqs=none",
                vec!["TLS and Redis Cluster", "`redis-tls` and `redis-cluster`"],
            ),
        ] {
            let e = endpoint_for(url, LIGHT).unwrap_err().reason;
            for part in needs {
                assert!(e.contains(part), "{url}: {e}");
            }
            assert!(e.contains("this build of tenantry leaves out"), "{e}");
            assert!(e.contains("maturin develop --release"), "{e}");
            assert!(!e.contains(":pw@"), "{e}");
            // The full build accepts the same URL.
            assert!(endpoint_for(
                url,
                Support {
                    tls: true,
                    cluster: true
                }
            )
            .is_ok());
        }
        // Only the missing part is named.
        let e = endpoint_for(
            "rediss://h",
            Support {
                tls: false,
                cluster: true,
            },
        )
        .unwrap_err();
        assert!(!e.reason.contains("Cluster"), "{}", e.reason);
        let e = endpoint_for(
            "redis+cluster://a:1",
            Support {
                tls: true,
                cluster: false,
            },
        );
        assert!(!e.unwrap_err().reason.contains("TLS"));
        // Plain URLs work in the light build; a malformed one still gets its own error.
        for ok in [
            "redis://localhost:6379/0",
            "unix:///run/redis.sock",
            "valkey://h:1",
        ] {
            assert!(endpoint_for(ok, LIGHT).is_ok(), "{ok}");
        }
        let e = endpoint_for("rediss://h:1?ssl_foo=1", LIGHT)
            .unwrap_err()
            .reason;
        assert!(e.contains("unknown TLS option"), "{e}");
    }

    #[test]
    fn the_default_build_has_every_feature() {
        // `cargo test` builds the default features: the full build.
        assert_eq!(
            Support::BUILT,
            Support {
                tls: true,
                cluster: true
            }
        );
        assert_eq!(Support::BUILT.features(), ["redis-tls", "redis-cluster"]);
        assert!(LIGHT.features().is_empty());
    }

    #[test]
    fn accepts_common_urls() {
        for ok in [
            "redis://localhost:6379/0",
            "redis://127.0.0.1",
            "redis://user:pw@cache.example.com:6380/2",
            "redis://:secret@[::1]:6379",
            "unix:///run/redis.sock",
            "redis://h:1/0?protocol=resp3",
        ] {
            assert!(
                matches!(endpoint(ok), Ok(Endpoint::Single { tls: None, .. })),
                "{ok}"
            );
        }
    }

    #[test]
    fn refuses_broken_urls() {
        for bad in [
            "localhost:6379",
            "http://localhost",
            "redis://",
            "redis://host:notaport",
            "redis://host:0",
            "redis://host/abc",
            "redis://ho st",
            "unix://",
            "redis://a:1,b:2",
            "redis+cluster://",
            "redis+cluster://a:1,,b:2",
            "redis+cluster://a:1,b:x",
            "redis+cluster://a:1/3",
            "redis+cluster://a:1?protocol=resp3",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_urls_carry_their_options() {
        let verified = Tls {
            verify: true,
            ca_certs: None,
        };
        assert_eq!(
            endpoint("rediss://user:pw@cache.example.com:6380/2").unwrap(),
            Endpoint::Single {
                url: "rediss://user:pw@cache.example.com:6380/2".into(),
                tls: Some(verified.clone()),
            }
        );
        assert_eq!(
            endpoint("rediss://h:1/0?protocol=resp3&ssl_cert_reqs=none").unwrap(),
            Endpoint::Single {
                url: "rediss://h:1/0?protocol=resp3#insecure".into(),
                tls: Some(Tls {
                    verify: false,
                    ca_certs: None
                }),
            }
        );
        assert_eq!(
            endpoint("rediss+cluster://:pw@a:1,b:2?ssl_ca_certs=/etc/my%20ca.pem").unwrap(),
            Endpoint::Cluster {
                nodes: vec!["rediss://:pw@a:1/0".into(), "rediss://:pw@b:2/0".into()],
                tls: Some(Tls {
                    verify: true,
                    ca_certs: Some("/etc/my ca.pem".into())
                }),
            }
        );
    }

    #[test]
    fn bad_tls_options_are_named() {
        for (url, needle) in [
            ("rediss://:pw@h:1/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
            ("rediss://:pw@h:1/0?ssl_certfile=/x", "ssl_certfile"),
            ("rediss://:pw@h:1/0?ssl_ca_certs=", "ssl_ca_certs"),
            ("redis://:pw@h:1/0?ssl_cert_reqs=none", "ssl_cert_reqs"),
            ("redis+cluster://:pw@h:1?ssl_ca_certs=/x", "ssl_ca_certs"),
            ("rediss://:pw@h:1/0#insecure", "ssl_cert_reqs=none"),
        ] {
            let msg = check(url).unwrap_err().to_string();
            assert!(msg.contains(needle), "{url}: {msg}");
            assert!(!msg.contains(":pw@"), "{msg}");
        }
    }

    #[test]
    fn cluster_urls_list_their_seed_nodes() {
        assert_eq!(
            endpoint("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/").unwrap(),
            Endpoint::Cluster {
                nodes: vec![
                    "redis://:pw@10.0.0.1:7000/0".into(),
                    "redis://:pw@10.0.0.2:7001/0".into(),
                    "redis://:pw@[::1]:7002/0".into(),
                ],
                tls: None,
            }
        );
        assert_eq!(
            endpoint("redis+cluster://h:7000").unwrap(),
            Endpoint::Cluster {
                nodes: vec!["redis://h:7000/0".into()],
                tls: None,
            }
        );
        assert_eq!(
            redact("redis+cluster://u:hunter2@a:1,b:2/0"),
            "redis+cluster://u:***@a:1,b:2/0"
        );
    }

    #[test]
    fn never_prints_the_password() {
        assert_eq!(
            redact("redis://user:hunter2@h:1/0"),
            "redis://user:***@h:1/0"
        );
        assert_eq!(redact("redis://:hunter2@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        let msg = check("redis://:hunter2@h:bad").unwrap_err().to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
