//! Hosts from the network: Django's host rules, then the subdomain rule.
//! Invariants: no panic; a resolved tenant is a valid, lowercase id that
//! really is a label in front of the main domain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::config::SubdomainRules;
use tenantry::host::{split_domain_port, validated_domain, AllowedHosts};
use tenantry::resolve::subdomain_tenant;
use tenantry::tenant_id::is_valid;

fuzz_target!(|data: &[u8]| {
    let host = String::from_utf8_lossy(data);
    if let Some((domain, port)) = split_domain_port(&host) {
        assert!(domain.is_ascii() && port.bytes().all(|b| b.is_ascii_digit()));
        assert!(!domain.bytes().any(|b| b.is_ascii_uppercase()));
    }
    let allowed = [
        AllowedHosts::new(&["*"], false),
        AllowedHosts::new(&[".example.com"], false),
        AllowedHosts::new::<&str>(&[], true),
    ];
    let rules = [
        SubdomainRules { main_domain: Some("example.com".into()), depth: 1, exclude: vec!["www".into()] },
        SubdomainRules { main_domain: Some("example.com".into()), depth: 3, exclude: vec![] },
        SubdomainRules { main_domain: None, depth: 1, exclude: vec!["www".into()] },
    ];
    for allow in &allowed {
        let Ok(domain) = validated_domain(&host, allow) else { continue };
        for rule in &rules {
            if let Some(id) = subdomain_tenant(&domain, rule) {
                let id = id.as_str();
                assert!(is_valid(id), "{id:?}");
                assert_eq!(id, id.to_ascii_lowercase());
                if let Some(main) = &rule.main_domain {
                    assert_eq!(domain.as_ref(), format!("{id}.{main}"));
                    assert!(id.split('.').count() <= rule.depth);
                } else {
                    assert!(domain.starts_with(&format!("{id}.")));
                }
            }
        }
    }
});
