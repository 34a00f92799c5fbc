//! Parsing of Kubernetes resource quantities (`"100m"`, `"1.5Gi"`, `"2e3"`) into the integer
//! units the scheduler compares: milli-units for CPU, whole units for everything else.
//!
//! Rounding follows apimachinery's `Quantity.MilliValue()` / `Value()`: fractions round up
//! (towards positive infinity), so `"0.5m"` of CPU counts as 1 milli-CPU and `"1.1"` bytes as 2.
//! Results saturate at `i64::MAX` instead of overflowing.

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
    let (add10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => {
            let rest = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
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

/// Computes `ceil(p * scale)` as an i64, saturating.
fn scaled_ceil(p: Parsed, scale_exp10: i32) -> i64 {
    if p.mantissa == 0 {
        return 0;
    }
    let mut num: u128 = p.mantissa;
    let mut den: u128 = 1;
    let e10 = p.exp10 + scale_exp10;
    let saturate = |neg: bool| if neg { i64::MIN } else { i64::MAX };
    if e10 >= 0 {
        for _ in 0..e10 {
            num = match num.checked_mul(10) {
                Some(v) => v,
                None => return saturate(p.negative),
            };
        }
    } else {
        for _ in 0..(-e10) {
            den = match den.checked_mul(10) {
                Some(v) => v,
                None => return if p.negative { 0 } else { 1 },
            };
        }
    }
    for _ in 0..p.exp2 {
        num = match num.checked_mul(2) {
            Some(v) => v,
            None => return saturate(p.negative),
        };
    }
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
        assert!(parse_value("").is_err());
        assert!(parse_value("abc").is_err());
        assert!(parse_value("1Qi").is_err());
        assert!(parse_value("1e").is_err());
        assert!(parse_value(".").is_err());
    }

    #[test]
    fn negative_values() {
        assert_eq!(parse_value("-1").unwrap(), -1);
        assert_eq!(parse_milli_value("-0.5").unwrap(), -500);
    }
}
