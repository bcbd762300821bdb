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
//! `rediss://` (TLS) is refused with a message saying so: this build has no
//! TLS support (it would pull in a TLS stack), so TLS is terminated by a
//! local proxy such as stunnel instead.

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

const SCHEMES: [&str; 5] = ["redis", "unix", "redis+unix", "valkey", CLUSTER_SCHEME];
const TLS_SCHEMES: [&str; 4] = ["rediss", "valkeys", "rediss+cluster", "redis+cluster+tls"];

/// What a URL points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// One server: the URL as given (the `redis` crate parses it).
    Single,
    /// A Redis Cluster: one `redis://` URL per seed node, each carrying the
    /// credentials of the cluster URL.
    Cluster { nodes: Vec<String> },
}

fn error<T>(reason: String) -> Result<T, UrlError> {
    Err(UrlError { reason })
}

/// Checks the shape of a Redis URL without connecting.
pub fn check(url: &str) -> Result<(), UrlError> {
    endpoint(url).map(|_| ())
}

/// Checks a URL and says whether it names one server or a cluster.
pub fn endpoint(url: &str) -> Result<Endpoint, UrlError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return error(format!(
            "{} is not a URL (expected redis://host:port/db or \
             redis+cluster://host1:port1,host2:port2)",
            redact(url)
        ));
    };
    if TLS_SCHEMES.contains(&scheme) {
        return error(format!(
            "{} asks for TLS ({scheme}://), which is not built into this version of \
             tenantry; terminate TLS in a local proxy such as stunnel and use a redis:// \
             URL that points at the proxy",
            redact(url)
        ));
    }
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
        return Ok(Endpoint::Single);
    }
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
    if scheme != CLUSTER_SCHEME {
        if hosts.contains(',') {
            return error(format!(
                "{} lists several hosts: use {CLUSTER_SCHEME}://host1:port1,host2:port2 \
                 for a Redis Cluster",
                redact(url)
            ));
        }
        check_host_port(url, hosts)?;
        return Ok(Endpoint::Single);
    }
    if !db.is_empty() && db != "0" {
        return error(format!(
            "{} names database {db}, but a Redis Cluster only has database 0",
            redact(url)
        ));
    }
    if query.is_some_and(|q| !q.is_empty()) {
        return error(format!(
            "{} has query parameters, which a cluster URL does not take",
            redact(url)
        ));
    }
    let mut nodes = Vec::new();
    for node in hosts.split(',') {
        check_host_port(url, node)?;
        let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        nodes.push(format!("redis://{auth}{node}/0"));
    }
    Ok(Endpoint::Cluster { nodes })
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
            assert_eq!(endpoint(ok), Ok(Endpoint::Single), "{ok}");
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
    fn tls_is_refused_with_a_way_out() {
        for url in [
            "rediss://user:pw@cache.example.com:6380/2",
            "rediss+cluster://a:1",
        ] {
            let msg = check(url).unwrap_err().to_string();
            assert!(msg.contains("TLS") && msg.contains("stunnel"), "{msg}");
            assert!(!msg.contains("pw@"), "{msg}");
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
                ]
            }
        );
        assert_eq!(
            endpoint("redis+cluster://h:7000").unwrap(),
            Endpoint::Cluster {
                nodes: vec!["redis://h:7000/0".into()]
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
