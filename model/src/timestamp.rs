//! Times as Go's `time.Time` writes them in JSON: RFC 3339 with up to nine
//! fractional digits (trailing zeros trimmed) and the writer's UTC offset.
//!
//! The offset is kept so that a document read and written back is unchanged;
//! ordering and equality of instants ignore it.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ModelError;

/// An instant with the UTC offset it was written with.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    unix_seconds: i64,
    nanos: u32,
    /// Seconds east of UTC.
    offset_seconds: i32,
}

/// Go's zero time, 0001-01-01T00:00:00Z, as seconds since the Unix epoch.
const GO_ZERO_UNIX_SECONDS: i64 = -62_135_596_800;

impl Timestamp {
    /// The current time, in UTC.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            unix_seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: since.subsec_nanos(),
            offset_seconds: 0,
        }
    }

    /// Go's zero time, written by the original for "never" (a TIMEOUT reply).
    pub fn zero() -> Self {
        Timestamp {
            unix_seconds: GO_ZERO_UNIX_SECONDS,
            nanos: 0,
            offset_seconds: 0,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.unix_seconds == GO_ZERO_UNIX_SECONDS && self.nanos == 0
    }

    /// The current time, or just after `previous` if the clock says
    /// otherwise: times a site gives its own successive replies never go
    /// back, even when its clock is set back.
    pub fn now_after(previous: Option<Timestamp>) -> Self {
        let now = Timestamp::now();
        match previous {
            Some(previous) if now <= previous => Timestamp {
                unix_seconds: previous.unix_seconds + i64::from(previous.nanos == 999_999_999),
                nanos: (previous.nanos + 1) % 1_000_000_000,
                offset_seconds: 0,
            },
            _ => now,
        }
    }

    /// Nanoseconds since the Unix epoch, saturating.
    pub fn unix_nanos(&self) -> i128 {
        i128::from(self.unix_seconds) * 1_000_000_000 + i128::from(self.nanos)
    }
}

impl Default for Timestamp {
    fn default() -> Self {
        Timestamp::zero()
    }
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Timestamp {}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.unix_seconds, self.nanos).cmp(&(other.unix_seconds, other.nanos))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.unix_seconds + i64::from(self.offset_seconds);
        let days = local.div_euclid(86_400);
        let secs_of_day = local.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60
        )?;
        if self.nanos != 0 {
            let digits = format!("{:09}", self.nanos);
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        if self.offset_seconds == 0 {
            f.write_str("Z")
        } else {
            let sign = if self.offset_seconds < 0 { '-' } else { '+' };
            let minutes = self.offset_seconds.unsigned_abs() / 60;
            write!(f, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
        }
    }
}

impl FromStr for Timestamp {
    type Err = ModelError;

    /// Reads RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ModelError::Timestamp {
            value: value.to_owned(),
            reason,
        };
        let b = value.as_bytes();
        if b.len() < 20 || !b.is_ascii() {
            return Err(fail(
                "expected RFC 3339 such as 2024-03-05T14:07:09.5+01:00",
            ));
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, ModelError> {
            value[range]
                .parse::<u32>()
                .map(i64::from)
                .map_err(|_| fail("expected digits"))
        };
        let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
        if separators.iter().any(|&(i, c)| b[i] != c) || !matches!(b[10], b'T' | b't') {
            return Err(fail(
                "expected RFC 3339 such as 2024-03-05T14:07:09.5+01:00",
            ));
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(fail("date or time out of range"));
        }

        let mut rest = &value[19..];
        let mut nanos = 0u32;
        if let Some(fraction) = rest.strip_prefix('.') {
            let len = fraction
                .bytes()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(fraction.len());
            if len == 0 || len > 9 {
                return Err(fail("expected 1 to 9 fractional digits"));
            }
            let digits: u32 = fraction[..len]
                .parse()
                .map_err(|_| fail("expected digits"))?;
            nanos = digits * 10u32.pow(9 - len as u32);
            rest = &fraction[len..];
        }

        let offset_seconds = match rest.as_bytes() {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
                if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
            {
                let hours = i32::from((h1 - b'0') * 10 + (h2 - b'0'));
                let minutes = i32::from((m1 - b'0') * 10 + (m2 - b'0'));
                if hours > 23 || minutes > 59 {
                    return Err(fail("offset out of range"));
                }
                let magnitude = hours * 3600 + minutes * 60;
                if *sign == b'-' {
                    -magnitude
                } else {
                    magnitude
                }
            }
            _ => return Err(fail("expected Z or an offset such as +01:00")),
        };

        let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        Ok(Timestamp {
            unix_seconds: local - i64::from(offset_seconds),
            nanos,
            offset_seconds,
        })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_after_never_goes_back() {
        let future: super::Timestamp = "2999-12-31T23:59:59.999999999Z".parse().unwrap();
        let next = super::Timestamp::now_after(Some(future));
        assert_eq!(next.to_string(), "3000-01-01T00:00:00Z");
        let past: super::Timestamp = "2001-01-01T00:00:00Z".parse().unwrap();
        assert!(super::Timestamp::now_after(Some(past)) > past);
    }

    use super::*;

    fn round_trip(s: &str) -> String {
        s.parse::<Timestamp>().unwrap().to_string()
    }

    #[test]
    fn writes_back_what_go_wrote() {
        for s in [
            "2024-03-05T14:07:09.123456789+01:00",
            "2024-03-05T14:08:00Z",
            "2024-01-01T00:00:10.00001Z",
            "0001-01-01T00:00:00Z",
            "2024-02-29T23:59:59.5-05:30",
            "1969-12-31T23:59:59.999999999Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert_eq!(round_trip(s), s);
        }
    }

    #[test]
    fn zero_is_go_zero_time() {
        assert_eq!(Timestamp::zero().to_string(), "0001-01-01T00:00:00Z");
        assert!("0001-01-01T00:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .is_zero());
        assert_eq!(Timestamp::default(), Timestamp::zero());
    }

    #[test]
    fn instants_compare_across_offsets() {
        let a: Timestamp = "2024-03-05T14:07:09+01:00".parse().unwrap();
        let b: Timestamp = "2024-03-05T13:07:09Z".parse().unwrap();
        let c: Timestamp = "2024-03-05T13:07:09.000000001Z".parse().unwrap();
        assert_eq!(a, b);
        assert!(b < c);
    }

    #[test]
    fn now_reads_back_as_the_same_instant() {
        let now = Timestamp::now();
        assert_eq!(now.to_string().parse::<Timestamp>().unwrap(), now);
        assert!(now > Timestamp::zero());
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            "",
            "2024-03-05",
            "2024-03-05 14:07:09Z",
            "2024-13-05T14:07:09Z",
            "2023-02-29T14:07:09Z",
            "2024-03-05T24:07:09Z",
            "2024-03-05T14:07:09",
            "2024-03-05T14:07:09.Z",
            "2024-03-05T14:07:09.1234567890Z",
            "2024-03-05T14:07:09+0100",
            "2024-03-05T14:07:09Zjunk",
        ] {
            let err = bad.parse::<Timestamp>().unwrap_err().to_string();
            assert!(err.contains("invalid time"), "{bad}: {err}");
        }
    }
}
