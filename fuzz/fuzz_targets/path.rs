//! Request paths: the path rule never panics and only yields valid ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::config::PathRules;
use tenantry::resolve::path_tenant;
use tenantry::tenant_id::is_valid;

fuzz_target!(|data: &[u8]| {
    let Some((&position, rest)) = data.split_first() else { return };
    let path = String::from_utf8_lossy(rest);
    let rules = PathRules { position: usize::from(position % 5), exclude: vec!["admin".into()] };
    if let Some(id) = path_tenant(&path, &rules) {
        assert!(is_valid(id.as_str()));
        assert!(path.contains(id.as_str()));
        assert!(!id.as_str().eq_ignore_ascii_case("admin"));
    }
});
