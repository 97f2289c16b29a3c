//! Scope sets (RFC 6749 §3.3): space-delimited, case-sensitive, order-free.

use std::collections::BTreeSet;
use std::fmt;

use super::OAuthError;

pub const OPENID: &str = "openid";
pub const OFFLINE_ACCESS: &str = "offline_access";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses a `scope` parameter. Each token must be NQCHAR+ (§3.3).
    pub fn parse(raw: &str) -> Result<Self, OAuthError> {
        let mut set = BTreeSet::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            let valid = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return Err(OAuthError::invalid_scope(
                    "scope values may hold only printable ASCII without quotes or backslashes",
                ));
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn without(&self, scope: &str) -> Scopes {
        Scopes(self.0.iter().filter(|s| *s != scope).cloned().collect())
    }

    pub fn union(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.union(&other.0).cloned().collect())
    }

    /// The scopes of `self` that are not in `other`, for error messages.
    pub fn missing_from<'a>(&'a self, other: &Scopes) -> Vec<&'a str> {
        self.0
            .iter()
            .filter(|s| !other.0.contains(*s))
            .map(String::as_str)
            .collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

/// The order a person reads scopes in: who you are, what the app may see,
/// then staying signed in; others in between, alphabetically.
pub fn in_reading_order(scopes: &Scopes) -> Vec<&str> {
    let rank = |s: &str| match s {
        OPENID => 0,
        "profile" => 1,
        "email" => 2,
        OFFLINE_ACCESS => 4,
        _ => 3,
    };
    let mut list: Vec<&str> = scopes.iter().collect();
    list.sort_by_key(|s| rank(s));
    list
}

/// Plain words for a scope on the consent page.
pub fn describe(scope: &str) -> String {
    match scope {
        OPENID => "Confirm who you are (your user id)".into(),
        "profile" => "See your profile: your username and name".into(),
        "email" => "See your email address".into(),
        OFFLINE_ACCESS => {
            "Stay signed in: keep access while you are away, until you disconnect the app".into()
        }
        other => format!("Use the \u{201c}{other}\u{201d} permission"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sorted_without_duplicates() {
        let s = Scopes::parse("openid  email openid offline_access").unwrap();
        assert_eq!(s.to_string(), "email offline_access openid");
        assert!(s.contains(OPENID));
    }

    #[test]
    fn refuses_quotes_and_controls() {
        assert!(Scopes::parse("a\"b").is_err());
        assert!(Scopes::parse("a\\b").is_err());
        assert!(Scopes::parse("a\tb").is_err());
    }

    #[test]
    fn consent_lists_identity_first_and_offline_access_last() {
        let s = Scopes::parse("offline_access email api openid").unwrap();
        assert_eq!(
            in_reading_order(&s),
            vec!["openid", "email", "api", "offline_access"]
        );
    }

    #[test]
    fn subset_and_difference() {
        let all = Scopes::parse("openid email profile").unwrap();
        let some = Scopes::parse("email").unwrap();
        assert!(some.is_subset(&all));
        assert!(!all.is_subset(&some));
        assert_eq!(all.missing_from(&some), vec!["openid", "profile"]);
    }
}
