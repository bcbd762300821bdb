//! Per-tenant feature flags (docs/operations.md#feature-flags), with no
//! Python types: the rule that decides a flag, in one place.
//!
//! A flag is on when the tenant's own `settings["flags"]` says so; a flag the
//! tenant does not name takes its default from `TENANT_FLAGS`; a flag named
//! nowhere is off.

use std::fmt;

/// The key of a tenant's registry settings (its plan) holding its flags.
pub const PLAN_FLAGS_KEY: &str = "flags";

/// Longest flag name.
pub const MAX_FLAG_NAME: usize = 100;

/// Why a name cannot be a flag's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadFlagName {
    Empty,
    TooLong,
    /// Not an identifier (`[A-Za-z_][A-Za-z0-9_]*`): `tenant.flags.NAME`
    /// and `{% if tenant.flags.NAME %}` could not name it.
    NotIdentifier,
    /// Starts with `_`: kept for Python's own protocols (`__copy__`, ...).
    Private,
}

impl fmt::Display for BadFlagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadFlagName::Empty => "a flag name cannot be empty",
            BadFlagName::TooLong => "a flag name has at most 100 characters",
            BadFlagName::NotIdentifier => {
                "a flag name is letters, digits and '_', not starting with a digit \
                 (templates read it as tenant.flags.NAME)"
            }
            BadFlagName::Private => "a flag name cannot start with '_'",
        })
    }
}

/// Checks that `name` can be a flag's name.
pub fn check_name(name: &str) -> Result<(), BadFlagName> {
    if name.is_empty() {
        return Err(BadFlagName::Empty);
    }
    if name.len() > MAX_FLAG_NAME {
        return Err(BadFlagName::TooLong);
    }
    let mut chars = name.chars();
    let first = chars.next().unwrap_or('0');
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(BadFlagName::NotIdentifier);
    }
    if first == '_' {
        return Err(BadFlagName::Private);
    }
    Ok(())
}

/// `TENANT_FLAGS`: the defaults, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlagDefaults {
    defaults: Vec<(String, bool)>,
}

impl FlagDefaults {
    pub fn new(mut defaults: Vec<(String, bool)>) -> Self {
        defaults.sort();
        defaults.dedup_by(|a, b| a.0 == b.0);
        FlagDefaults { defaults }
    }

    /// The default of `name` (off when `TENANT_FLAGS` does not name it).
    pub fn default_of(&self, name: &str) -> bool {
        self.defaults
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.defaults[i].1)
            .unwrap_or(false)
    }

    /// The flag `name` of a tenant whose settings say `own` (None: the
    /// tenant does not name it).
    pub fn decide(&self, own: Option<bool>, name: &str) -> bool {
        own.unwrap_or_else(|| self.default_of(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, bool)> {
        self.defaults.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers() {
        assert_eq!(check_name("beta_reports"), Ok(()));
        assert_eq!(check_name("B2"), Ok(()));
        assert_eq!(check_name(""), Err(BadFlagName::Empty));
        assert_eq!(check_name("2fa"), Err(BadFlagName::NotIdentifier));
        assert_eq!(check_name("new-ui"), Err(BadFlagName::NotIdentifier));
        assert_eq!(check_name("a.b"), Err(BadFlagName::NotIdentifier));
        assert_eq!(check_name("é"), Err(BadFlagName::NotIdentifier));
        assert_eq!(check_name("_private"), Err(BadFlagName::Private));
        assert_eq!(check_name("__class__"), Err(BadFlagName::Private));
        assert_eq!(check_name(&"a".repeat(101)), Err(BadFlagName::TooLong));
        assert_eq!(check_name(&"a".repeat(100)), Ok(()));
    }

    #[test]
    fn the_tenant_over_the_default_over_off() {
        let defaults = FlagDefaults::new(vec![("beta".into(), true), ("old".into(), false)]);
        assert!(defaults.decide(None, "beta"));
        assert!(!defaults.decide(Some(false), "beta"));
        assert!(defaults.decide(Some(true), "old"));
        assert!(!defaults.decide(None, "old"));
        assert!(!defaults.decide(None, "unknown"));
        assert!(defaults.decide(Some(true), "unknown"));
        assert!(!FlagDefaults::default().decide(None, "beta"));
    }
}
