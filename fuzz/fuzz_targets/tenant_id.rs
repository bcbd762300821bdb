//! Tenant ids from headers, sessions and API calls: an accepted id is one the
//! spec allows, and it can never inject into a storage key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::keys::{format_key, parse_key, Kind, KeyPrefix};
use tenantry::tenant_id::{TenantId, MAX_LEN};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lowered = TenantId::parse_host_label(&text);
    match TenantId::parse(&text) {
        Ok(id) => {
            let s = id.as_str();
            assert!(!s.is_empty() && s.len() <= MAX_LEN);
            assert!(!s.starts_with('.') && !s.starts_with('-'));
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            assert!(lowered.is_ok());
            let key = format_key(&KeyPrefix::default(), &id, Kind::State, "name");
            let parts = parse_key(&key).expect("formatted keys parse");
            assert_eq!(parts.tenant, s);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
