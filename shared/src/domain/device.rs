//! The Device Authorization Grant (RFC 8628): device codes, the user codes
//! people type, and the decision a user makes in the browser. Both codes
//! are stored only as hashes (DESIGN invariant 1).

use serde::{Deserialize, Serialize};

use super::Scopes;
use super::secret::{RandomError, random_bytes};

/// RFC 8628 §6.1: no vowels (no words), none of 0/O, 1/I/L look-alikes.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// 20^8 ≈ 2^34.6 codes: with a 10-minute life and few attempts per
/// browser, guessing a live one is hopeless (RFC 8628 §5.1).
pub const USER_CODE_LEN: usize = 8;
/// RFC 8628 §3.5: each `slow_down` adds this to the device's interval.
pub const SLOW_DOWN_STEP: i64 = 5;

/// A fresh user code, normalized (8 letters, no dash).
pub fn new_user_code() -> Result<String, RandomError> {
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        for b in random_bytes::<16>()? {
            // 240 = 12 × 20: rejecting the rest keeps every letter equally likely.
            if b < 240 && code.len() < USER_CODE_LEN {
                code.push(USER_CODE_ALPHABET[usize::from(b % 20)] as char);
            }
        }
    }
    Ok(code)
}

/// What a person types, in the stored form: case, dashes and spaces do
/// not matter. `None` if it cannot be a user code at all.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// The form shown to people: `XXXX-XXXX`.
pub fn display_user_code(normalized: &str) -> String {
    match (normalized.get(..4), normalized.get(4..)) {
        (Some(a), Some(b)) if !b.is_empty() => format!("{a}-{b}"),
        _ => normalized.to_owned(),
    }
}

/// What the user said in the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum DeviceDecision {
    Approved {
        user_id: String,
        auth_time: i64,
        amr: Vec<String>,
    },
    Denied,
}

/// A pending device authorization (RFC 8628 §3.2), stored by the hash of
/// its device code and findable by the hash of its user code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub hash: String,
    pub user_code_hash: String,
    pub client_id: String,
    pub scopes: Scopes,
    pub created_at: i64,
    /// When the codes stop working (the response's `expires_in`).
    pub expires_at: i64,
    /// The record is kept until then (the TTL), so that a late poll hears
    /// `expired_token` rather than `invalid_grant`; reads treat it as absent
    /// afterwards (DESIGN invariant 5).
    pub kept_until: i64,
    /// The polling interval, grown by each `slow_down`.
    pub interval: i64,
    pub last_polled_at: Option<i64>,
    /// `None` while the user has not decided.
    pub decision: Option<DeviceDecision>,
    /// When the tokens were handed out: a device code is single-use.
    pub consumed_at: Option<i64>,
}

/// How a poll of the token endpoint is answered before any write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollCheck {
    /// Polled sooner than the interval allows: `slow_down`, and the
    /// interval grows to the given value.
    TooFast { interval: i64 },
    /// On time: go on by the decision.
    OnTime,
}

impl DeviceCode {
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }

    /// RFC 8628 §3.5: a client polling faster than its interval is told to
    /// slow down, and its interval grows by 5 seconds for good.
    pub fn check_poll(&self, now: i64) -> PollCheck {
        match self.last_polled_at {
            Some(last) if now - last < self.interval => PollCheck::TooFast {
                interval: self.interval + SLOW_DOWN_STEP,
            },
            _ => PollCheck::OnTime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_alphabet_and_read_back_loosely() {
        let code = new_user_code().unwrap();
        assert_eq!(code.len(), USER_CODE_LEN);
        assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        let shown = display_user_code(&code);
        assert_eq!(shown.len(), 9);
        assert_eq!(&shown[4..5], "-");
        assert_eq!(normalize_user_code(&shown).as_deref(), Some(code.as_str()));
        let typed = format!(" {} {} ", shown[..4].to_lowercase(), &shown[5..]);
        assert_eq!(normalize_user_code(&typed).as_deref(), Some(code.as_str()));
        assert_ne!(new_user_code().unwrap(), code);
    }

    #[test]
    fn look_alikes_and_wrong_lengths_are_not_codes() {
        assert_eq!(
            normalize_user_code("BCDF-GHJK").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDF-GHJ0"), None);
        assert_eq!(normalize_user_code("BCDF-GHJA"), None);
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(normalize_user_code("BCDF-GHJKL"), None);
        assert_eq!(normalize_user_code(""), None);
        assert_eq!(normalize_user_code("ÉCDF-GHJK"), None);
    }

    #[test]
    fn polling_faster_than_the_interval_slows_down() {
        let mut d = DeviceCode {
            hash: "h".into(),
            user_code_hash: "u".into(),
            client_id: "tv".into(),
            scopes: Scopes::parse("openid").unwrap(),
            created_at: 0,
            expires_at: 600,
            kept_until: 1200,
            interval: 5,
            last_polled_at: None,
            decision: None,
            consumed_at: None,
        };
        assert_eq!(d.check_poll(1), PollCheck::OnTime);
        d.last_polled_at = Some(1);
        assert_eq!(d.check_poll(5), PollCheck::TooFast { interval: 10 });
        assert_eq!(d.check_poll(6), PollCheck::OnTime);
        assert!(!d.is_expired(599));
        assert!(d.is_expired(600));
    }
}
