//! Public keys as JWKs (RFC 7517) and their RFC 7638 thumbprints, shared by
//! every signer.

use serde_json::{Value, json};

use crate::domain::secret::{b64url, sha256};

/// A P-256 public key from its uncompressed SEC1 point (0x04 || x || y).
pub fn ec_p256(point: &[u8]) -> Option<Value> {
    if point.len() != 65 || point[0] != 0x04 {
        return None;
    }
    let x = b64url(&point[1..33]);
    let y = b64url(&point[33..]);
    // RFC 7638 §3.2: the required members, lexicographic order, no whitespace.
    let kid = b64url(&sha256(
        format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes(),
    ));
    Some(json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "use": "sig", "alg": "ES256", "kid": kid,
    }))
}

/// An RSA public key from its modulus and exponent (big-endian, unsigned).
pub fn rsa(n: &[u8], e: &[u8]) -> Value {
    let n = b64url(strip_leading_zeros(n));
    let e = b64url(strip_leading_zeros(e));
    let kid = b64url(&sha256(
        format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#).as_bytes(),
    ));
    json!({ "kty": "RSA", "n": n, "e": e, "use": "sig", "alg": "RS256", "kid": kid })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[start..]
}

/// The `kid` member of a JWK built above.
pub fn kid(jwk: &Value) -> &str {
    jwk.get("kid").and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1: the example key and its thumbprint.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let n = b64
            .decode(concat!(
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP",
                "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q",
                "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6",
                "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
            ))
            .unwrap();
        let e = b64.decode("AQAB").unwrap();
        assert_eq!(
            kid(&rsa(&n, &e)),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn ec_needs_an_uncompressed_point() {
        assert!(ec_p256(&[0x02; 33]).is_none());
        let mut point = vec![0x04];
        point.extend([1u8; 64]);
        let jwk = ec_p256(&point).unwrap();
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(kid(&jwk).len(), 43);
    }
}
