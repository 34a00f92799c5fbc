//! Parsing of Kubernetes resource quantities (`"100m"`, `"1.5Gi"`, `"2e3"`, `"1e-3"`) into
//! integers: [`parse_milli_value`] and [`parse_value`] give the units the scheduler compares
//! (milli-units for CPU, whole units for everything else), [`parse_nanos`] the exact
//! nano-units the agent and the QoS rules use.
//!
//! Rounding of `Value`/`MilliValue` follows apimachinery's `Quantity.MilliValue()` /
//! `Value()`: fractions round up (towards positive infinity), so `"0.5m"` of CPU counts as 1
//! milli-CPU and `"1.1"` bytes as 2, and results saturate at `i64::MAX` instead of
//! overflowing. Nano-units truncate towards zero and fail when they do not fit an `i128`.

use thiserror::Error;

/// A quantity string that is not valid Kubernetes quantity syntax.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid quantity {value:?}: {reason}")]
pub struct QuantityError {
    /// The rejected text.
    pub value: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

/// A parsed quantity: `mantissa * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

/// Decimal (SI) suffixes with their power of ten.
const DECIMAL: [(&str, i32); 10] = [
    ("", 0),
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
/// Binary (IEC) suffixes: `Ki` is 2^10, each next one 2^10 more.
const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

fn err(value: &str, reason: &'static str) -> QuantityError {
    QuantityError {
        value: value.to_owned(),
        reason,
    }
}

fn parse(text: &str) -> Result<Parsed, QuantityError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(err(text, "empty"));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if bytes[0] == b'+' || bytes[0] == b'-' {
        negative = bytes[0] == b'-';
        i = 1;
    }
    let mut mantissa: u128 = 0;
    let mut exp10: i32 = 0;
    let mut digits = 0usize;
    let mut seen_dot = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            digits += 1;
            if mantissa < (u128::MAX / 100) {
                mantissa = mantissa * 10 + u128::from(c - b'0');
                if seen_dot {
                    exp10 -= 1;
                }
            } else if !seen_dot {
                // Too many significant digits: keep the magnitude, drop precision.
                exp10 += 1;
            }
            i += 1;
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
            i += 1;
        } else {
            break;
        }
    }
    if digits == 0 {
        return Err(err(text, "no digits"));
    }
    let suffix = &s[i..];
    let decimal = DECIMAL.iter().find(|(name, _)| *name == suffix);
    let binary = BINARY.iter().position(|name| *name == suffix);
    let (add10, exp2): (i32, u32) = match (decimal, binary) {
        (Some(&(_, add10)), _) => (add10, 0),
        (None, Some(i)) => (0, 10 * (i as u32 + 1)),
        (None, None) => {
            let rest = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(|| err(text, "unknown suffix"))?;
            let e: i32 = rest.parse().map_err(|_| err(text, "bad exponent"))?;
            if !(-1000..=1000).contains(&e) {
                return Err(err(text, "exponent out of range"));
            }
            (e, 0)
        }
    };
    Ok(Parsed {
        negative,
        mantissa,
        exp10: exp10 + add10,
        exp2,
    })
}

/// `p * 10^scale_exp10` as the fraction `num / den` of its magnitude; `None` when the
/// numerator overflows. A denominator too large to hold is a value too small to matter: it
/// becomes the smallest positive fraction (or zero).
fn fraction(p: Parsed, scale_exp10: i32) -> Option<(u128, u128)> {
    let mut num: u128 = p.mantissa;
    let mut den: u128 = 1;
    let e10 = p.exp10 + scale_exp10;
    if e10 >= 0 {
        for _ in 0..e10 {
            num = num.checked_mul(10)?;
        }
    } else {
        for _ in 0..(-e10) {
            den = match den.checked_mul(10) {
                Some(v) => v,
                None => return Some((u128::from(num != 0), u128::MAX)),
            };
        }
    }
    for _ in 0..p.exp2 {
        num = num.checked_mul(2)?;
    }
    Some((num, den))
}

/// Computes `ceil(p * scale)` as an i64, saturating.
fn scaled_ceil(p: Parsed, scale_exp10: i32) -> i64 {
    if p.mantissa == 0 {
        return 0;
    }
    let Some((num, den)) = fraction(p, scale_exp10) else {
        return if p.negative { i64::MIN } else { i64::MAX };
    };
    let whole = num / den;
    let frac = !num.is_multiple_of(den);
    if p.negative {
        // ceil of a negative value truncates towards zero.
        i64::try_from(whole).map(|v| -v).unwrap_or(i64::MIN)
    } else {
        let v = if frac { whole + 1 } else { whole };
        i64::try_from(v).unwrap_or(i64::MAX)
    }
}

/// `Quantity.Value()`: whole units, rounded up.
pub fn parse_value(text: &str) -> Result<i64, QuantityError> {
    Ok(scaled_ceil(parse(text)?, 0))
}

/// `Quantity.MilliValue()`: thousandths, rounded up.
pub fn parse_milli_value(text: &str) -> Result<i64, QuantityError> {
    Ok(scaled_ceil(parse(text)?, 3))
}

/// Nano-units (`"100m"` is 100,000,000), truncated towards zero; an error when the value
/// does not fit an `i128`.
pub fn parse_nanos(text: &str) -> Result<i128, QuantityError> {
    let p = parse(text)?;
    let (num, den) = fraction(p, 9).ok_or_else(|| err(text, "too large"))?;
    let v = i128::try_from(num / den).map_err(|_| err(text, "too large"))?;
    Ok(if p.negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_milli_values() {
        assert_eq!(parse_milli_value("1").unwrap(), 1000);
        assert_eq!(parse_milli_value("100m").unwrap(), 100);
        assert_eq!(parse_milli_value("0.5").unwrap(), 500);
        assert_eq!(parse_milli_value("1.5").unwrap(), 1500);
        assert_eq!(parse_milli_value("0.0001").unwrap(), 1, "rounds up");
        assert_eq!(parse_milli_value("250000u").unwrap(), 250);
        assert_eq!(parse_milli_value("2e3").unwrap(), 2_000_000);
        assert_eq!(parse_milli_value("1k").unwrap(), 1_000_000);
    }

    #[test]
    fn memory_values() {
        assert_eq!(parse_value("128Mi").unwrap(), 128 * 1024 * 1024);
        assert_eq!(parse_value("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_value("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_value("1.5Ki").unwrap(), 1536);
        assert_eq!(parse_value("110").unwrap(), 110);
        assert_eq!(parse_value("1500m").unwrap(), 2, "rounds up");
        assert_eq!(parse_value("0").unwrap(), 0);
        assert_eq!(parse_value("8Ei").unwrap(), i64::MAX, "saturates");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1Qi", "1e", "."] {
            assert!(parse_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nano_values_are_exact_and_truncate() {
        // The common cases are in `status::tests::quantities` (through `parse_quantity`).
        assert_eq!(parse_nanos("1e-3"), Ok(1_000_000));
        assert_eq!(parse_nanos("1.5n"), Ok(1), "truncates");
        assert_eq!(parse_nanos("-2m"), Ok(-2_000_000));
        assert!(parse_nanos("1e1000").is_err(), "overflow is an error");
    }

    #[test]
    fn negative_values() {
        assert_eq!(parse_value("-1").unwrap(), -1);
        assert_eq!(parse_milli_value("-0.5").unwrap(), -500);
    }
}
