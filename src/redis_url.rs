//! Redis URL checks shared by the config parser, the system checks and the
//! error messages: what we need is to refuse a URL that cannot work, and to
//! print one without its password.

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

const SCHEMES: [&str; 5] = ["redis", "rediss", "unix", "redis+unix", "valkey"];

/// Checks the shape of a Redis URL (`redis://[user:password@]host[:port][/db]`,
/// `rediss://…`, `unix:///path`), without connecting.
pub fn check(url: &str) -> Result<(), UrlError> {
    let err = |reason: String| Err(UrlError { reason });
    let Some((scheme, rest)) = url.split_once("://") else {
        return err(format!(
            "{} is not a URL (expected redis://host:port/db)",
            redact(url)
        ));
    };
    if !SCHEMES.contains(&scheme) {
        return err(format!(
            "unsupported scheme {scheme:?} in {} (use one of {})",
            redact(url),
            SCHEMES.join(", ")
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err(format!("{} contains whitespace", redact(url)));
    }
    if scheme == "unix" || scheme == "redis+unix" {
        if rest.is_empty() || !rest.starts_with('/') {
            return err(format!("{} has no socket path", redact(url)));
        }
        return Ok(());
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(stripped) = host_port.strip_prefix('[') {
        match stripped.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return err(format!("{} has an unclosed '['", redact(url))),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return err(format!("{} has no host", redact(url)));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return err(format!("{} has an invalid port {port:?}", redact(url)));
        }
    }
    let path = rest[authority_end..].split('?').next().unwrap_or("");
    let db = path.trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return err(format!(
            "{} has an invalid database number {db:?}",
            redact(url)
        ));
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
            "rediss://user:pw@cache.example.com:6380/2",
            "redis://:secret@[::1]:6379",
            "unix:///run/redis.sock",
            "redis://h:1/0?protocol=resp3",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
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
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
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
