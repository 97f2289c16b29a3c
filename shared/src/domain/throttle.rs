//! Backing off after failed sign-ins: a few failures are free, then each
//! one doubles the wait before the next attempt, up to a ceiling. Nothing
//! locks an account for good, so an attacker cannot keep a user out for
//! longer than the ceiling by failing on purpose.

/// How long a failure counter lives after its last failure, in seconds.
pub const FAILURE_TTL: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures that cost nothing.
    pub free: u32,
    /// The longest wait, in seconds.
    pub ceiling: i64,
}

/// Per account: five tries, then 1 s, 2 s, 4 s … up to 15 minutes.
pub const PER_USER: Backoff = Backoff {
    free: 5,
    ceiling: 900,
};

/// Per client: more tries, because a client signs in many users.
pub const PER_CLIENT: Backoff = Backoff {
    free: 20,
    ceiling: 900,
};

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
        assert_eq!(PER_USER.wait(0), 0);
        assert_eq!(PER_USER.wait(5), 0);
        assert_eq!(PER_USER.wait(6), 1);
        assert_eq!(PER_USER.wait(7), 2);
        assert_eq!(PER_USER.wait(10), 16);
        assert_eq!(PER_USER.wait(20), 900);
        assert_eq!(PER_USER.wait(u32::MAX), 900);
        assert_eq!(PER_CLIENT.wait(20), 0);
        assert_eq!(PER_CLIENT.wait(21), 1);
    }

    #[test]
    fn retry_after_counts_from_the_last_failure() {
        assert_eq!(PER_USER.retry_after(5, 100, 100), None);
        assert_eq!(PER_USER.retry_after(8, 100, 101), Some(3));
        assert_eq!(PER_USER.retry_after(8, 100, 104), None);
    }
}
