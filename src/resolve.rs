//! The resolution rules of the built-in resolvers, on plain strings. The
//! bindings read the request (META, path_info, session) and call these.

use crate::config::{PathRules, SubdomainRules};
use crate::tenant_id::TenantId;

/// The tenant named by a validated, lowercased domain (as returned by
/// [`crate::host::validated_domain`]), or `None`.
pub fn subdomain_tenant(domain: &str, rules: &SubdomainRules) -> Option<TenantId> {
    if domain.starts_with('[') || is_ip_like(domain) {
        return None;
    }
    match &rules.main_domain {
        Some(main) => {
            // Label boundary: "evilexample.com" does not end with ".example.com".
            let sub = domain.strip_suffix(main.as_str())?.strip_suffix('.')?;
            if sub.is_empty() {
                return None;
            }
            let mut labels = 0;
            for label in sub.split('.') {
                if label.is_empty() {
                    return None;
                }
                labels += 1;
            }
            if labels > rules.depth || is_excluded(sub, &rules.exclude) {
                return None;
            }
            TenantId::parse_host_label(sub).ok()
        }
        None => {
            let mut labels = domain.split('.');
            let first = labels.next()?;
            let rest: Vec<&str> = labels.collect();
            if rest.len() < 2 || first.is_empty() || rest.iter().any(|l| l.is_empty()) {
                return None;
            }
            if is_excluded(first, &rules.exclude) {
                return None;
            }
            TenantId::parse_host_label(first).ok()
        }
    }
}

/// IP addresses never name a tenant. Top-level domains are never all digits,
/// so a numeric last label means an IPv4 literal in any of its spellings
/// (`127.0.0.1`, `010.0.0.1`, `1.2.3`).
fn is_ip_like(domain: &str) -> bool {
    domain
        .rsplit('.')
        .next()
        .is_some_and(|last| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

fn is_excluded(candidate: &str, exclude: &[String]) -> bool {
    exclude.iter().any(|e| e.eq_ignore_ascii_case(candidate))
}

/// The tenant named by segment `rules.position` of `path_info`, or `None`.
pub fn path_tenant(path_info: &str, rules: &PathRules) -> Option<TenantId> {
    let trimmed = path_info.trim_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    let segment = trimmed.split('/').nth(rules.position.checked_sub(1)?)?;
    if segment.is_empty() || is_excluded(segment, &rules.exclude) {
        return None;
    }
    TenantId::parse(segment).ok()
}

/// Why a custom-domain row may not map `domain` to `tenant`, or `None` when
/// it may. The main domain and every host under it belong to the platform's
/// subdomain rule: a row may only repeat what that rule already says
/// (`acme.example.com` → `acme`), never point such a host at another tenant
/// or claim a host the rule leaves to the platform (`www`, the apex).
/// `domain` is lowercased without port or trailing dot, as lookups see it.
pub fn custom_domain_conflict(
    domain: &str,
    tenant: &str,
    rules: &SubdomainRules,
) -> Option<DomainConflict> {
    let main = rules.main_domain.as_deref()?;
    let under_main = domain == main
        || domain
            .strip_suffix(main)
            .is_some_and(|rest| rest.ends_with('.'));
    if !under_main {
        return None;
    }
    match subdomain_tenant(domain, rules) {
        Some(owner) if owner.as_str() == tenant => None,
        Some(owner) => Some(DomainConflict::SubdomainOf(owner.as_str().to_owned())),
        None => Some(DomainConflict::Platform),
    }
}

/// What a refused custom-domain row collides with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainConflict {
    /// The subdomain rule serves this host as another tenant.
    SubdomainOf(String),
    /// The main domain or a host under it that serves no tenant (`www`).
    Platform,
}

impl std::fmt::Display for DomainConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DomainConflict::SubdomainOf(owner) => write!(
                f,
                "the subdomain rule (TENANT_MAIN_DOMAIN) already serves this host as tenant {owner:?}"
            ),
            DomainConflict::Platform => write!(
                f,
                "it is the main domain (TENANT_MAIN_DOMAIN) or a host under it that no tenant owns"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::host::{validated_domain, AllowedHosts};
    use proptest::prelude::*;

    fn rules(main: Option<&str>, depth: usize) -> SubdomainRules {
        SubdomainRules {
            main_domain: main.map(str::to_owned),
            depth,
            exclude: vec!["www".into(), "api".into(), "admin".into()],
        }
    }

    fn via_host(host: &str, r: &SubdomainRules) -> Option<String> {
        let allowed = AllowedHosts::new(&["*"], false);
        let domain = validated_domain(host, &allowed).ok()?;
        subdomain_tenant(&domain, r).map(|t| t.as_str().to_owned())
    }

    #[test]
    fn subdomain_with_main_domain() {
        let r = rules(Some("example.com"), 1);
        assert_eq!(via_host("acme.example.com", &r).as_deref(), Some("acme"));
        assert_eq!(via_host("ACME.Example.COM.", &r).as_deref(), Some("acme"));
        assert_eq!(
            via_host("acme.example.com:8000", &r).as_deref(),
            Some("acme")
        );
        assert_eq!(via_host("evilexample.com", &r), None);
        assert_eq!(via_host("example.com", &r), None);
        assert_eq!(via_host("a.b.example.com", &r), None);
        assert_eq!(via_host("WWW.example.com", &r), None);
        assert_eq!(via_host("acme.example.org", &r), None);
        assert_eq!(via_host("-acme.example.com", &r), None);
        assert_eq!(via_host(".example.com", &r), None);
        assert_eq!(via_host("a..example.com", &r), None);
    }

    #[test]
    fn deeper_subdomains_need_depth() {
        let r = rules(Some("example.com"), 2);
        assert_eq!(via_host("a.b.example.com", &r).as_deref(), Some("a.b"));
        assert_eq!(via_host("a.b.c.example.com", &r), None);
    }

    #[test]
    fn subdomain_without_main_domain() {
        let r = rules(None, 1);
        assert_eq!(via_host("acme.example.com", &r).as_deref(), Some("acme"));
        assert_eq!(via_host("example.com", &r), None);
        assert_eq!(via_host("www.example.com", &r), None);
        assert_eq!(via_host("127.0.0.1", &r), None);
        assert_eq!(via_host("127.0.0.1:8000", &r), None);
        assert_eq!(via_host("[::1]:8000", &r), None);
        assert_eq!(via_host("localhost", &r), None);
    }

    #[test]
    fn localhost_for_development() {
        let r = rules(Some("localhost"), 1);
        assert_eq!(via_host("acme.localhost:8000", &r).as_deref(), Some("acme"));
        assert_eq!(via_host("localhost:8000", &r), None);
    }

    #[test]
    fn custom_domains_cannot_claim_the_platforms_hosts() {
        let r = rules(Some("example.com"), 1);
        let conflict = |d: &str, t: &str| custom_domain_conflict(d, t, &r);
        assert_eq!(conflict("shop.acme-corp.com", "globex"), None);
        assert_eq!(conflict("acme.example.com", "acme"), None);
        assert_eq!(
            conflict("acme.example.com", "globex"),
            Some(DomainConflict::SubdomainOf("acme".into()))
        );
        assert_eq!(
            conflict("example.com", "acme"),
            Some(DomainConflict::Platform)
        );
        assert_eq!(
            conflict("www.example.com", "acme"),
            Some(DomainConflict::Platform)
        );
        assert_eq!(
            conflict("a.b.example.com", "a.b"),
            Some(DomainConflict::Platform)
        );
        // Not under the main domain on a label boundary: a customer's own domain.
        assert_eq!(conflict("evilexample.com", "globex"), None);
        // Without a main domain there is no platform host to protect.
        assert_eq!(
            custom_domain_conflict("acme.example.com", "globex", &rules(None, 1)),
            None
        );
    }

    #[test]
    fn path_segments() {
        let mut r = Settings::defaults().path;
        let get = |p: &str, r: &PathRules| path_tenant(p, r).map(|t| t.as_str().to_owned());
        assert_eq!(get("/acme/dashboard/", &r).as_deref(), Some("acme"));
        assert_eq!(get("/acme", &r).as_deref(), Some("acme"));
        assert_eq!(get("/", &r), None);
        assert_eq!(get("/admin/x", &r), None);
        assert_eq!(get("/ADMIN/x", &r), None);
        assert_eq!(get("/acme\n/x", &r), None);
        assert_eq!(get("/a:b/x", &r), None);
        r.position = 2;
        assert_eq!(get("/v1/acme/x", &r).as_deref(), Some("acme"));
        assert_eq!(get("/v1", &r), None);
    }

    proptest! {
        #[test]
        fn any_host_resolves_to_a_valid_id_or_nothing(host in "\\PC{0,80}") {
            for r in [rules(Some("example.com"), 3), rules(None, 1)] {
                if let Some(id) = via_host(&host, &r) {
                    prop_assert!(crate::tenant_id::is_valid(&id));
                    prop_assert_eq!(id.to_ascii_lowercase(), id.clone());
                }
            }
        }

        #[test]
        fn main_domain_only_matches_on_a_label_boundary(label in "[a-z0-9]{1,10}", glue in "[a-z0-9-]{1,5}") {
            let r = rules(Some("example.com"), 1);
            let glued = format!("{label}{glue}example.com");
            prop_assert_eq!(via_host(&glued, &r), None);
        }

        #[test]
        fn any_path_resolves_to_a_valid_id_or_nothing(path in "\\PC{0,80}", pos in 1usize..4) {
            let r = PathRules { position: pos, exclude: vec![] };
            if let Some(id) = path_tenant(&path, &r) {
                prop_assert!(crate::tenant_id::is_valid(id.as_str()));
            }
        }
    }
}
