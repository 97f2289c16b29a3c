//! Backing off after failed sign-ins: a few failures are free, then each
//! one doubles the wait before the next attempt, up to a ceiling. Nothing
//! locks an account for good, so an attacker cannot keep a user out for
//! longer than the ceiling by failing on purpose.
//!
//! A sign-in is counted in three lanes: the account from this address
//! (slowed hard: that is the attacker's own lane), the source address
//! whatever the account, and the account from everywhere (a short ceiling,
//! for guessers spread over many addresses). An attacker hammering one
//! account from one address slows that address; the real user signing in
//! from another address meets only the account-wide lane, which one
//! address can barely fill and which waits a minute at most.

use std::net::IpAddr;

use super::secret::hash;

/// How long a failure counter lives after its last failure, in seconds.
pub const FAILURE_TTL: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures that cost nothing.
    pub free: u32,
    /// The longest wait, in seconds.
    pub ceiling: i64,
}

/// One account from one source address: the lane an attacker guessing at
/// one account from one machine runs in. Five tries, then 1 s, 2 s, 4 s …
/// up to 15 minutes.
pub const PER_ACCOUNT_ADDRESS: Backoff = Backoff {
    free: 5,
    ceiling: 900,
};

/// One source address, whatever the account: an office behind one NAT
/// gets many tries; a machine trying many accounts is slowed to 15 minutes.
pub const PER_ADDRESS: Backoff = Backoff {
    free: 20,
    ceiling: 900,
};

/// One account, from every address together: what a guesser spread over
/// many addresses meets. The ceiling is short on purpose: failing on
/// purpose keeps the real user waiting a minute at most.
pub const PER_ACCOUNT: Backoff = Backoff {
    free: 20,
    ceiling: 60,
};

/// Per client of the password grant: more tries, because a client signs in
/// many users.
pub const PER_CLIENT: Backoff = Backoff {
    free: 20,
    ceiling: 900,
};

/// The `kind`s of sign-in lanes: a password (the login form and the
/// password grant share it), a second-factor code, a device user code.
pub const PASSWORD: &str = "password";
pub const OTP: &str = "otp";
pub const USER_CODE: &str = "user-code";

/// One failure counter an attempt is checked against and counted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub key: String,
    pub backoff: Backoff,
    /// Whether a success resets it. The per-address lane stays: one
    /// account that works must not buy an address more guesses at others.
    pub reset_on_success: bool,
}

/// What the per-address lanes count by: an IPv4 address, or the /64 of an
/// IPv6 address (one host usually holds a whole /64). Requests without a
/// known address (a shell that sets none) share one counter.
pub fn network(addr: Option<IpAddr>) -> String {
    match addr {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_owned(),
    }
}

/// The lanes of a sign-in step (`kind`: the password, the second factor)
/// for `account` (whatever names it; hashed, so that unknown names and
/// real ones make the same keys and no name is stored) from `addr`.
pub fn sign_in_lanes(kind: &str, account: &str, addr: Option<IpAddr>) -> Vec<Lane> {
    let net = network(addr);
    vec![
        Lane {
            key: format!("{kind}:pair:{}", hash(&format!("{account}\n{net}"))),
            backoff: PER_ACCOUNT_ADDRESS,
            reset_on_success: true,
        },
        Lane {
            key: format!("{kind}:account:{}", hash(account)),
            backoff: PER_ACCOUNT,
            reset_on_success: true,
        },
        address_lane(kind, addr),
    ]
}

/// The lane of one source address for `kind` of attempt.
pub fn address_lane(kind: &str, addr: Option<IpAddr>) -> Lane {
    Lane {
        key: format!("{kind}:addr:{}", hash(&network(addr))),
        backoff: PER_ADDRESS,
        reset_on_success: false,
    }
}

impl Backoff {
    /// Seconds to wait after the last of `count` failures.
    pub fn wait(&self, count: u32) -> i64 {
        if count <= self.free {
            return 0;
        }
        let doublings = (count - self.free - 1).min(30);
        (1_i64 << doublings).min(self.ceiling)
    }

    /// `Some(seconds)` while another attempt must wait.
    pub fn retry_after(&self, count: u32, last_at: i64, now: i64) -> Option<i64> {
        let until = last_at + self.wait(count);
        (now < until).then_some(until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_tries_then_doubling_up_to_the_ceiling() {
        assert_eq!(PER_ACCOUNT_ADDRESS.wait(0), 0);
        assert_eq!(PER_ACCOUNT_ADDRESS.wait(5), 0);
        assert_eq!(PER_ACCOUNT_ADDRESS.wait(6), 1);
        assert_eq!(PER_ACCOUNT_ADDRESS.wait(7), 2);
        assert_eq!(PER_ACCOUNT_ADDRESS.wait(10), 16);
        assert_eq!(PER_ACCOUNT_ADDRESS.wait(20), 900);
        assert_eq!(PER_ACCOUNT_ADDRESS.wait(u32::MAX), 900);
        assert_eq!(PER_CLIENT.wait(20), 0);
        assert_eq!(PER_CLIENT.wait(21), 1);
        // The account-wide lane never keeps anyone out for more than a minute.
        assert_eq!(PER_ACCOUNT.wait(21), 1);
        assert_eq!(PER_ACCOUNT.wait(u32::MAX), 60);
    }

    #[test]
    fn retry_after_counts_from_the_last_failure() {
        assert_eq!(PER_ACCOUNT_ADDRESS.retry_after(5, 100, 100), None);
        assert_eq!(PER_ACCOUNT_ADDRESS.retry_after(8, 100, 101), Some(3));
        assert_eq!(PER_ACCOUNT_ADDRESS.retry_after(8, 100, 104), None);
    }

    #[test]
    fn networks_group_ipv6_by_64_and_unwrap_mapped_ipv4() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(network(ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(network(ip("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(
            network(ip("2001:db8:1:2:aaaa::1")),
            network(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            network(ip("2001:db8:1:2::1")),
            network(ip("2001:db8:1:3::1"))
        );
        assert_eq!(network(None), "unknown");
    }

    #[test]
    fn lanes_name_no_account_or_address_in_clear() {
        let lanes = sign_in_lanes("login", "alice", "192.0.2.7".parse().ok());
        assert_eq!(lanes.len(), 3);
        for lane in &lanes {
            assert!(!lane.key.contains("alice") && !lane.key.contains("192.0.2.7"));
        }
        // Another address: a different pair and address lane, the same account lane.
        let other = sign_in_lanes("login", "alice", "198.51.100.1".parse().ok());
        assert_ne!(lanes[0].key, other[0].key);
        assert_eq!(lanes[1].key, other[1].key);
        assert_ne!(lanes[2].key, other[2].key);
        assert!(!lanes[2].reset_on_success);
    }
}
