//! Redis URLs from settings: checking never panics, and the redacted form
//! shows `user:***` where the password was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::redis_url::{check, redact};

fn userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority.rsplit_once('@').map(|(userinfo, _)| userinfo)
}

fuzz_target!(|data: &[u8]| {
    let url = String::from_utf8_lossy(data);
    let _ = check(&url).map_err(|e| e.to_string());
    let shown = redact(&url);
    if let Some(original) = userinfo(&url).filter(|u| !u.is_empty()) {
        let user = original.split_once(':').map_or("", |(u, _)| u);
        assert_eq!(userinfo(&shown), Some(format!("{user}:***").as_str()), "{shown}");
    }
});
