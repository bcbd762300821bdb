//! Key names from applications: (tenant, kind, name) → key is injective, so
//! no crafted name ever reaches another tenant's key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::keys::{check_name, format_key, parse_key, Kind, KeyPrefix};
use tenantry::tenant_id::TenantId;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let (Some(tenant), Some(name)) = (parts.next(), parts.next()) else { return };
    let prefix = parts.next().and_then(|p| KeyPrefix::new(p).ok()).unwrap_or_default();
    let Ok(tenant) = TenantId::parse(tenant) else { return };
    if check_name(name).is_err() {
        return;
    }
    for kind in Kind::ALL {
        let key = format_key(&prefix, &tenant, kind, name);
        let back = parse_key(&key).expect("formatted keys parse");
        assert_eq!(back.prefix, prefix.as_str());
        assert_eq!(back.tenant, tenant.as_str());
        assert_eq!(back.kind, kind);
        assert_eq!(back.name, name);
    }
});
