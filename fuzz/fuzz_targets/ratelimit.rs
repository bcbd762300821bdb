//! Rate strings, keys and scopes of any shape: parsing never panics; what it
//! accepts stays in range and round-trips through its canonical text; key
//! names from hostile parts stay bounded and never lose the scope; GCRA and
//! quota arithmetic never overflow and never admit past the burst.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::keys::MAX_NAME_LEN;
use tenantry::ratelimit::spec::{check_scope, quota_name};
use tenantry::ratelimit::{
    gcra, key_name, window, Identity, KeySpec, Limit, Quota, QuotaWindow, Rate, MAX_BURST,
    MAX_COUNT,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\u{1}');
    let rate_text = parts.next().unwrap_or("");
    let key_text = parts.next().unwrap_or("");
    let scope = parts.next().unwrap_or("");
    let user = parts.next().unwrap_or("");

    let _ = quota_name(scope);
    if let Ok(rate) = Rate::parse(rate_text) {
        assert!(rate.count >= 1 && rate.count <= MAX_COUNT);
        assert!(rate.burst >= 1 && rate.burst <= MAX_BURST);
        assert!(rate.interval() >= 1);
        assert_eq!(Rate::parse(&rate.canonical()), Ok(rate));
        // A burst at one instant: exactly `burst` pass.
        let now = 1_700_000_000_000_000u64 + u64::from(data.len() as u32);
        let mut tat = None;
        let mut passed = 0;
        for _ in 0..rate.burst.min(64) + 1 {
            let o = gcra(tat, now, &rate, 1);
            if o.allowed {
                passed += 1;
                tat = Some(o.store);
            } else {
                assert!(o.retry_after > 0);
            }
        }
        assert_eq!(passed, rate.burst.min(64 + 1).min(rate.burst));
        if let (Ok(key), Ok(())) = (KeySpec::parse(key_text), check_scope(scope)) {
            let who = Identity { user: Some(user), ip: Some(user), view: Some(key_text) };
            if let Ok(name) = key_name(scope, &Limit::Rate(rate), &key, &who) {
                assert!(name.len() <= MAX_NAME_LEN);
                assert!(name.starts_with(&format!("{scope}:")));
            }
        }
        let quota = Quota { max: rate.count, window: QuotaWindow::Day };
        let o = window(Some(u64::MAX), now, &quota, 1);
        assert!(o.allowed || o.remaining <= quota.max);
    }
});
