//! Django's host validation (`HttpRequest.get_host()`), reimplemented so the
//! subdomain resolver does not pay for Python's regex and settings lookups on
//! every request.
//!
//! It must agree with Django on every input: `tests/test_host_differential.py`
//! compares it with Django's own `get_host()` over generated hosts. The rules
//! mirror Django 4.2–5.2:
//!
//! * `split_domain_port`: `host.lower()` must fully match
//!   `^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([0-9]+))?$`; the domain then
//!   loses one trailing dot.
//! * `validate_host`: `*` matches anything; a pattern starting with `.` matches
//!   the domain and its subdomains; anything else matches exactly.
//! * With `DEBUG` on and `ALLOWED_HOSTS` empty, the patterns are
//!   `.localhost`, `127.0.0.1` and `[::1]`.

use std::borrow::Cow;

/// A custom domain as tenantry stores and compares it (domain rows, the
/// management command, the platform-domain conflict check): surrounding
/// whitespace removed, lowercased, trailing dots removed — the host as
/// Django's `get_host()` hands it to the resolvers (no port, no final dot).
pub fn normalize_custom_domain(raw: &str) -> String {
    raw.trim().to_lowercase().trim_end_matches('.').to_owned()
}

/// A compiled `ALLOWED_HOSTS` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    any: bool,
    /// Lowercased patterns, `*` removed (it sets `any`).
    patterns: Vec<String>,
}

/// Why a host was refused. Django raises `DisallowedHost` for both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    /// The host is not a syntactically valid host (RFC 1034/1035).
    Invalid,
    /// Valid, but not in `ALLOWED_HOSTS`.
    NotAllowed { domain: String },
}

impl AllowedHosts {
    /// `patterns` is `settings.ALLOWED_HOSTS`; `debug` is `settings.DEBUG`.
    pub fn new<S: AsRef<str>>(patterns: &[S], debug: bool) -> Self {
        if debug && patterns.is_empty() {
            return Self::new(&[".localhost", "127.0.0.1", "[::1]"], false);
        }
        let mut any = false;
        let mut compiled = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref();
            if p == "*" {
                any = true;
            } else if !p.is_empty() {
                compiled.push(p.to_lowercase());
            }
        }
        AllowedHosts {
            any,
            patterns: compiled,
        }
    }

    /// Django's `validate_host(domain, ALLOWED_HOSTS)`; `domain` is lowercased
    /// and has no port.
    pub fn allows(&self, domain: &str) -> bool {
        self.any || self.patterns.iter().any(|p| is_same_domain(domain, p))
    }
}

fn is_same_domain(host: &str, pattern: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(bare) => host.ends_with(pattern) || host == bare,
        None => host == pattern,
    }
}

/// Python's `str.lower()` as far as it can matter for a host: the result has
/// to match an ASCII-only regex, and the only non-ASCII character whose
/// lowercase is ASCII is U+212A KELVIN SIGN (→ `k`). Any other non-ASCII
/// character cannot match, so `None` is returned for it.
fn lower_for_host(host: &str) -> Option<Cow<'_, str>> {
    if host.is_ascii() {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return Some(Cow::Owned(host.to_ascii_lowercase()));
        }
        return Some(Cow::Borrowed(host));
    }
    let mut out = String::with_capacity(host.len());
    for ch in host.chars() {
        match ch {
            c if c.is_ascii() => out.push(c.to_ascii_lowercase()),
            '\u{212A}' => out.push('k'),
            _ => return None,
        }
    }
    Some(Cow::Owned(out))
}

/// Django's `split_domain_port`: the lowercased domain without one trailing
/// dot, and the port (possibly empty). `None` where Django returns `("", "")`.
pub fn split_domain_port(host: &str) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    let lowered = lower_for_host(host)?;
    let (domain_end, rest_start) = match_domain(&lowered)?;
    let port_part = &lowered[rest_start..];
    let port_ok = port_part.is_empty()
        || (port_part.len() > 1
            && port_part.as_bytes()[0] == b':'
            && port_part.as_bytes()[1..].iter().all(u8::is_ascii_digit));
    if !port_ok {
        return None;
    }
    let port_range = if port_part.is_empty() {
        rest_start..rest_start
    } else {
        rest_start + 1..lowered.len()
    };
    let domain_range = 0..domain_end;
    let strip = |r: std::ops::Range<usize>| -> std::ops::Range<usize> {
        if lowered[r.clone()].ends_with('.') {
            r.start..r.end - 1
        } else {
            r
        }
    };
    let domain_range = strip(domain_range);
    Some(match lowered {
        Cow::Borrowed(s) => (
            Cow::Borrowed(&s[domain_range]),
            Cow::Borrowed(&s[port_range]),
        ),
        Cow::Owned(s) => (
            Cow::Owned(s[domain_range].to_owned()),
            Cow::Owned(s[port_range].to_owned()),
        ),
    })
}

/// Matches the domain alternative of Django's regex at the start of a
/// lowercased host. Returns (end of domain, start of the rest).
fn match_domain(host: &str) -> Option<(usize, usize)> {
    let bytes = host.as_bytes();
    if bytes.first() == Some(&b'[') {
        // `\[[a-f0-9]*:[a-f0-9.:]+\]`: hex digits, then the first ':' (before
        // any '.'), then at least one of [a-f0-9.:], then ']'.
        let close = bytes.iter().position(|&b| b == b']')?;
        let inner = &bytes[1..close];
        let colon = inner.iter().position(|&b| !is_hex(b))?;
        if inner[colon] != b':' {
            return None;
        }
        let after = &inner[colon + 1..];
        if after.is_empty() || !after.iter().all(|&b| is_hex(b) || b == b'.' || b == b':') {
            return None;
        }
        return Some((close + 1, close + 1));
    }
    let end = bytes
        .iter()
        .position(|&b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'))
        .unwrap_or(bytes.len());
    if end == 0 {
        return None;
    }
    Some((end, end))
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// `get_host()`'s verdict on a raw host header: the validated, lowercased
/// domain (port and one trailing dot removed), or why Django would raise
/// `DisallowedHost`.
pub fn validated_domain<'a>(
    raw_host: &'a str,
    allowed: &AllowedHosts,
) -> Result<Cow<'a, str>, HostError> {
    match split_domain_port(raw_host) {
        Some((domain, _port)) if !domain.is_empty() => {
            if allowed.allows(&domain) {
                Ok(domain)
            } else {
                Err(HostError::NotAllowed {
                    domain: domain.into_owned(),
                })
            }
        }
        _ => Err(HostError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(h: &str) -> Option<(String, String)> {
        split_domain_port(h).map(|(d, p)| (d.into_owned(), p.into_owned()))
    }

    #[test]
    fn splits_like_django() {
        let s = |d: &str, p: &str| Some((d.to_owned(), p.to_owned()));
        assert_eq!(split("example.com"), s("example.com", ""));
        assert_eq!(split("Example.COM:8000"), s("example.com", "8000"));
        assert_eq!(split("acme.example.com."), s("acme.example.com", ""));
        assert_eq!(split("acme.example.com..:1"), s("acme.example.com.", "1"));
        assert_eq!(split("[::1]:8000"), s("[::1]", "8000"));
        assert_eq!(split("[2001:db8::1]"), s("[2001:db8::1]", ""));
        assert_eq!(split("\u{212A}acme.com"), s("kacme.com", ""));
        assert_eq!(split("."), s("", ""));
        for bad in [
            "",
            ":80",
            "a b",
            "a_b.com",
            "ex.com:",
            "ex.com:8o",
            "[::1",
            "[1.2:3]",
            "[g::1]",
            "[:]x",
            "ex.com\n",
            "ex.com:80\n",
            "é.com",
            "ex.com:٣",
            "[a:b]]",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
        assert_eq!(split("[a:]"), None);
        assert_eq!(split("[::]"), s("[::]", ""));
        assert_eq!(split("[a::]"), s("[a::]", ""));
        assert_eq!(split("[:.]"), s("[:.]", ""));
    }

    #[test]
    fn validates_like_django() {
        let allowed = AllowedHosts::new(&[".example.com", "exact.org", "[::1]"], false);
        assert!(allowed.allows("example.com"));
        assert!(allowed.allows("acme.example.com"));
        assert!(!allowed.allows("evilexample.com"));
        assert!(allowed.allows("exact.org"));
        assert!(!allowed.allows("a.exact.org"));
        assert!(allowed.allows("[::1]"));
        assert!(AllowedHosts::new(&["*"], false).allows("anything.test"));
        assert!(!AllowedHosts::new::<&str>(&[], false).allows("localhost"));
        let debug = AllowedHosts::new::<&str>(&[], true);
        assert!(debug.allows("acme.localhost") && debug.allows("127.0.0.1"));
        assert!(!debug.allows("example.com"));
    }

    #[test]
    fn reports_why() {
        let allowed = AllowedHosts::new(&[".example.com"], false);
        assert_eq!(
            validated_domain("ACME.Example.COM.", &allowed).as_deref(),
            Ok("acme.example.com")
        );
        assert_eq!(validated_domain("a b", &allowed), Err(HostError::Invalid));
        assert_eq!(
            validated_domain("other.org", &allowed),
            Err(HostError::NotAllowed {
                domain: "other.org".into()
            })
        );
        // "." loses its trailing dot and is then empty: invalid, as in Django.
        assert_eq!(validated_domain(".", &allowed), Err(HostError::Invalid));
    }

    #[test]
    fn custom_domains_are_normalized_once() {
        assert_eq!(
            normalize_custom_domain("  Shop.ACME-Corp.com.. "),
            "shop.acme-corp.com"
        );
        assert_eq!(normalize_custom_domain("shop.acme.com"), "shop.acme.com");
        // Only the outside is trimmed: an inner space stays (and fails validation).
        assert_eq!(normalize_custom_domain("shop .com."), "shop .com");
        assert_eq!(normalize_custom_domain("."), "");
    }
}
